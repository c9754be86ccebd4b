package kitchenapi

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// randomDisplay builds a display with every optional part present or not,
// and strings that need escaping now and then.
func randomDisplay(rng *rand.Rand, tickets int) KitchenDisplay {
	words := []string{"Margherita", "Large", "Basil", "Quattro \"Formaggi\"", "Pepe <&> Sale", "Crème fraîche", "tab\there", "line\u2028sep", "\x01ctl", "back\\slash", ""}
	word := func() string { return words[rng.IntN(len(words))] }
	at := func() time.Time {
		return time.Date(2026, 11, 27, 8, rng.IntN(60), rng.IntN(60), rng.IntN(3)*123456789, time.UTC).In(time.FixedZone("x", rng.IntN(3)*3600))
	}
	d := KitchenDisplay{RestaurantID: "downtown", Version: rng.Uint64(), LastUpdated: at(),
		Chefs:  []ChefView{{ChefID: "chef-1", Name: word(), OnBreak: rng.IntN(2) == 0, ActiveTickets: 2, Capacity: 3}},
		Counts: StageCounts{Queued: rng.IntN(9), Preparing: 1, Ready: 2}}
	if rng.IntN(5) > 0 {
		d.Tickets = []TicketView{}
	}
	for i := range tickets {
		t := TicketView{OrderID: fmt.Sprintf("0195c7f4-5a5e-7a1c-9a57-%012d", i), Stage: word(), Attempt: rng.IntN(3), Remake: rng.IntN(2) == 0,
			QueuedAt: at(), StageStartedAt: at()}
		if rng.IntN(2) == 0 {
			t.ChefID = word()
		}
		if rng.IntN(2) == 0 {
			t.QueuePosition = rng.IntN(100) - 10
		}
		if rng.IntN(2) == 0 {
			due := at()
			t.DueAt = &due
		}
		if rng.IntN(6) > 0 {
			t.Lines = []LineView{}
			for range rng.IntN(3) {
				l := LineView{PizzaType: word(), Size: word(), Quantity: rng.IntN(5) - 1}
				if rng.IntN(4) > 0 {
					l.Toppings = []string{}
					for range rng.IntN(4) {
						l.Toppings = append(l.Toppings, word())
					}
				}
				t.Lines = append(t.Lines, l)
			}
		}
		d.Tickets = append(d.Tickets, t)
	}
	return d
}

// TestAppendJSONIsEncodingJSON checks the hand-written encoder against
// encoding/json, byte for byte, on random displays.
func TestAppendJSONIsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 27))
	for i := range 500 {
		d := randomDisplay(rng, rng.IntN(6))
		want, err := json.Marshal(&d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.AppendJSON([]byte("prefix"))
		if err != nil {
			t.Fatalf("display %d: %v", i, err)
		}
		if string(got) != "prefix"+string(want) {
			t.Fatalf("display %d:\n got %s\nwant prefix%s", i, got, want)
		}
	}
}

// TestAppendJSONRefusesWhatEncodingJSONRefuses: a time outside RFC 3339's
// years is an error, not a broken document.
func TestAppendJSONRefusesWhatEncodingJSONRefuses(t *testing.T) {
	d := KitchenDisplay{RestaurantID: "downtown", Tickets: []TicketView{{OrderID: "o1", QueuedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}}
	if _, err := json.Marshal(&d); err == nil {
		t.Fatal("encoding/json accepted the year 10000")
	}
	if b, err := d.AppendJSON(nil); err == nil {
		t.Fatalf("AppendJSON accepted the year 10000: %s", b)
	}
}

// BenchmarkDisplayEncoding encodes a busy kitchen's display: 2,000
// tickets of plain names, as the catalogue has them.
func BenchmarkDisplayEncoding(b *testing.B) {
	now := time.Date(2026, 11, 27, 8, 0, 0, 123456789, time.UTC)
	d := KitchenDisplay{RestaurantID: "downtown", Tickets: []TicketView{}, Chefs: []ChefView{{ChefID: "chef-1", Name: "Ada", Capacity: 2}}, LastUpdated: now}
	for i := range 2000 {
		due := now.Add(time.Minute)
		d.Tickets = append(d.Tickets, TicketView{OrderID: fmt.Sprintf("0195c7f4-5a5e-7a1c-9a57-%012d", i), Stage: "Queued", QueuePosition: i + 1, Attempt: 1,
			Lines:    []LineView{{PizzaType: "Margherita", Size: "Large", Toppings: []string{"Basil", "Olives"}, Quantity: 2}, {PizzaType: "Pepperoni", Size: "Small", Toppings: []string{}, Quantity: 1}},
			QueuedAt: now, StageStartedAt: now, DueAt: &due})
	}
	b.Run("encoding/json", func(b *testing.B) {
		for range b.N {
			if _, err := json.Marshal(&d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		for range b.N {
			if _, err := d.AppendJSON(nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
