package domain

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
)

var t0 = time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)

// orderIn walks a fresh order along the happy path (or a remake) until it
// is in status s, applying the events its own decisions return.
func orderIn(t *testing.T, s Status) *Order {
	t.Helper()
	o := New("o1")
	evs, err := o.Place(validInput(), catalog.Default(), t0)
	if err != nil {
		t.Fatal(err)
	}
	// Placed as an order_placed.v2 would have left it: Created, so every
	// transition out of Created stays covered (placements validate since v3).
	placed := evs[0].(events.OrderPlaced)
	placed.Validated = false
	o.Apply(placed, t0) // Created
	path := []Status{Validated, Queued, Preparing, Baking, QualityCheck, ReadyForPickup, DriverAssigned, PickedUp, OutForDelivery, Delivered}
	switch s {
	case Created:
		return o
	case Cancelled, Failed:
		step(t, o, s)
		return o
	}
	for _, next := range path {
		step(t, o, next)
		if next == s {
			return o
		}
	}
	t.Fatalf("status %s not reachable", s)
	return nil
}

func step(t *testing.T, o *Order, to Status) {
	t.Helper()
	evs, err := o.Transition(to, TransitionDetails{DriverID: "d1", ChefID: "chef", Reason: "test"})
	if err != nil {
		t.Fatalf("%s -> %s: %v", o.Status(), to, err)
	}
	for _, e := range evs {
		o.Apply(e, t0)
	}
	if o.Status() != to {
		t.Fatalf("applying %T left status %s, want %s", evs[0], o.Status(), to)
	}
}

func validInput() PlaceInput {
	return PlaceInput{CustomerID: "c1", RestaurantID: "downtown", PaymentMethod: "Cash",
		Items:    []ItemInput{{PizzaType: "Margherita", Size: "Large", Quantity: 2, Toppings: []string{"Basil"}}},
		Location: events.GeoPoint{Latitude: 45.5, Longitude: -122.6}}
}

// Every pair of states: the allowed ones move the order and record the
// matching event; every other one is refused with a TransitionError and
// changes nothing.
func TestEveryTransition(t *testing.T) {
	allowed := map[string]bool{}
	for _, p := range [][2]Status{
		{Created, Validated}, {Created, Cancelled}, {Created, Failed},
		{Validated, Queued}, {Validated, Cancelled}, {Validated, Failed},
		{Queued, Preparing}, {Queued, Cancelled}, {Queued, Failed},
		{Preparing, Baking}, {Preparing, Cancelled}, {Preparing, Failed},
		{Baking, QualityCheck}, {Baking, Cancelled}, {Baking, Failed},
		{QualityCheck, ReadyForPickup}, {QualityCheck, Preparing}, {QualityCheck, Cancelled}, {QualityCheck, Failed},
		{ReadyForPickup, DriverAssigned}, {ReadyForPickup, Cancelled}, {ReadyForPickup, Failed},
		{DriverAssigned, PickedUp}, {DriverAssigned, Failed},
		{PickedUp, OutForDelivery}, {PickedUp, Failed},
		{OutForDelivery, Delivered}, {OutForDelivery, Failed},
	} {
		allowed[string(p[0])+">"+string(p[1])] = true
	}
	for _, from := range AllStatuses {
		for _, to := range AllStatuses {
			name := fmt.Sprintf("%s->%s", from, to)
			t.Run(name, func(t *testing.T) {
				o := orderIn(t, from)
				driver := o.DriverID()
				if driver == "" {
					driver = "d1"
				}
				evs, err := o.Transition(to, TransitionDetails{DriverID: driver, ChefID: "chef", Reason: "because"})
				if allowed[string(from)+">"+string(to)] {
					if err != nil {
						t.Fatalf("allowed transition refused: %v", err)
					}
					if len(evs) != 1 {
						t.Fatalf("%d events", len(evs))
					}
					o.Apply(evs[0], t0)
					if o.Status() != to {
						t.Fatalf("status %s after %T", o.Status(), evs[0])
					}
					return
				}
				var te *TransitionError
				if !errors.As(err, &te) || te.From != from || te.To != to {
					t.Fatalf("forbidden transition gave %v", err)
				}
				if o.Status() != from {
					t.Fatal("a refused transition changed the order")
				}
			})
		}
	}
	if CanTransition(Delivered, Cancelled) || !CanTransition(QualityCheck, Preparing) {
		t.Fatal("CanTransition disagrees with the table")
	}
}

func TestRemakeIsRecorded(t *testing.T) {
	o := orderIn(t, QualityCheck)
	evs, err := o.Transition(Preparing, TransitionDetails{ChefID: "chef-2"})
	if err != nil {
		t.Fatal(err)
	}
	if p := evs[0].(events.OrderPreparationStarted); !p.Remake || p.ChefID != "chef-2" {
		t.Fatalf("%+v", p)
	}
}

func TestDriverRules(t *testing.T) {
	o := orderIn(t, ReadyForPickup)
	if _, err := o.Transition(DriverAssigned, TransitionDetails{}); !errors.Is(err, ErrDriverRequired) {
		t.Fatalf("assign without driver: %v", err)
	}
	step(t, o, DriverAssigned) // d1
	if _, err := o.Transition(PickedUp, TransitionDetails{DriverID: "d2"}); !errors.Is(err, ErrWrongDriver) {
		t.Fatalf("pickup by another driver: %v", err)
	}
	if _, err := orderIn(t, Queued).Transition(Failed, TransitionDetails{}); !errors.Is(err, ErrReasonRequired) {
		t.Fatalf("fail without reason: %v", err)
	}
	if _, err := New("x").Transition(Validated, TransitionDetails{}); !errors.Is(err, ErrNotPlaced) {
		t.Fatalf("transition before placement: %v", err)
	}
}

func TestPlacePricesFromTheMenu(t *testing.T) {
	in := validInput()
	in.Items = append(in.Items, ItemInput{PizzaType: "Pepperoni", Size: "Small", Quantity: 1})
	evs, err := New("o1").Place(in, catalog.Default(), t0)
	if err != nil {
		t.Fatal(err)
	}
	placed := evs[0].(events.OrderPlaced)
	if len(evs) != 1 || !placed.Validated {
		t.Fatalf("events %#v, want one order_placed that validated the order", evs)
	}
	o := New("o1")
	o.Apply(placed, t0)
	if o.Status() != Validated {
		t.Fatalf("placed order in status %s, want Validated", o.Status())
	}
	// Margherita Large 1599 + Basil Large 150 = 1749 x2; Pepperoni Small 1199.
	if placed.Items[0].UnitPriceCents != 1749 || placed.Items[0].LineTotalCents != 3498 || placed.TotalCents != 3498+1199 {
		t.Fatalf("priced %+v total %d", placed.Items, placed.TotalCents)
	}
	if placed.Currency != "USD" || !placed.EstimatedDeliveryAt.After(t0) {
		t.Fatalf("%+v", placed)
	}
}

func TestPlaceRejectsWhatTheMenuDoesNotHave(t *testing.T) {
	cases := map[string]struct {
		mutate func(*PlaceInput)
		field  string
	}{
		"restaurant": {func(in *PlaceInput) { in.RestaurantID = "atlantis" }, "restaurantId"},
		"pizza":      {func(in *PlaceInput) { in.Items[0].PizzaType = "Calzone" }, "items[0].pizzaType"},
		"not here":   {func(in *PlaceInput) { in.RestaurantID = "hawthorne"; in.Items[0].PizzaType = "Hawaiian" }, "items[0].pizzaType"},
		"topping":    {func(in *PlaceInput) { in.Items[0].Toppings = []string{"Gold"} }, "items[0].toppings"},
		"size":       {func(in *PlaceInput) { in.Items[0].Size = "Jumbo" }, "items[0].size"},
	}
	for name, tc := range cases {
		in := validInput()
		tc.mutate(&in)
		_, err := New("o1").Place(in, catalog.Default(), t0)
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Fields[0].Field != tc.field {
			t.Errorf("%s: %v", name, err)
		}
	}
	o := orderIn(t, Created)
	if _, err := o.Place(validInput(), catalog.Default(), t0); !errors.Is(err, ErrAlreadyPlaced) {
		t.Fatalf("second placement: %v", err)
	}
}

func TestPlaceAddsTheRestaurantsDeliveryFee(t *testing.T) {
	cat := catalog.Default()
	r, _ := cat.Restaurant("downtown")
	r.DeliveryFeeCents = 250
	evs, err := New("o1").Place(validInput(), cat, t0)
	if err != nil {
		t.Fatal(err)
	}
	p := evs[0].(events.OrderPlaced)
	if p.SubtotalCents != 3498 || p.DeliveryFeeCents != 250 || p.TotalCents != 3748 {
		t.Fatalf("priced %+v", p)
	}
}
