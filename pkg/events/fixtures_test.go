package events

import (
	"os"
	"path/filepath"
	"testing"
)

// Every stored v1 fixture still decodes with this build; order_placed.v1
// is upcast to v2 with its total as the subtotal and no delivery fee.
func TestStoredV1FixturesDecode(t *testing.T) {
	files, err := filepath.Glob("testdata/v1/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	r := NewRegistry()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		env, err := UnmarshalEnvelope(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if env.Version != 1 {
			t.Fatalf("%s is not a v1 fixture", f)
		}
		ev, err := r.Decode(env)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if p, ok := ev.(OrderPlaced); ok {
			if p.SubtotalCents != 3498 || p.DeliveryFeeCents != 0 || p.TotalCents != 3498 || p.Items[0].UnitPriceCents != 1749 || p.AddressRef == "" {
				t.Fatalf("%s upcast to %+v", f, p)
			}
		}
	}
}

func TestUpcastRejectsV1WithoutTotal(t *testing.T) {
	r := NewRegistry()
	_, err := r.Decode(Envelope{Type: "order_placed", Version: 1, AggregateID: "o", Data: []byte(`{"restaurantId":"x"}`)})
	if err == nil {
		t.Fatal("a v1 order_placed without total was accepted")
	}
}

// The stored order_placed.v2 fixture (written before placements validated
// the order in the same event) decodes as v3 with Validated unset: the
// order starts Created, and its order_validated follows in the log.
func TestStoredV2FixtureDecodes(t *testing.T) {
	b, err := os.ReadFile("testdata/v2/order_placed.json")
	if err != nil {
		t.Fatal(err)
	}
	env, err := UnmarshalEnvelope(b)
	if err != nil || env.Version != 2 {
		t.Fatalf("fixture: version %d, %v", env.Version, err)
	}
	ev, err := NewRegistry().Decode(env)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := ev.(OrderPlaced)
	if !ok || p.Validated || p.Status() != "Created" || p.SubtotalCents != 3498 || p.TotalCents != 3498 || p.AddressRef == "" {
		t.Fatalf("order_placed.v2 decoded as %#v", ev)
	}
	if (OrderPlaced{Validated: true}).Status() != "Validated" {
		t.Fatal("a validated placement does not start Validated")
	}
}
