package domain

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
)

var t0 = time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)

func lines(spec ...any) []events.OrderLine {
	var out []events.OrderLine
	for i := 0; i < len(spec); i += 2 {
		out = append(out, events.OrderLine{PizzaType: "Margherita", Size: spec[i].(string), Quantity: spec[i+1].(int)})
	}
	return out
}

// ticketIn walks a fresh ticket to stage s by its own decisions.
func ticketIn(t *testing.T, s Stage) *Ticket {
	t.Helper()
	tk := NewTicket("o1")
	if s == NotQueued {
		return tk
	}
	step := func(evs []events.Event, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("walking to %s: %v", s, err)
		}
		for _, e := range evs {
			tk.Apply(e, t0)
		}
	}
	step(tk.Queue(QueueInput{RestaurantID: "downtown", Lines: lines("Large", 1)}))
	if s == Withdrawn {
		step(tk.Withdraw("cancelled"))
		return tk
	}
	for _, next := range []Stage{Preparing, Baking, QualityCheck, Ready} {
		if tk.Stage() == s {
			return tk
		}
		switch next {
		case Preparing:
			step(tk.StartPreparation("chef-1", t0, time.Minute))
		case Baking:
			step(tk.StartBaking(t0, time.Minute))
		case QualityCheck:
			step(tk.StartQualityCheck(t0, time.Minute))
		case Ready:
			step(tk.FinishQualityCheck(true))
		}
	}
	if tk.Stage() != s {
		t.Fatalf("stage %s not reached", s)
	}
	return tk
}

// Every decision in every stage: allowed ones return the stage's event,
// the others a typed error, and none changes the ticket.
func TestTicketDecisions(t *testing.T) {
	stages := []Stage{NotQueued, Queued, Preparing, Baking, QualityCheck, Ready, Withdrawn}
	type decision struct {
		name    string
		allowed map[Stage]bool
		decide  func(*Ticket) ([]events.Event, error)
		want    string // event type when allowed
	}
	decisions := []decision{
		{"queue", map[Stage]bool{NotQueued: true}, func(tk *Ticket) ([]events.Event, error) {
			return tk.Queue(QueueInput{RestaurantID: "downtown", Lines: lines("Small", 1)})
		}, "ticket_queued"},
		{"prepare", map[Stage]bool{Queued: true}, func(tk *Ticket) ([]events.Event, error) {
			return tk.StartPreparation("chef-2", t0, 4*time.Minute)
		}, "ticket_preparation_started"},
		{"bake", map[Stage]bool{Preparing: true}, func(tk *Ticket) ([]events.Event, error) { return tk.StartBaking(t0, 6*time.Minute) }, "ticket_baking_started"},
		{"check", map[Stage]bool{Baking: true}, func(tk *Ticket) ([]events.Event, error) { return tk.StartQualityCheck(t0, time.Minute) }, "ticket_quality_check_started"},
		{"pass", map[Stage]bool{QualityCheck: true}, func(tk *Ticket) ([]events.Event, error) { return tk.FinishQualityCheck(true) }, "ticket_ready"},
		{"fail", map[Stage]bool{QualityCheck: true}, func(tk *Ticket) ([]events.Event, error) { return tk.FinishQualityCheck(false) }, "ticket_quality_check_failed"},
		{"withdraw", map[Stage]bool{NotQueued: true, Queued: true, Preparing: true, Baking: true, QualityCheck: true}, func(tk *Ticket) ([]events.Event, error) {
			return tk.Withdraw("order cancelled")
		}, "ticket_withdrawn"},
	}
	for _, d := range decisions {
		for _, s := range stages {
			t.Run(d.name+"/"+string(s), func(t *testing.T) {
				tk := ticketIn(t, s)
				before := *tk
				evs, err := d.decide(tk)
				if fmt.Sprint(before) != fmt.Sprint(*tk) {
					t.Fatalf("decision changed the ticket")
				}
				if !d.allowed[s] {
					var se *StageError
					if err == nil || (!errors.As(err, &se) && !errors.Is(err, ErrTicketExists) && !errors.Is(err, ErrAlreadyReady) && !errors.Is(err, ErrAlreadyWithdrawn)) {
						t.Fatalf("got %v, %v; want a refusal", evs, err)
					}
					return
				}
				if err != nil || len(evs) != 1 || evs[0].EventType() != d.want {
					t.Fatalf("got %v, %v; want one %s", evs, err, d.want)
				}
			})
		}
	}
}

func TestTicketApply(t *testing.T) {
	tk := ticketIn(t, QualityCheck)
	evs, _ := tk.FinishQualityCheck(false)
	if f := evs[0].(events.TicketQualityCheckFailed); f.Attempt != 1 || f.RestaurantID != "downtown" {
		t.Fatalf("failed event %+v", f)
	}
	tk.Apply(evs[0], t0)
	if tk.Stage() != Queued || tk.Attempt() != 2 || !tk.Remake() || tk.ChefID() != "" {
		t.Fatalf("after a failed check: stage %s attempt %d remake %v chef %q", tk.Stage(), tk.Attempt(), tk.Remake(), tk.ChefID())
	}
	evs, _ = tk.StartPreparation("chef-3", t0, time.Minute)
	if p := evs[0].(events.TicketPreparationStarted); p.Attempt != 2 || !p.DueAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("remake preparation %+v", p)
	}
	tk.Apply(evs[0], t0)
	if !tk.Occupies("chef-3") || tk.Occupies("chef-1") {
		t.Fatal("the remake should occupy chef-3 only")
	}
	w, _ := tk.Withdraw("order cancelled")
	if e := w[0].(events.TicketWithdrawn); e.FromStage != "Preparing" {
		t.Fatalf("withdrawn %+v", e)
	}
	tomb, _ := NewTicket("o2").Withdraw("")
	if e := tomb[0].(events.TicketWithdrawn); e.FromStage != "None" || e.Reason == "" {
		t.Fatalf("withdrawal before queueing %+v", e)
	}
}

func TestQueueValidation(t *testing.T) {
	tests := []struct {
		name   string
		in     QueueInput
		fields []string
	}{
		{"ok", QueueInput{RestaurantID: "downtown", Lines: lines("Small", 2)}, nil},
		{"no restaurant", QueueInput{Lines: lines("Small", 1)}, []string{"restaurantId"}},
		{"no lines", QueueInput{RestaurantID: "downtown"}, []string{"lines"}},
		{"bad quantity and type", QueueInput{RestaurantID: "downtown", Lines: []events.OrderLine{{Size: "Small"}}}, []string{"lines[0].quantity", "lines[0].pizzaType"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTicket("o1").Queue(tt.in)
			var ve *ValidationError
			if tt.fields == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.As(err, &ve) || len(ve.Fields) != len(tt.fields) {
				t.Fatalf("got %v, want fields %v", err, tt.fields)
			}
			for i, f := range tt.fields {
				if ve.Fields[i].Field != f {
					t.Errorf("field %d = %s, want %s", i, ve.Fields[i].Field, f)
				}
			}
		})
	}
}

func TestChefBreak(t *testing.T) {
	tests := []struct {
		name    string
		onBreak bool
		set     bool
		want    string
		err     error
	}{
		{"working chef starts a break", false, true, "chef_break_started", nil},
		{"working chef ends a break", false, false, "", ErrNotOnBreak},
		{"chef on break ends it", true, false, "chef_break_ended", nil},
		{"chef on break starts another", true, true, "", ErrAlreadyOnBreak},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewChef("chef-1", "downtown")
			if tt.onBreak {
				c.Apply(events.ChefBreakStarted{RestaurantID: "downtown"}, t0)
			}
			evs, err := c.SetBreak(tt.set)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if tt.err == nil {
				if len(evs) != 1 || evs[0].EventType() != tt.want {
					t.Fatalf("events %v, want %s", evs, tt.want)
				}
				c.Apply(evs[0], t0)
				if c.OnBreak() != tt.set {
					t.Fatalf("on break = %v after %s", c.OnBreak(), tt.want)
				}
			}
		})
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		name       string
		lines      []events.OrderLine
		prep, bake time.Duration
	}{
		{"one small", lines("Small", 1), 4 * time.Minute, 6 * time.Minute},
		{"one medium", lines("Medium", 1), 5 * time.Minute, 7 * time.Minute},
		{"one large", lines("Large", 1), 6 * time.Minute, 8 * time.Minute},
		{"one extra large", lines("ExtraLarge", 1), 7 * time.Minute, 9 * time.Minute},
		{"two large", lines("Large", 2), 7 * time.Minute, 8 * time.Minute},
		{"largest line counts, every extra pizza adds a minute", lines("Small", 2, "ExtraLarge", 1, "Medium", 1), 10 * time.Minute, 9 * time.Minute},
		{"unknown size counts as the longest", lines("Huge", 1), 7 * time.Minute, 9 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PreparationTime(tt.lines); got != tt.prep {
				t.Errorf("preparation %v, want %v", got, tt.prep)
			}
			if got := BakingTime(tt.lines); got != tt.bake {
				t.Errorf("baking %v, want %v", got, tt.bake)
			}
		})
	}
	p := Policy{TimeScale: 60}
	if got := p.Scale(6 * time.Minute); got != 6*time.Second {
		t.Errorf("scaled %v", got)
	}
	if got := (Policy{}).Scale(time.Minute); got != time.Minute {
		t.Errorf("unscaled %v", got)
	}
}

func TestQualityCheckIsDeterministic(t *testing.T) {
	p := Policy{QCFailureRate: 0.05, Seed: 42}
	failures := 0
	const n = 20000
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("order-%d", i)
		a := p.Passes(id, 1)
		if a != p.Passes(id, 1) {
			t.Fatal("same input, different outcome")
		}
		if !a {
			failures++
		}
	}
	if rate := float64(failures) / n; rate < 0.04 || rate > 0.06 {
		t.Fatalf("failure rate %.4f, want about 0.05", rate)
	}
	if (Policy{QCFailureRate: 0}).Passes("o1", 1) != true {
		t.Fatal("rate 0 must always pass")
	}
	// Seed and attempt both matter.
	differ := 0
	for i := 0; i < 100; i++ {
		id := fmt.Sprintf("o-%d", i)
		if QualityScore(1, id, 1) != QualityScore(2, id, 1) && QualityScore(1, id, 1) != QualityScore(1, id, 2) {
			differ++
		}
	}
	if differ < 99 {
		t.Fatalf("seed or attempt barely change the score (%d/100)", differ)
	}
}

// board builds a board with chefs a, b, c (capacity 2, 2, 1).
func board() *Board {
	return NewBoard("downtown", []ChefSpec{{"a", 2}, {"b", 2}, {"c", 1}})
}

type fold struct {
	t   *testing.T
	b   *Board
	seq uint64
}

func (f *fold) apply(id string, e events.Event) uint64 {
	f.seq++
	f.b.Apply(id, e, f.seq, t0)
	return f.seq
}

func (f *fold) queue(id string, l ...events.OrderLine) {
	if len(l) == 0 {
		l = lines("Small", 1)
	}
	f.apply(id, events.TicketQueued{RestaurantID: "downtown", Lines: l})
}

// run records every decision the board makes at now, like the scheduler does.
func (f *fold) run(now time.Time, p Policy) []Decision {
	f.t.Helper()
	var out []Decision
	for i := 0; ; i++ {
		if i > 100 {
			f.t.Fatal("the board never stops deciding")
		}
		d, ok := f.b.Next(now, p)
		if !ok {
			return out
		}
		if d.ExpectedSeq == 0 {
			f.t.Fatalf("decision without expected sequence: %+v", d)
		}
		for _, e := range d.Events {
			f.apply(d.OrderID, e)
		}
		out = append(out, d)
	}
}

func assignments(ds []Decision) string {
	s := ""
	for _, d := range ds {
		if p, ok := d.Events[0].(events.TicketPreparationStarted); ok {
			s += d.OrderID + ">" + p.ChefID + " "
		}
	}
	return s
}

func TestBoardFIFOAndFairAssignment(t *testing.T) {
	f := &fold{t: t, b: board()}
	for i := 1; i <= 7; i++ {
		f.queue(fmt.Sprintf("o%d", i))
	}
	// Five slots: fewest tickets first, ties to the least recently assigned.
	got := assignments(f.run(t0, Policy{}))
	if want := "o1>a o2>b o3>c o4>a o5>b "; got != want {
		t.Fatalf("assignments %q, want %q", got, want)
	}
	if q := fmt.Sprint(f.b.Queue()); q != "[o6 o7]" {
		t.Fatalf("queue %s", q)
	}
	if f.b.Load("a") != 2 || f.b.Load("b") != 2 || f.b.Load("c") != 1 {
		t.Fatalf("loads a=%d b=%d c=%d", f.b.Load("a"), f.b.Load("b"), f.b.Load("c"))
	}
	// Withdrawing o2 frees b, who takes the head of the queue.
	f.apply("o2", events.TicketWithdrawn{RestaurantID: "downtown", Reason: "cancelled", FromStage: "Preparing"})
	if got := assignments(f.run(t0, Policy{})); got != "o6>b " {
		t.Fatalf("after withdrawal %q", got)
	}
	if _, ok := f.b.Ticket("o2"); ok {
		t.Fatal("a withdrawn ticket stays on the board")
	}
}

func TestBoardLeastRecentlyAssignedBreaksTies(t *testing.T) {
	f := &fold{t: t, b: NewBoard("downtown", []ChefSpec{{"a", 1}, {"b", 1}})}
	f.queue("o1")
	f.queue("o2")
	f.run(t0, Policy{}) // o1>a, o2>b
	// a finishes first, then b: both idle, a was assigned before b.
	p := Policy{}
	later := t0.Add(5 * time.Minute)
	ds := f.run(later, p) // both move to baking (and beyond)
	if len(ds) == 0 {
		t.Fatal("no stage moved")
	}
	f.queue("o3")
	if got := assignments(f.run(later, p)); got != "o3>a " {
		t.Fatalf("got %q, want a (least recently assigned)", got)
	}
	f.queue("o4")
	if got := assignments(f.run(later, p)); got != "o4>b " {
		t.Fatalf("got %q, want b", got)
	}
}

func TestBoardBreaks(t *testing.T) {
	f := &fold{t: t, b: board()}
	f.queue("o1")
	f.run(t0, Policy{}) // o1 > a
	f.apply("a", events.ChefBreakStarted{RestaurantID: "downtown"})
	if f.b.Load("a") != 1 {
		t.Fatal("a chef on break finishes the ticket in hand")
	}
	for i := 2; i <= 6; i++ {
		f.queue(fmt.Sprintf("o%d", i))
	}
	got := assignments(f.run(t0, Policy{}))
	if want := "o2>b o3>c o4>b "; got != want {
		t.Fatalf("with a on break: %q, want %q", got, want)
	}
	f.apply("a", events.ChefBreakEnded{RestaurantID: "downtown"})
	if got := assignments(f.run(t0, Policy{})); got != "o5>a " {
		t.Fatalf("after the break: %q", got)
	}
	// Unknown chefs and stale events change nothing.
	f.b.Apply("nobody", events.ChefBreakStarted{}, 1000, t0)
	f.b.Apply("a", events.ChefBreakStarted{}, 1, t0)
	if f.b.OnBreak("a") {
		t.Fatal("a stale break event was applied")
	}
}

func TestBoardStagesAndRemakesFirst(t *testing.T) {
	p := Policy{QCFailureRate: 0.5, Seed: 7}
	// Find an order that fails its first check and passes the second.
	remake := ""
	for i := 0; remake == ""; i++ {
		id := fmt.Sprintf("r%d", i)
		if !p.Passes(id, 1) && p.Passes(id, 2) {
			remake = id
		}
	}
	f := &fold{t: t, b: NewBoard("downtown", []ChefSpec{{"a", 1}})}
	f.queue(remake, lines("Large", 1)...)
	f.run(t0, p)                                  // remake > a
	f.queue("waiting", lines("ExtraLarge", 5)...) // 11 minutes of preparation
	tk, _ := f.b.Ticket(remake)
	if due, ok := f.b.NextDue(); !ok || !due.Equal(t0.Add(6*time.Minute)) || !tk.DueAt().Equal(due) {
		t.Fatalf("next due %v %v", due, ok)
	}
	var steps []string
	now := t0
	for i := 0; i < 3; i++ {
		due, _ := f.b.NextDue()
		now = due
		for _, d := range f.run(now, p) {
			steps = append(steps, d.OrderID+":"+d.Step)
		}
	}
	want := fmt.Sprintf("[%[1]s:baking waiting:preparation %[1]s:quality-check %[1]s:quality-check-failed]", remake)
	if fmt.Sprint(steps) != want {
		t.Fatalf("steps %v, want %s", steps, want)
	}
	// a is busy with "waiting"; the remake heads the queue anyway.
	f.queue("later")
	if q := fmt.Sprint(f.b.Queue()); q != fmt.Sprintf("[%s later]", remake) {
		t.Fatalf("queue %s", q)
	}
	due, _ := f.b.NextDue()
	ds := f.run(due, p) // waiting bakes; a takes the remake
	if got := assignments(ds); got != remake+">a " {
		t.Fatalf("after the failed check %q", got)
	}
	pr := ds[len(ds)-1]
	if pr.CommandID != CommandID(remake, StepPreparation, 2) || pr.Events[0].(events.TicketPreparationStarted).Attempt != 2 {
		t.Fatalf("remake decision %+v", pr)
	}
}

func TestBoardHoldAndIdempotentApply(t *testing.T) {
	f := &fold{t: t, b: board()}
	f.queue("o1")
	d, ok := f.b.Next(t0, Policy{})
	if !ok || d.OrderID != "o1" {
		t.Fatalf("decision %+v %v", d, ok)
	}
	f.b.Hold("o1")
	if _, ok := f.b.Next(t0, Policy{}); ok {
		t.Fatal("a held ticket was decided again")
	}
	seq := f.apply("o1", events.TicketWithdrawn{RestaurantID: "downtown", Reason: "cancelled", FromStage: "Queued"})
	if f.b.Active() != 0 {
		t.Fatal("withdrawn ticket still active")
	}
	// The stream delivering an already applied event (or a late echo) is a no-op.
	f.queue("o2")
	ds := f.run(t0, Policy{})
	f.b.Apply("o2", ds[0].Events[0], seq+2, t0)
	if f.b.Load("a") != 1 {
		t.Fatal("re-applying a preparation start changed the load")
	}
	f.b.Apply("o2", events.TicketQueued{RestaurantID: "downtown", Lines: lines("Small", 1)}, 999, t0)
	if tk, _ := f.b.Ticket("o2"); tk.Stage() != Preparing {
		t.Fatalf("a second ticket_queued reset the ticket to %s", tk.Stage())
	}
}
