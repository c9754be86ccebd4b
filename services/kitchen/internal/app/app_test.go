package app

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/kitchen/internal/domain"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
)

var t0 = time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)

// displayFold folds events into a display kept in a map (the projector
// keeps it in its transaction) and assembles it after every event, as a
// reader would.
type displayFold struct {
	t       *testing.T
	h       kitchenapi.StoredHead
	tickets mapParts
	d       kitchenapi.KitchenDisplay
	r       *catalog.Restaurant
	seq     uint64
	// touched counts the tickets each event read or wrote.
	touched int
}

type mapParts struct {
	m       map[string]kitchenapi.StoredTicket
	touched *int
}

func (p mapParts) ticket(id string) (*kitchenapi.StoredTicket, bool, error) {
	*p.touched++
	t, ok := p.m[id]
	return &t, ok, nil
}

func (p mapParts) put(t *kitchenapi.StoredTicket, added bool) {
	*p.touched++
	if _, ok := p.m[t.OrderID]; ok == added {
		panic(fmt.Sprintf("put %s: added %v, but on the display: %v", t.OrderID, added, ok))
	}
	p.m[t.OrderID] = *t
}

func (p mapParts) remove(t *kitchenapi.StoredTicket) {
	*p.touched++
	delete(p.m, t.OrderID)
}

func newDisplayFold(t *testing.T) *displayFold {
	r, _ := catalog.Default().Restaurant("downtown")
	f := &displayFold{t: t, h: kitchenapi.StoredHead{Display: kitchenapi.EmptyDisplay(r)}, r: r}
	f.tickets = mapParts{m: map[string]kitchenapi.StoredTicket{}, touched: &f.touched}
	f.assemble()
	return f
}

func (f *displayFold) assemble() {
	ts := make([]kitchenapi.StoredTicket, 0, len(f.tickets.m))
	for _, t := range f.tickets.m {
		ts = append(ts, t)
	}
	f.d = kitchenapi.Assemble(f.h, ts)
}

func (f *displayFold) apply(id string, e events.Event) bool {
	f.t.Helper()
	f.seq++
	f.touched = 0
	changed, err := applyToDisplay(&f.h, f.tickets, f.r, "downtown", id, e, f.seq, t0.Add(time.Duration(f.seq)*time.Second))
	if err != nil {
		f.t.Fatal(err)
	}
	f.assemble()
	return changed
}

func (f *displayFold) ticket(id string) kitchenapi.TicketView {
	for _, t := range f.d.Tickets {
		if t.OrderID == id {
			return t
		}
	}
	f.t.Fatalf("ticket %s not displayed", id)
	return kitchenapi.TicketView{}
}

var small = []events.OrderLine{{PizzaType: "Margherita", Size: "Small", Quantity: 1}}

func TestDisplayQueuePositionsRemakesFirst(t *testing.T) {
	f := newDisplayFold(t)
	for _, id := range []string{"o1", "o2", "o3"} {
		f.apply(id, events.TicketQueued{RestaurantID: "downtown", Lines: small})
	}
	f.apply("o3", events.TicketPreparationStarted{RestaurantID: "downtown", ChefID: "downtown-chef-1", Attempt: 1, DueAt: t0.Add(time.Hour)})
	f.apply("o3", events.TicketBakingStarted{RestaurantID: "downtown", DueAt: t0.Add(time.Hour)})
	f.apply("o3", events.TicketQualityCheckStarted{RestaurantID: "downtown", DueAt: t0.Add(time.Hour)})
	f.apply("o3", events.TicketQualityCheckFailed{RestaurantID: "downtown", Attempt: 1, Reason: "burnt"})
	tests := []struct {
		id      string
		pos     int
		attempt int
		remake  bool
	}{
		{"o3", 1, 2, true},
		{"o1", 2, 1, false},
		{"o2", 3, 1, false},
	}
	for _, tt := range tests {
		tv := f.ticket(tt.id)
		if tv.QueuePosition != tt.pos || tv.Attempt != tt.attempt || tv.Remake != tt.remake || tv.Stage != "Queued" || tv.ChefID != "" || tv.DueAt != nil {
			t.Errorf("%s: %+v, want position %d attempt %d remake %v", tt.id, tv, tt.pos, tt.attempt, tt.remake)
		}
	}
	if f.d.Counts != (kitchenapi.StageCounts{Queued: 3}) || f.d.Version != f.seq {
		t.Errorf("counts %+v version %d", f.d.Counts, f.d.Version)
	}
	// Preparing: a chef's active ticket, no queue position.
	due := t0.Add(5 * time.Minute)
	f.apply("o1", events.TicketPreparationStarted{RestaurantID: "downtown", ChefID: "downtown-chef-2", Attempt: 1, DueAt: due})
	if tv := f.ticket("o1"); tv.QueuePosition != 0 || tv.DueAt == nil || !tv.DueAt.Equal(due) || tv.Stage != "Preparing" {
		t.Errorf("o1 %+v", tv)
	}
	if c := f.d.Chefs[1]; c.ChefID != "downtown-chef-2" || c.ActiveTickets != 1 || c.Name != "Ben" {
		t.Errorf("chef %+v", c)
	}
	if tv := f.ticket("o2"); tv.QueuePosition != 2 {
		t.Errorf("o2 moved to %d", tv.QueuePosition)
	}
}

func TestDisplayKeepsRecentReadyTickets(t *testing.T) {
	f := newDisplayFold(t)
	n := kitchenapi.ReadyTicketsKept + 5
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("o%d", i)
		f.apply(id, events.TicketQueued{RestaurantID: "downtown", Lines: small})
	}
	f.apply("waiting", events.TicketQueued{RestaurantID: "downtown", Lines: small})
	// Ready in reverse queue order: the first queued become ready last.
	for i := n - 1; i >= 0; i-- {
		f.apply(fmt.Sprintf("o%d", i), events.TicketReady{RestaurantID: "downtown"})
	}
	if f.d.Counts.Ready != kitchenapi.ReadyTicketsKept || f.d.Counts.Queued != 1 || len(f.d.Tickets) != kitchenapi.ReadyTicketsKept+1 {
		t.Fatalf("counts %+v, %d tickets", f.d.Counts, len(f.d.Tickets))
	}
	// The five that became ready first (o54..o50) are gone; queue order is kept.
	for i, tv := range f.d.Tickets[:kitchenapi.ReadyTicketsKept] {
		if want := fmt.Sprintf("o%d", i); tv.OrderID != want {
			t.Fatalf("ticket %d is %s, want %s", i, tv.OrderID, want)
		}
	}
	if f.d.Tickets[len(f.d.Tickets)-1].OrderID != "waiting" {
		t.Fatal("active ticket dropped")
	}
}

func TestDisplayIgnoresWhatItDoesNotShow(t *testing.T) {
	f := newDisplayFold(t)
	tests := []struct {
		name string
		id   string
		e    events.Event
	}{
		{"event of an unknown ticket", "ghost", events.TicketBakingStarted{RestaurantID: "downtown"}},
		{"break of a chef not in the catalogue", "nobody", events.ChefBreakStarted{RestaurantID: "downtown"}},
		{"event of another context", "o1", events.OrderPlaced{}},
	}
	for _, tt := range tests {
		if f.apply(tt.id, tt.e) {
			t.Errorf("%s changed the display", tt.name)
		}
	}
	f.apply("o1", events.TicketQueued{RestaurantID: "downtown", Lines: small})
	if f.apply("o1", events.TicketQueued{RestaurantID: "downtown", Lines: small}) || len(f.d.Tickets) != 1 {
		t.Error("a second ticket_queued added a ticket")
	}
	if !f.apply("downtown-chef-3", events.ChefBreakStarted{RestaurantID: "downtown"}) || !f.d.Chefs[2].OnBreak {
		t.Error("break not shown")
	}
	if !f.apply("o1", events.TicketWithdrawn{RestaurantID: "downtown", FromStage: "Queued"}) || len(f.d.Tickets) != 0 || f.d.Counts != (kitchenapi.StageCounts{}) {
		t.Errorf("withdrawn ticket still displayed: %+v", f.d)
	}
}

func TestRestaurantOfEveryKitchenEvent(t *testing.T) {
	r := events.NewRegistry()
	all := []events.Event{
		events.TicketQueued{RestaurantID: "x"}, events.TicketPreparationStarted{RestaurantID: "x"}, events.TicketBakingStarted{RestaurantID: "x"},
		events.TicketQualityCheckStarted{RestaurantID: "x"}, events.TicketQualityCheckFailed{RestaurantID: "x"}, events.TicketReady{RestaurantID: "x"},
		events.TicketWithdrawn{RestaurantID: "x"}, events.ChefBreakStarted{RestaurantID: "x"}, events.ChefBreakEnded{RestaurantID: "x"},
	}
	for _, e := range all {
		if !r.Known(e.EventType()) {
			t.Errorf("%s is not registered", e.EventType())
		}
		if restaurantOf(e) != "x" {
			t.Errorf("restaurantOf(%s) misses the restaurant", e.EventType())
		}
	}
}

func TestToProblem(t *testing.T) {
	tests := []struct {
		err    error
		status int
		state  string
	}{
		{&domain.ValidationError{Fields: []domain.FieldError{{Field: "chefId", Detail: "is required"}}}, 422, ""},
		{ErrChefNotFound, 404, ""},
		{domain.ErrAlreadyOnBreak, 409, kitchenapi.ChefOnBreak},
		{domain.ErrNotOnBreak, 409, kitchenapi.ChefWorking},
		{ErrConcurrentUpdate, 409, ""},
		{fmt.Errorf("append: %w", eventstore.ErrUnavailable), 503, ""},
		{errors.New("boom"), 500, ""},
	}
	for _, tt := range tests {
		p := ToProblem(tt.err)
		if p.Status != tt.status || p.CurrentStatus != tt.state || p.Type == "" {
			t.Errorf("ToProblem(%v) = %+v, want %d %q", tt.err, p, tt.status, tt.state)
		}
	}
	if p := ToProblem(&domain.ValidationError{Fields: []domain.FieldError{{Field: "chefId", Detail: "x"}}}); len(p.Errors) != 1 || p.Errors[0].Field != "chefId" {
		t.Errorf("validation fields %+v", p.Errors)
	}
}

// TestDisplayWorkDoesNotGrowWithTheQueue: with 500 tickets waiting, an
// event reads and writes its own ticket only (ADR 0023).
func TestDisplayWorkDoesNotGrowWithTheQueue(t *testing.T) {
	f := newDisplayFold(t)
	for i := range 500 {
		f.apply(fmt.Sprintf("o%d", i), events.TicketQueued{RestaurantID: "downtown", Lines: small})
	}
	f.apply("o499", events.TicketPreparationStarted{RestaurantID: "downtown", ChefID: "downtown-chef-1", Attempt: 1, DueAt: t0.Add(time.Hour)})
	if f.touched > 2 {
		t.Errorf("starting one preparation touched %d tickets", f.touched)
	}
	if f.d.Counts.Queued != 499 || f.d.Counts.Preparing != 1 || f.d.Chefs[0].ActiveTickets != 1 {
		t.Errorf("counts %+v, chef %+v", f.d.Counts, f.d.Chefs[0])
	}
	if tv := f.ticket("o0"); tv.QueuePosition != 1 {
		t.Errorf("head of the queue at position %d", tv.QueuePosition)
	}
}

// TestDisplayCountsMatchTheTickets folds random kitchen lives (remakes,
// withdrawals at any stage, more Ready tickets than are kept) and checks
// after every event that the counts and the chefs' active tickets, kept
// as running totals, equal a recount of the displayed tickets.
func TestDisplayCountsMatchTheTickets(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 11))
	f := newDisplayFold(t)
	chefs := []string{"downtown-chef-1", "downtown-chef-2", "downtown-chef-3"}
	stage := map[string]int{} // 0 queued, 1 preparing, 2 baking, 3 check, 4 ready
	for step := range 3000 {
		id := fmt.Sprintf("o%d", rng.IntN(150))
		st, known := stage[id]
		var e events.Event
		switch {
		case !known:
			e, stage[id] = events.TicketQueued{RestaurantID: "downtown", Lines: small}, 0
		case rng.IntN(12) == 0:
			e = events.TicketWithdrawn{RestaurantID: "downtown"}
			delete(stage, id)
		case st == 0:
			e, stage[id] = events.TicketPreparationStarted{RestaurantID: "downtown", ChefID: chefs[rng.IntN(3)], Attempt: 1, DueAt: t0}, 1
		case st == 1:
			e, stage[id] = events.TicketBakingStarted{RestaurantID: "downtown", DueAt: t0}, 2
		case st == 2:
			e, stage[id] = events.TicketQualityCheckStarted{RestaurantID: "downtown", DueAt: t0}, 3
		case st == 3 && rng.IntN(4) == 0:
			e, stage[id] = events.TicketQualityCheckFailed{RestaurantID: "downtown", Attempt: 1}, 0
		case st == 3:
			e, stage[id] = events.TicketReady{RestaurantID: "downtown"}, 4
		default:
			continue
		}
		f.apply(id, e)
		var want kitchenapi.StageCounts
		active := map[string]int{}
		for _, tv := range f.d.Tickets {
			switch tv.Stage {
			case kitchenapi.StageQueued:
				want.Queued++
			case kitchenapi.StagePreparing:
				want.Preparing++
				active[tv.ChefID]++
			case kitchenapi.StageBaking:
				want.Baking++
			case kitchenapi.StageQualityCheck:
				want.QualityCheck++
			case kitchenapi.StageReady:
				want.Ready++
			}
		}
		if f.d.Counts != want {
			t.Fatalf("step %d (%s %s): counts %+v, the tickets say %+v", step, id, e.EventType(), f.d.Counts, want)
		}
		for _, c := range f.d.Chefs {
			if c.ActiveTickets != active[c.ChefID] {
				t.Fatalf("step %d: chef %s active %d, the tickets say %d", step, c.ChefID, c.ActiveTickets, active[c.ChefID])
			}
		}
		if want.Ready > kitchenapi.ReadyTicketsKept {
			t.Fatalf("step %d: %d Ready tickets kept", step, want.Ready)
		}
	}
}
