package events

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestValidateID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"r-downtown", true},
		{"0190a6c2-7d3e-7b1a-9c1e-3f1b2a4c5d6e", true},
		{"A_b-9", true},
		{"", false},
		{"orders.x", false},
		{"a*b", false},
		{"a>b", false},
		{"a b", false},
		{"ä", false},
		{string(make([]byte, 65)), false},
	}
	for _, tt := range tests {
		err := ValidateID(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
	}
}

func TestContextSubjects(t *testing.T) {
	if got := Orders.Subject("o1"); got != "orders.o1" {
		t.Fatalf("Subject = %q", got)
	}
	if id, ok := Orders.AggregateID("orders.o1"); !ok || id != "o1" {
		t.Fatalf("AggregateID = %q %v", id, ok)
	}
	for _, s := range []string{"kitchen.o1", "orders.", "orders.a.b"} {
		if _, ok := Orders.AggregateID(s); ok {
			t.Errorf("AggregateID(%q) accepted", s)
		}
	}
}

func TestRoundTripEveryOrderEvent(t *testing.T) {
	r := NewRegistry()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	all := []Event{
		OrderPlaced{RestaurantID: "r1", CustomerID: "c1", Items: []OrderItem{{PizzaType: "Margherita", Size: "Large", Quantity: 2, UnitPriceCents: 1299, LineTotalCents: 2598}}, TotalCents: 2598, Currency: "USD", PaymentMethod: "Cash", EstimatedDeliveryAt: now},
		OrderValidated{}, OrderQueued{TicketID: "t1"}, OrderPreparationStarted{ChefID: "chef-1"},
		OrderBakingStarted{}, OrderQualityCheckStarted{}, OrderReadyForPickup{},
		OrderDriverAssigned{DriverID: "d1"}, OrderPickedUp{DriverID: "d1"}, OrderOutForDelivery{DriverID: "d1"},
		OrderDelivered{DriverID: "d1"}, OrderCancelled{Reason: "changed mind", FromStatus: "Queued"},
		OrderFailed{Reason: "out of stock", FromStatus: "Created"},
	}
	for _, e := range all {
		env, err := NewEnvelope("o1", e, now, Meta{CorrelationID: "corr"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := env.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalEnvelope(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Decode(back)
		if err != nil {
			t.Fatalf("%s: %v", Name(e.EventType(), e.EventVersion()), err)
		}
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(e)
		if string(gb) != string(wb) {
			t.Errorf("round trip %s: got %s want %s", env.Type, gb, wb)
		}
	}
}

type testV2 struct {
	Name string `json:"name"`
}

func (testV2) EventType() string { return "test_renamed" }
func (testV2) EventVersion() int { return 2 }

func TestUpcastAndUnknownVersion(t *testing.T) {
	r := NewRegistry()
	Register[testV2](r)
	r.RegisterUpcaster("test_renamed", 1, func(d json.RawMessage) (json.RawMessage, error) {
		var v1 struct {
			Title string `json:"title"`
		}
		if err := json.Unmarshal(d, &v1); err != nil {
			return nil, err
		}
		return json.Marshal(testV2{Name: v1.Title})
	})
	got, err := r.Decode(Envelope{Type: "test_renamed", Version: 1, AggregateID: "a", Data: json.RawMessage(`{"title":"x"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if got.(testV2).Name != "x" {
		t.Fatalf("upcast gave %+v", got)
	}

	_, err = r.Decode(Envelope{Type: "test_renamed", Version: 3, AggregateID: "a", Data: json.RawMessage(`{}`)})
	var uv *UnknownVersionError
	if !errors.As(err, &uv) || uv.Version != 3 || uv.Latest != 2 {
		t.Fatalf("want UnknownVersionError, got %v", err)
	}
	_, err = r.Decode(Envelope{Type: "nope", Version: 1, AggregateID: "a", Data: json.RawMessage(`{}`)})
	if !errors.Is(err, ErrUnknownType) {
		t.Fatalf("want ErrUnknownType, got %v", err)
	}
}

func TestUnmarshalEnvelopeRejectsGarbage(t *testing.T) {
	for _, b := range []string{``, `{`, `[]`, `{"type":"x"}`, `{"type":"x","version":1}`, `{"type":"x","version":0,"aggregateId":"a","data":{}}`} {
		if _, err := UnmarshalEnvelope([]byte(b)); !errors.Is(err, ErrMalformedEnvelope) {
			t.Errorf("UnmarshalEnvelope(%q) = %v", b, err)
		}
	}
}

func FuzzUnmarshalEnvelope(f *testing.F) {
	f.Add([]byte(`{"id":"1","type":"order_placed","version":1,"aggregateId":"o1","occurredAt":"2026-01-01T00:00:00Z","data":{}}`))
	f.Add([]byte(`{"type":"order_placed","version":9,"aggregateId":"o1","data":{"x":1}}`))
	r := NewRegistry()
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := UnmarshalEnvelope(b)
		if err != nil {
			return
		}
		_, _ = r.Decode(env) // must not panic
	})
}
