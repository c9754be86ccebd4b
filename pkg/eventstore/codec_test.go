package eventstore

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/nats-io/nats.go"
)

// referenceDecode is DecodeMessage's general path: the envelope decoded
// by events.UnmarshalEnvelope, then its event by the registry.
func referenceDecode(reg *events.Registry, data []byte) (Record, error) {
	env, err := events.UnmarshalEnvelope(data)
	if err != nil {
		return Record{}, err
	}
	ev, err := reg.Decode(env)
	if err != nil {
		return Record{}, err
	}
	return Record{Envelope: env, Event: ev}, nil
}

// sameDecoding fails the test unless DecodeMessage gives data exactly the
// decoding (or the error) of the general path.
func sameDecoding(t *testing.T, reg *events.Registry, name string, data []byte) {
	t.Helper()
	want, wantErr := referenceDecode(reg, data)
	hdr := nats.Header{}
	hdr.Set(events.HeaderCommandID, "cmd")
	got, err := DecodeMessage(reg, "orders.o1", hdr, data, "ORDERS", 7, time.Unix(5, 0))
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%s: %q: error %v, general path %v", name, data, err, wantErr)
	}
	if err != nil {
		if !strings.HasSuffix(err.Error(), wantErr.Error()) {
			t.Fatalf("%s: %q: error %q, general path %q", name, data, err, wantErr)
		}
		return
	}
	if got.Subject != "orders.o1" || got.Stream != "ORDERS" || got.Seq != 7 || got.CommandID != "cmd" || !got.Stored.Equal(time.Unix(5, 0)) {
		t.Fatalf("%s: record metadata %+v", name, got)
	}
	if !reflect.DeepEqual(got.Envelope, want.Envelope) {
		t.Fatalf("%s: %q:\nenvelope %+v\ngeneral  %+v", name, data, got.Envelope, want.Envelope)
	}
	if !reflect.DeepEqual(got.Event, want.Event) {
		t.Fatalf("%s: %q:\nevent   %#v\ngeneral %#v", name, data, got.Event, want.Event)
	}
}

func storedEnvelopes(t testing.TB) map[string][]byte {
	t.Helper()
	at := time.Date(2026, 11, 26, 17, 33, 50, 198280017, time.UTC)
	meta := events.Meta{CorrelationID: "corr-1", CausationID: "place:o1", TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	evs := map[string]events.Event{
		"placed": events.OrderPlaced{RestaurantID: "r1", CustomerID: "c1", TotalCents: 1000, SubtotalCents: 900, DeliveryFeeCents: 100, Currency: "USD", PaymentMethod: "Cash",
			Items:               []events.OrderItem{{PizzaType: "Margherita", Size: "Large", Toppings: []string{"Basil", "Olives"}, Quantity: 2, UnitPriceCents: 450, LineTotalCents: 900}},
			EstimatedDeliveryAt: at.Add(time.Hour), RequestHash: "h"},
		"queued":   events.OrderQueued{TicketID: "t-1"},
		"escaped":  events.OrderQueued{TicketID: "a \"quoted\" {brace} [bracket] \\ é \u2028 \x01"},
		"no-metas": events.OrderQueued{TicketID: "t-2"},
	}
	out := map[string][]byte{}
	for name, ev := range evs {
		m := meta
		if name == "no-metas" {
			m = events.Meta{}
		}
		en, err := events.NewEnvelope("o1", ev, at, m)
		if err != nil {
			t.Fatal(err)
		}
		b, err := en.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	v1, err := os.ReadFile("../events/testdata/v1/order_placed.json")
	if err != nil {
		t.Fatal(err)
	}
	out["v1-upcast"] = v1
	return out
}

func TestDecodeMessageTakesOnePassForStoredEnvelopes(t *testing.T) {
	reg := events.NewRegistry()
	for name, b := range storedEnvelopes(t) {
		// The envelopes the platform writes take the one-pass decoding...
		if _, _, ok := decodeRecord(reg, b); !ok {
			t.Fatalf("%s: %s was not decoded in one pass", name, b)
		}
		// ...which decodes them exactly as the general path does.
		sameDecoding(t, reg, name, b)
		// The payload is left in place, not copied.
		rec, err := DecodeMessage(reg, "orders.o1", nil, b, "ORDERS", 1, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Envelope.Data) == 0 || &rec.Envelope.Data[0] != &b[strings.Index(string(b), `"data":`)+len(`"data":`)] {
			t.Fatalf("%s: the payload was copied", name)
		}
	}
}

func TestDecodeMessageAgreesWithTheGeneralPath(t *testing.T) {
	reg := events.NewRegistry()
	stored := storedEnvelopes(t)
	placed := string(stored["placed"])
	v1 := string(stored["v1-upcast"])
	rest := `"type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"}}`
	cases := map[string]string{
		"pretty":             mustIndent(t, placed),
		"fields reordered":   `{"data":{"ticketId":"t"},"aggregateId":"o1","version":1,"type":"order_queued","id":"x","occurredAt":"2026-11-26T17:33:50Z"}`,
		"escape in id":       `{"id":"a\u0062",` + rest,
		"escape in type":     `{"id":"x","type":"order_queu\u0065d","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"}}`,
		"non-ASCII id":       `{"id":"é",` + rest,
		"invalid UTF-8 id":   "{\"id\":\"\xff\"," + rest,
		"unknown field":      `{"id":"x","extra":{"a":[1,2]},` + rest,
		"repeated field":     `{"id":"x","id":"y",` + rest,
		"field name case":    `{"ID":"x",` + rest,
		"both name cases":    `{"id":"x","Id":"y",` + rest,
		"null id":            `{"id":null,` + rest,
		"null data":          `{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":null}`,
		"array data":         `{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":[1]}`,
		"string data":        `{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":"x"}`,
		"invalid data":       `{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":}}`,
		"data trailing ,":    `{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t",}}`,
		"data mismatched":    `{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":["t"}]}`,
		"data wrong type":    `{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":5}}`,
		"braces in strings":  `{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"}{\"]["}}`,
		"version 1.0":        `{"id":"x","type":"order_queued","version":1.0,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"}}`,
		"version 1e0":        `{"id":"x","type":"order_queued","version":1e0,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"}}`,
		"version 01":         `{"id":"x","type":"order_queued","version":01,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"}}`,
		"version -1":         `{"id":"x","type":"order_queued","version":-1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"}}`,
		"version 0":          `{"id":"x","type":"order_queued","version":0,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"}}`,
		"version 9":          `{"id":"x","type":"order_queued","version":9,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"}}`,
		"version huge":       `{"id":"x","type":"order_queued","version":99999999999999999999,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"}}`,
		"version string":     `{"id":"x","type":"order_queued","version":"1","aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"}}`,
		"unknown type":       `{"id":"x","type":"order_teleported","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{}}`,
		"missing type":       `{"id":"x","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"}}`,
		"missing aggregate":  `{"id":"x","type":"order_queued","version":1,"occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"}}`,
		"missing data":       `{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z"}`,
		"missing occurredAt": `{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","data":{"ticketId":"t"}}`,
		"bad occurredAt":     `{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"yesterday","data":{"ticketId":"t"}}`,
		"offset occurredAt":  `{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50.5+02:00","data":{"ticketId":"t"}}`,
		"empty object":       `{}`,
		"empty":              ``,
		"array":              `[]`,
		"trailing garbage":   `{"id":"x",` + rest + `x`,
		"trailing object":    `{"id":"x",` + rest + `{}`,
		"trailing space":     `{"id":"x",` + rest + " \n\t",
		"leading space":      " \r\n{\"id\":\"x\"," + rest,
		"trailing comma":     `{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"},}`,
		"missing comma":      `{"id":"x" "type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"t"}}`,
		"v1 without total":   strings.Replace(v1, `"totalCents":3498,`, ``, 1),
		"v1 invalid payload": strings.Replace(v1, `"totalCents":3498,`, `"totalCents":3498,,`, 1),
	}
	for name, c := range cases {
		sameDecoding(t, reg, name, []byte(c))
	}
	// Every prefix of a stored envelope, and every byte of it replaced by
	// one that matters to the syntax.
	for name, b := range stored {
		for i := range b {
			sameDecoding(t, reg, name+" truncated", b[:i])
			for _, c := range []byte(`"\{}[],: x0.`) {
				m := append([]byte(nil), b...)
				m[i] = c
				sameDecoding(t, reg, name+" mutated", m)
			}
		}
	}
}

// renamedV2 is an event whose v1 payloads an upcaster replaces without
// reading them.
type renamedV2 struct {
	Name string `json:"name"`
}

func (renamedV2) EventType() string { return "test_renamed" }
func (renamedV2) EventVersion() int { return 2 }

// An upcast payload is checked as stored: an invalid one is refused even
// when the upcaster does not read it.
func TestDecodeMessageValidatesUpcastPayloads(t *testing.T) {
	reg := events.NewRegistry()
	events.Register[renamedV2](reg)
	reg.RegisterUpcaster("test_renamed", 1, func(json.RawMessage) (json.RawMessage, error) {
		return json.RawMessage(`{"name":"fixed"}`), nil
	})
	head := `{"id":"x","type":"test_renamed","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":`
	for _, data := range []string{`{"title":"t"}`, `{"title":}`, `{"title":"t",}`, `{"title" "t"}`} {
		sameDecoding(t, reg, "upcast", []byte(head+data+"}"))
	}
	if _, err := DecodeMessage(reg, "orders.o1", nil, []byte(head+`{"title":}}`), "ORDERS", 1, time.Time{}); err == nil {
		t.Fatal("an invalid upcast payload was accepted")
	}
}

func mustIndent(t *testing.T, s string) string {
	t.Helper()
	var v map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(v, " ", "\t")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func FuzzDecodeMessage(f *testing.F) {
	for _, b := range storedEnvelopes(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"id":"x","type":"order_queued","version":1,"aggregateId":"o1","occurredAt":"2026-11-26T17:33:50Z","data":{"ticketId":"}{\"]["}}`))
	reg := events.NewRegistry()
	f.Fuzz(func(t *testing.T, b []byte) {
		sameDecoding(t, reg, "fuzz", b)
	})
}

func BenchmarkDecodeMessage(b *testing.B) {
	reg := events.NewRegistry()
	data := storedEnvelopes(b)["placed"]
	b.Run("one-pass", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeMessage(reg, "orders.o1", nil, data, "ORDERS", 1, time.Time{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("general", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := referenceDecode(reg, data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
