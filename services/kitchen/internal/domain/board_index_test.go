package domain

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
)

// checkIndex compares the board's stage indexes with what a scan of
// every ticket gives.
func checkIndex(t *testing.T, b *Board) {
	t.Helper()
	var queued, timed []string
	for id, en := range b.tickets {
		switch st := en.ticket.Stage(); {
		case st == Queued:
			queued = append(queued, id)
		case st.Timed():
			timed = append(timed, id)
		}
	}
	for name, pair := range map[string][2][]string{"queued": {queued, keys(b.queued)}, "timed": {timed, keys(b.timed)}} {
		slices.Sort(pair[0])
		if !slices.Equal(pair[0], pair[1]) {
			t.Fatalf("%s index %v, the tickets say %v", name, pair[1], pair[0])
		}
	}
	for _, c := range b.chefs {
		n := 0
		for _, en := range b.tickets {
			if en.ticket.Occupies(c.spec.ID) {
				n++
			}
		}
		if got := b.Load(c.spec.ID); got != n {
			t.Fatalf("chef %s: load %d, the tickets say %d", c.spec.ID, got, n)
		}
	}
	if q := b.queue(); len(q) > 0 && b.head() != q[0] {
		t.Fatalf("head %s, the sorted queue starts with %s", b.head().ticket, q[0].ticket)
	}
}

func keys(m map[string]*entry) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestBoardIndexesFollowEveryStage runs a kitchen with remakes, a
// withdrawal and a break through to the end, checking after every step
// that the indexes the decisions read agree with the tickets.
func TestBoardIndexesFollowEveryStage(t *testing.T) {
	p := Policy{QCFailureRate: 0.3, Seed: 11}
	f := &fold{t: t, b: board()}
	for i := 1; i <= 40; i++ {
		f.queue(fmt.Sprintf("o%02d", i), lines("Large", 1+i%3)...)
	}
	checkIndex(t, f.b)
	f.apply("o07", events.TicketWithdrawn{RestaurantID: "downtown", Reason: "cancelled"})
	f.apply("c", events.ChefBreakStarted{RestaurantID: "downtown"})
	checkIndex(t, f.b)
	now := t0
	for step := 0; f.b.Active() > 0; step++ {
		if step > 10_000 {
			t.Fatalf("the kitchen never empties: %d tickets left", f.b.Active())
		}
		if step == 50 {
			f.apply("c", events.ChefBreakEnded{RestaurantID: "downtown"})
		}
		d, ok := f.b.Next(now, p)
		if !ok {
			due, any := f.b.NextDue()
			if !any {
				t.Fatalf("%d tickets left, no decision and nothing due", f.b.Active())
			}
			now = due
			continue
		}
		for _, e := range d.Events {
			f.apply(d.OrderID, e)
		}
		checkIndex(t, f.b)
	}
	if len(f.b.queued) != 0 || len(f.b.timed) != 0 {
		t.Fatalf("indexes hold %d queued and %d timed tickets after the kitchen emptied", len(f.b.queued), len(f.b.timed))
	}
}

// BenchmarkBoardNextLongQueue is a decision in a kitchen whose chefs are
// busy while thousands of tickets wait (the intake benchmark's state).
func BenchmarkBoardNextLongQueue(b *testing.B) {
	f := &fold{t: &testing.T{}, b: board()}
	for i := range 3000 {
		f.queue(fmt.Sprintf("o%05d", i))
	}
	f.run(t0, Policy{}) // every chef busy
	now := t0.Add(time.Second)
	b.ResetTimer()
	for range b.N {
		if _, ok := f.b.Next(now, Policy{}); ok {
			b.Fatal("a decision with every chef busy")
		}
	}
}
