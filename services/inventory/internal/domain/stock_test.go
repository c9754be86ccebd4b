package domain

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/awesome-pizza/pizza/pkg/events"
)

var menu = []string{"basil", "dough", "mozzarella", "tomato_sauce"}

// opened returns a stock initialised with the given on-hand units.
func opened(t *testing.T, onHand map[string]int64) *Stock {
	t.Helper()
	s := New("downtown", menu)
	apply(t, s, must(t)(s.Initialize(onHand)))
	return s
}

func must(t *testing.T) func([]events.Event, error) []events.Event {
	return func(evs []events.Event, err error) []events.Event {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
}

func apply(t *testing.T, s *Stock, evs []events.Event) {
	t.Helper()
	for _, e := range evs {
		s.Apply(e)
	}
	checkInvariant(t, s)
}

func checkInvariant(t *testing.T, s *Stock) {
	t.Helper()
	for ing, l := range s.levels {
		if l.OnHand < 0 || l.Available() < 0 || l.Reserved < 0 {
			t.Fatalf("invariant broken for %s: %+v (available %d)", ing, l, l.Available())
		}
	}
}

func types(evs []events.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventType()
		if low, ok := e.(events.StockRunningLow); ok {
			out[i] += ":" + low.Ingredient
		}
	}
	return out
}

func TestThreshold(t *testing.T) {
	for opening, want := range map[int64]int64{0: 0, -3: 0, 1: 1, 5: 1, 10: 2, 11: 3, 300: 60, 400: 80} {
		if got := Threshold(opening); got != want {
			t.Errorf("Threshold(%d) = %d, want %d", opening, got, want)
		}
	}
}

func TestInitialize(t *testing.T) {
	s := New("downtown", menu)
	evs := must(t)(s.Initialize(map[string]int64{"dough": 400, "basil": 11, "olives": 0}))
	want := events.StockInitialized{RestaurantID: "downtown",
		OnHand:     map[string]int64{"dough": 400, "basil": 11, "olives": 0},
		Thresholds: map[string]int64{"dough": 80, "basil": 3, "olives": 0}}
	if !reflect.DeepEqual(evs, []events.Event{want}) {
		t.Fatalf("got %+v, want %+v", evs, want)
	}
	apply(t, s, evs)
	if _, err := s.Initialize(map[string]int64{"dough": 1}); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("second Initialize: %v, want ErrAlreadyInitialized", err)
	}
	if _, err := New("x", nil).Initialize(map[string]int64{"dough": -1}); err == nil {
		t.Fatal("negative opening stock was accepted")
	}
}

func TestReserve(t *testing.T) {
	lines := []events.OrderLine{{PizzaType: "Margherita", Size: "Medium", Quantity: 1}}
	cases := []struct {
		name      string
		onHand    map[string]int64
		before    func(t *testing.T, s *Stock)
		need      map[string]int64
		wantTypes []string
		wantErr   error
		missing   []events.MissingIngredient
	}{
		{name: "fits, stays above thresholds", onHand: map[string]int64{"dough": 100, "basil": 100},
			need: map[string]int64{"dough": 10, "basil": 5}, wantTypes: []string{"stock_reserved"}},
		{name: "fits, drops two ingredients to their thresholds", onHand: map[string]int64{"dough": 100, "basil": 100, "mozzarella": 100},
			need:      map[string]int64{"mozzarella": 80, "dough": 90, "basil": 1},
			wantTypes: []string{"stock_reserved", "stock_running_low:dough", "stock_running_low:mozzarella"}},
		{name: "takes everything", onHand: map[string]int64{"dough": 3},
			need: map[string]int64{"dough": 3}, wantTypes: []string{"stock_reserved", "stock_running_low:dough"}},
		{name: "alert already open: no second alert", onHand: map[string]int64{"dough": 10},
			before: func(t *testing.T, s *Stock) {
				apply(t, s, must(t)(s.Reserve("o0", map[string]int64{"dough": 8}, lines, events.GeoPoint{})))
			},
			need: map[string]int64{"dough": 1}, wantTypes: []string{"stock_reserved"}},
		{name: "short of two ingredients: rejected, both named, sorted", onHand: map[string]int64{"dough": 5, "basil": 1, "mozzarella": 50},
			need:      map[string]int64{"mozzarella": 2, "dough": 6, "basil": 2},
			wantTypes: []string{"stock_reservation_rejected"},
			missing:   []events.MissingIngredient{{Ingredient: "basil", Required: 2, Available: 1}, {Ingredient: "dough", Required: 6, Available: 5}}},
		{name: "ingredient not stocked at all", onHand: map[string]int64{"dough": 5},
			need: map[string]int64{"truffle": 1}, wantTypes: []string{"stock_reservation_rejected"},
			missing: []events.MissingIngredient{{Ingredient: "truffle", Required: 1, Available: 0}}},
		{name: "order already reserved", onHand: map[string]int64{"dough": 50},
			before: func(t *testing.T, s *Stock) {
				apply(t, s, must(t)(s.Reserve("o1", map[string]int64{"dough": 1}, lines, events.GeoPoint{})))
			},
			need: map[string]int64{"dough": 1}, wantErr: ErrOrderAlreadyHandled},
		{name: "order already rejected", onHand: map[string]int64{"dough": 0},
			before: func(t *testing.T, s *Stock) {
				apply(t, s, must(t)(s.Reserve("o1", map[string]int64{"dough": 1}, lines, events.GeoPoint{})))
			},
			need: map[string]int64{"dough": 1}, wantErr: ErrOrderAlreadyHandled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := opened(t, tc.onHand)
			if tc.before != nil {
				tc.before(t, s)
			}
			before := s.Levels()
			evs, err := s.Reserve("o1", tc.need, lines, events.GeoPoint{Latitude: 45.5, Longitude: -122.6})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got := types(evs); !reflect.DeepEqual(got, tc.wantTypes) {
				t.Fatalf("events %v, want %v", got, tc.wantTypes)
			}
			apply(t, s, evs)
			switch e := evs[0].(type) {
			case events.StockReservationRejected:
				if !reflect.DeepEqual(e.Missing, tc.missing) {
					t.Fatalf("missing %+v, want %+v", e.Missing, tc.missing)
				}
				if !reflect.DeepEqual(s.Levels(), before) {
					t.Fatalf("a rejection moved stock: %+v -> %+v", before, s.Levels())
				}
				if st, _ := s.Reservation("o1"); st != Rejected {
					t.Fatalf("state %s, want rejected", st)
				}
			case events.StockReserved:
				if e.OrderID != "o1" || e.RestaurantID != "downtown" || !reflect.DeepEqual(e.Lines, lines) || e.DeliveryLocation.Latitude != 45.5 {
					t.Fatalf("reservation %+v", e)
				}
				for ing, n := range tc.need {
					if got := s.levels[ing].Reserved - before[ing].Reserved; got != n {
						t.Fatalf("%s reserved +%d, want +%d", ing, got, n)
					}
				}
			}
		})
	}
}

// Every reservation state against Consume and Release.
func TestSettleReservation(t *testing.T) {
	need := map[string]int64{"dough": 2, "basil": 1}
	to := func(state ReservationState) func(t *testing.T, s *Stock) {
		return func(t *testing.T, s *Stock) {
			switch state {
			case NoReservation:
				return
			case Rejected:
				apply(t, s, must(t)(s.Reserve("o1", map[string]int64{"dough": 1000}, nil, events.GeoPoint{})))
				return
			}
			apply(t, s, must(t)(s.Reserve("o1", need, nil, events.GeoPoint{})))
			switch state {
			case Consumed:
				apply(t, s, must(t)(s.Consume("o1")))
			case Released:
				apply(t, s, must(t)(s.Release("o1", "cancelled")))
			case Wasted:
				apply(t, s, must(t)(s.Consume("o1")))
				apply(t, s, must(t)(s.Release("o1", "cancelled")))
			}
		}
	}
	cases := []struct {
		from        ReservationState
		consume     string // event type or error
		release     string
		afterRel    ReservationState
		onHandAfter int64 // dough on hand after the release decision is applied
	}{
		{from: NoReservation, consume: ErrNoReservation.Error(), release: ErrNoReservation.Error(), afterRel: NoReservation, onHandAfter: 10},
		{from: Rejected, consume: ErrNoReservation.Error(), release: ErrNoReservation.Error(), afterRel: Rejected, onHandAfter: 10},
		{from: Reserved, consume: "stock_consumed", release: "stock_released", afterRel: Released, onHandAfter: 10},
		{from: Consumed, consume: ErrAlreadyConsumed.Error(), release: "stock_wasted", afterRel: Wasted, onHandAfter: 8},
		{from: Released, consume: ErrReservationClosed.Error(), release: ErrReservationClosed.Error(), afterRel: Released, onHandAfter: 10},
		{from: Wasted, consume: ErrReservationClosed.Error(), release: ErrReservationClosed.Error(), afterRel: Wasted, onHandAfter: 8},
	}
	outcome := func(evs []events.Event, err error) string {
		if err != nil {
			return err.Error()
		}
		return evs[0].EventType()
	}
	for _, tc := range cases {
		t.Run(tc.from.String(), func(t *testing.T) {
			s := opened(t, map[string]int64{"dough": 10, "basil": 10})
			to(tc.from)(t, s)
			if got := outcome(s.Consume("o1")); got != tc.consume {
				t.Errorf("Consume: %s, want %s", got, tc.consume)
			}
			evs, err := s.Release("o1", "order cancelled: changed mind")
			if got := outcome(evs, err); got != tc.release {
				t.Errorf("Release: %s, want %s", got, tc.release)
			}
			apply(t, s, evs)
			if st, _ := s.Reservation("o1"); st != tc.afterRel {
				t.Errorf("state after release %s, want %s", st, tc.afterRel)
			}
			if l := s.levels["dough"]; l.OnHand != tc.onHandAfter || l.Reserved != 0 {
				t.Errorf("dough after release %+v, want on hand %d and nothing reserved", l, tc.onHandAfter)
			}
		})
	}
}

func TestConsumeMovesOnHandNotAvailable(t *testing.T) {
	s := opened(t, map[string]int64{"dough": 10})
	apply(t, s, must(t)(s.Reserve("o1", map[string]int64{"dough": 3}, nil, events.GeoPoint{})))
	if l := s.levels["dough"]; l.OnHand != 10 || l.Reserved != 3 || l.Available() != 7 {
		t.Fatalf("after reserve %+v", l)
	}
	apply(t, s, must(t)(s.Consume("o1")))
	if l := s.levels["dough"]; l.OnHand != 7 || l.Reserved != 0 || l.Available() != 7 {
		t.Fatalf("after consume %+v", l)
	}
}

func TestRestockAndAdjustValidation(t *testing.T) {
	cases := []struct {
		name   string
		decide func(s *Stock) ([]events.Event, error)
		fields []string
	}{
		{"restock: no items", func(s *Stock) ([]events.Event, error) { return s.Restock(nil, "") }, []string{"items"}},
		{"restock: zero", func(s *Stock) ([]events.Event, error) {
			return s.Restock([]Quantity{{"dough", 0}}, "")
		}, []string{"items[0].quantity"}},
		{"restock: negative", func(s *Stock) ([]events.Event, error) {
			return s.Restock([]Quantity{{"dough", 5}, {"basil", -2}}, "")
		}, []string{"items[1].quantity"}},
		{"restock: unknown ingredient", func(s *Stock) ([]events.Event, error) {
			return s.Restock([]Quantity{{"caviar", 5}}, "")
		}, []string{"items[0].ingredient"}},
		{"restock: listed twice", func(s *Stock) ([]events.Event, error) {
			return s.Restock([]Quantity{{"dough", 5}, {"dough", 1}}, "")
		}, []string{"items[1].ingredient"}},
		{"adjust: negative on hand and no reason", func(s *Stock) ([]events.Event, error) {
			return s.Adjust([]Quantity{{"dough", -1}}, " ", "")
		}, []string{"items[0].onHand", "reason"}},
		{"adjust: unknown ingredient", func(s *Stock) ([]events.Event, error) {
			return s.Adjust([]Quantity{{"caviar", 1}}, "count", "")
		}, []string{"items[0].ingredient"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := opened(t, map[string]int64{"dough": 10, "basil": 10})
			_, err := tc.decide(s)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			var got []string
			for _, f := range ve.Fields {
				got = append(got, f.Field)
			}
			if !reflect.DeepEqual(got, tc.fields) {
				t.Fatalf("fields %v, want %v", got, tc.fields)
			}
		})
	}
}

func TestRestockKnownMenuIngredientNotYetStocked(t *testing.T) {
	s := opened(t, map[string]int64{"dough": 10})
	evs := must(t)(s.Restock([]Quantity{{"mozzarella", 4}}, "alice"))
	if got := types(evs); !reflect.DeepEqual(got, []string{"stock_restocked"}) {
		t.Fatalf("events %v", got)
	}
	apply(t, s, evs)
	if l := s.levels["mozzarella"]; l.OnHand != 4 || l.Threshold != 0 {
		t.Fatalf("mozzarella %+v", l)
	}
}

func TestAdjustBelowReserved(t *testing.T) {
	s := opened(t, map[string]int64{"dough": 100})
	apply(t, s, must(t)(s.Reserve("o1", map[string]int64{"dough": 30}, nil, events.GeoPoint{})))
	_, err := s.Adjust([]Quantity{{"dough", 29}}, "stock take", "bob")
	var be *BelowReservedError
	if !errors.As(err, &be) || be.Ingredient != "dough" || be.OnHand != 29 || be.Reserved != 30 {
		t.Fatalf("err = %v, want BelowReservedError for dough 29 < 30", err)
	}
	// Exactly the reserved units are allowed: available becomes 0, and the
	// ingredient is low.
	evs := must(t)(s.Adjust([]Quantity{{"dough", 30}}, "stock take", "bob"))
	if got := types(evs); !reflect.DeepEqual(got, []string{"stock_adjusted", "stock_running_low:dough"}) {
		t.Fatalf("events %v", got)
	}
	apply(t, s, evs)
	// Consumed units no longer count as reserved.
	apply(t, s, must(t)(s.Consume("o1")))
	apply(t, s, must(t)(s.Adjust([]Quantity{{"dough", 0}}, "spoiled", "bob")))
}

// The alert lifecycle: raised once when a drop reaches the threshold,
// never again while open (drops, releases, periodic checks), closed by a
// restock above the threshold, raised again by the next drop.
func TestLowStockAlertLifecycle(t *testing.T) {
	s := opened(t, map[string]int64{"dough": 50}) // threshold 10
	alerts := 0
	step := func(evs []events.Event, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if _, ok := e.(events.StockRunningLow); ok {
				alerts++
			}
		}
		apply(t, s, evs)
	}
	step(s.Reserve("o1", map[string]int64{"dough": 39}, nil, events.GeoPoint{})) // available 11
	if alerts != 0 || len(s.CheckLow()) != 0 {
		t.Fatal("alert above the threshold")
	}
	step(s.Reserve("o2", map[string]int64{"dough": 1}, nil, events.GeoPoint{})) // available 10
	if alerts != 1 {
		t.Fatalf("%d alerts at the threshold, want 1", alerts)
	}
	step(s.Reserve("o3", map[string]int64{"dough": 5}, nil, events.GeoPoint{}))
	step(s.CheckLow(), nil)
	step(s.Release("o3", "cancelled"))
	step(s.CheckLow(), nil)
	if alerts != 1 {
		t.Fatalf("%d alerts while the alert is open, want 1", alerts)
	}
	step(s.Restock([]Quantity{{"dough", 1}}, "")) // available 11 > 10: closed
	if l := s.levels["dough"]; l.Alert {
		t.Fatalf("alert still open after restocking above the threshold: %+v", l)
	}
	step(s.Reserve("o4", map[string]int64{"dough": 1}, nil, events.GeoPoint{}))
	if alerts != 2 {
		t.Fatalf("%d alerts after the next drop, want 2", alerts)
	}
}

func TestRestockStillLowKeepsOrRaisesAlert(t *testing.T) {
	s := opened(t, map[string]int64{"dough": 50}) // threshold 10
	apply(t, s, must(t)(s.Adjust([]Quantity{{"dough", 2}}, "spoiled", "")))
	if !s.levels["dough"].Alert {
		t.Fatal("adjusting to below the threshold raised no alert")
	}
	evs := must(t)(s.Restock([]Quantity{{"dough", 3}}, ""))
	if got := types(evs); !reflect.DeepEqual(got, []string{"stock_restocked"}) {
		t.Fatalf("events %v", got)
	}
	apply(t, s, evs)
	if !s.levels["dough"].Alert {
		t.Fatal("a restock that leaves the ingredient low closed the alert")
	}
}

func TestCheckLowOnceForUnstockedIngredient(t *testing.T) {
	s := opened(t, map[string]int64{"dough": 50, "basil": 0})
	evs := s.CheckLow()
	if got := types(evs); !reflect.DeepEqual(got, []string{"stock_running_low:basil"}) {
		t.Fatalf("events %v", got)
	}
	apply(t, s, evs)
	if evs := s.CheckLow(); len(evs) != 0 {
		t.Fatalf("second check raised %v", types(evs))
	}
}

// A random mix of every decision, applied as decided: on-hand and
// available never go negative, and the levels always equal a fold of the
// events from scratch.
func TestRandomDecisionsKeepTheInvariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := opened(t, map[string]int64{"dough": 40, "basil": 20, "mozzarella": 60})
	log := []events.Event{}
	{
		fresh := New("downtown", menu)
		init, _ := fresh.Initialize(map[string]int64{"dough": 40, "basil": 20, "mozzarella": 60})
		log = append(log, init...)
	}
	ings := []string{"dough", "basil", "mozzarella"}
	for i := range 5000 {
		order := fmt.Sprintf("o%d", rng.IntN(300))
		var evs []events.Event
		var err error
		switch rng.IntN(6) {
		case 0, 1:
			need := map[string]int64{ings[rng.IntN(3)]: int64(1 + rng.IntN(6)), ings[rng.IntN(3)]: int64(1 + rng.IntN(3))}
			evs, err = s.Reserve(order, need, nil, events.GeoPoint{})
		case 2:
			evs, err = s.Consume(order)
		case 3:
			evs, err = s.Release(order, "random")
		case 4:
			evs, err = s.Restock([]Quantity{{ings[rng.IntN(3)], int64(1 + rng.IntN(10))}}, "")
		case 5:
			evs, err = s.Adjust([]Quantity{{ings[rng.IntN(3)], int64(rng.IntN(40))}}, "count", "")
			var be *BelowReservedError
			if errors.As(err, &be) {
				err = nil
			}
		}
		if err != nil && !errors.Is(err, ErrOrderAlreadyHandled) && !errors.Is(err, ErrNoReservation) &&
			!errors.Is(err, ErrReservationClosed) && !errors.Is(err, ErrAlreadyConsumed) {
			t.Fatalf("step %d: %v", i, err)
		}
		apply(t, s, evs)
		log = append(log, evs...)
	}
	folded := Levels{}
	for _, e := range log {
		folded.Apply(e)
	}
	if !reflect.DeepEqual(folded, s.levels) {
		t.Fatalf("fold of the log %+v differs from the aggregate %+v", folded, s.levels)
	}
}
