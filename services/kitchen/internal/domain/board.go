package domain

import (
	"fmt"
	"slices"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
)

// ChefSpec is a chef as the catalogue lists it.
type ChefSpec struct {
	ID string
	// Capacity is how many tickets the chef prepares at once; less than 1
	// counts as 1.
	Capacity int
}

// Board is one restaurant's kitchen as its scheduler sees it: the tickets
// still in progress and the chefs with their breaks. It is folded from the
// KITCHEN log and decides, one step at a time, what happens next.
//
// A chef is busy only while a ticket is Preparing; the oven and the quality
// check hold any number of tickets.
type Board struct {
	restaurantID string
	chefs        []*chefState // catalogue order
	chefByID     map[string]*chefState
	tickets      map[string]*entry
	// The tickets by what the scheduler asks of them: those waiting for a
	// chef, and those in a timed stage (the chefs' load is counted among
	// these). A decision reads these, not every ticket, so a long queue
	// costs nothing while every chef is busy.
	queued map[string]*entry
	timed  map[string]*entry
}

type chefState struct {
	spec    ChefSpec
	onBreak bool
	version uint64
	// lastAssigned is the stream sequence of the chef's latest preparation
	// start, 0 if none: the fairness tie-break.
	lastAssigned uint64
}

type entry struct {
	ticket   *Ticket
	version  uint64 // stream sequence of the ticket's last applied event
	queueSeq uint64 // stream sequence of ticket_queued: the FIFO order
	held     bool
}

// NewBoard returns the empty board of a restaurant with its chefs.
func NewBoard(restaurantID string, chefs []ChefSpec) *Board {
	b := &Board{restaurantID: restaurantID, chefByID: map[string]*chefState{}, tickets: map[string]*entry{},
		queued: map[string]*entry{}, timed: map[string]*entry{}}
	for _, c := range chefs {
		if _, dup := b.chefByID[c.ID]; dup {
			continue
		}
		c.Capacity = max(c.Capacity, 1)
		cs := &chefState{spec: c}
		b.chefs = append(b.chefs, cs)
		b.chefByID[c.ID] = cs
	}
	return b
}

// RestaurantID returns the board's restaurant.
func (b *Board) RestaurantID() string { return b.restaurantID }

// Apply folds one event of aggregate id (an order's ticket or a chef)
// stored at stream sequence seq. An event at or below what the board
// already holds for that aggregate is ignored, so the scheduler can apply
// its own appends at once and skip them when the stream delivers them.
// Events of tickets the board does not hold (finished, or never queued
// here) are ignored too.
func (b *Board) Apply(id string, e events.Event, seq uint64, at time.Time) {
	switch e.(type) {
	case events.ChefBreakStarted, events.ChefBreakEnded:
		c, ok := b.chefByID[id]
		if !ok || seq <= c.version {
			return
		}
		_, c.onBreak = e.(events.ChefBreakStarted)
		c.version = seq
		return
	case events.TicketQueued:
		if _, ok := b.tickets[id]; ok {
			return
		}
		t := NewTicket(id)
		t.Apply(e, at)
		en := &entry{ticket: t, version: seq, queueSeq: seq}
		b.tickets[id] = en
		b.index(id, en)
		return
	}
	en, ok := b.tickets[id]
	if !ok || seq <= en.version {
		return
	}
	en.ticket.Apply(e, at)
	en.version = seq
	en.held = false
	if p, ok := e.(events.TicketPreparationStarted); ok {
		if c, ok := b.chefByID[p.ChefID]; ok {
			c.lastAssigned = max(c.lastAssigned, seq)
		}
	}
	if en.ticket.Stage().Done() {
		delete(b.tickets, id)
	}
	b.index(id, en)
}

// index files a ticket under its stage (and nowhere once it is done).
func (b *Board) index(id string, en *entry) {
	delete(b.queued, id)
	delete(b.timed, id)
	switch st := en.ticket.Stage(); {
	case st.Done():
	case st == Queued:
		b.queued[id] = en
	case st.Timed():
		b.timed[id] = en
	}
}

// Hold parks a ticket until its next event arrives: a decision about it
// lost a race (another writer appended first) and must be made again on
// the newer state.
func (b *Board) Hold(orderID string) {
	if en, ok := b.tickets[orderID]; ok {
		en.held = true
	}
}

// Decision is one step the board wants recorded: events for one ticket,
// appended on the ticket's version with a command id derived from the
// ticket, the step and the attempt (so a retry or a second scheduler after
// a restart stores it at most once).
type Decision struct {
	OrderID     string
	ExpectedSeq uint64
	CommandID   string
	Step        string
	Events      []events.Event
}

// Steps of a ticket, as they appear in command ids.
const (
	StepPreparation = "preparation"
	StepBaking      = "baking"
	StepQuality     = "quality-check"
	StepReady       = "ready"
	StepRemake      = "quality-check-failed"
)

// CommandID names the step of a ticket's attempt.
func CommandID(orderID, step string, attempt int) string {
	return fmt.Sprintf("kitchen:%s:%s:%d", orderID, step, attempt)
}

// Next returns the next step to record at time now, if any: first a stage
// whose deadline has passed (earliest first), then the head of the queue
// for the fairest free chef. Call it again after applying the outcome.
func (b *Board) Next(now time.Time, p Policy) (Decision, bool) {
	if en := b.earliest(func(en *entry) bool { return en.ticket.Due(now) }); en != nil {
		return b.advance(en, now, p)
	}
	chef := b.pickChef()
	if chef == nil {
		return Decision{}, false
	}
	en := b.head()
	if en == nil {
		return Decision{}, false
	}
	t := en.ticket
	evs, err := t.StartPreparation(chef.spec.ID, now, p.Scale(PreparationTime(t.Lines())))
	if err != nil {
		return Decision{}, false // unreachable: the queue holds only Queued tickets
	}
	return Decision{OrderID: t.OrderID(), ExpectedSeq: en.version, CommandID: CommandID(t.OrderID(), StepPreparation, t.Attempt()), Step: StepPreparation, Events: evs}, true
}

func (b *Board) advance(en *entry, now time.Time, p Policy) (Decision, bool) {
	t := en.ticket
	var (
		evs  []events.Event
		err  error
		step string
	)
	switch t.Stage() {
	case Preparing:
		step = StepBaking
		evs, err = t.StartBaking(now, p.Scale(BakingTime(t.Lines())))
	case Baking:
		step = StepQuality
		evs, err = t.StartQualityCheck(now, p.Scale(QualityCheckTime))
	case QualityCheck:
		passed := p.Passes(t.OrderID(), t.Attempt())
		step = StepReady
		if !passed {
			step = StepRemake
		}
		evs, err = t.FinishQualityCheck(passed)
	}
	if err != nil || evs == nil {
		return Decision{}, false
	}
	return Decision{OrderID: t.OrderID(), ExpectedSeq: en.version, CommandID: CommandID(t.OrderID(), step, t.Attempt()), Step: step, Events: evs}, true
}

// earliest returns the timed, unheld ticket with the earliest deadline
// among those matching ok.
func (b *Board) earliest(ok func(*entry) bool) *entry {
	var best *entry
	for _, en := range b.timed {
		if en.held || !ok(en) {
			continue
		}
		if best == nil || en.ticket.DueAt().Before(best.ticket.DueAt()) ||
			(en.ticket.DueAt().Equal(best.ticket.DueAt()) && en.queueSeq < best.queueSeq) {
			best = en
		}
	}
	return best
}

// NextDue returns the earliest deadline of the tickets in a timed stage.
func (b *Board) NextDue() (time.Time, bool) {
	en := b.earliest(func(*entry) bool { return true })
	if en == nil {
		return time.Time{}, false
	}
	return en.ticket.DueAt(), true
}

// queue returns the waiting, unheld tickets in the order they get a chef:
// remakes first, then by queue time (stream order).
func (b *Board) queue() []*entry {
	var q []*entry
	for _, en := range b.queued {
		if !en.held {
			q = append(q, en)
		}
	}
	slices.SortFunc(q, func(x, y *entry) int {
		switch {
		case queuedBefore(x, y):
			return -1
		case queuedBefore(y, x):
			return 1
		}
		return 0
	})
	return q
}

// head returns the first of queue() without sorting the queue.
func (b *Board) head() *entry {
	var best *entry
	for _, en := range b.queued {
		if !en.held && (best == nil || queuedBefore(en, best)) {
			best = en
		}
	}
	return best
}

// queuedBefore says whether x gets a chef before y: remakes first, then
// by queue time (stream order).
func queuedBefore(x, y *entry) bool {
	if x.ticket.Remake() != y.ticket.Remake() {
		return x.ticket.Remake()
	}
	return x.queueSeq < y.queueSeq
}

// Queue returns the order ids waiting for a chef, in the order they get one.
func (b *Board) Queue() []string {
	q := b.queue()
	ids := make([]string, len(q))
	for i, en := range q {
		ids[i] = en.ticket.OrderID()
	}
	return ids
}

// pickChef returns the chef who gets the next ticket: among chefs not on
// break with free capacity, the one preparing the fewest tickets, ties
// broken by the least recent assignment, then by catalogue order.
func (b *Board) pickChef() *chefState {
	var best *chefState
	bestLoad := 0
	for _, c := range b.chefs {
		load := b.Load(c.spec.ID)
		if c.onBreak || load >= c.spec.Capacity {
			continue
		}
		if best == nil || load < bestLoad || (load == bestLoad && c.lastAssigned < best.lastAssigned) {
			best, bestLoad = c, load
		}
	}
	return best
}

// Load returns how many tickets a chef is preparing.
func (b *Board) Load(chefID string) int {
	n := 0
	for _, en := range b.timed {
		if en.ticket.Occupies(chefID) {
			n++
		}
	}
	return n
}

// OnBreak reports whether a chef of the board is on break.
func (b *Board) OnBreak(chefID string) bool {
	c, ok := b.chefByID[chefID]
	return ok && c.onBreak
}

// Ticket returns a copy of a ticket still in progress.
func (b *Board) Ticket(orderID string) (*Ticket, bool) {
	en, ok := b.tickets[orderID]
	if !ok {
		return nil, false
	}
	return en.ticket.clone(), true
}

// Active returns the number of tickets in progress.
func (b *Board) Active() int { return len(b.tickets) }
