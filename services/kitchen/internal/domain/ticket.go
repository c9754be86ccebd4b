// Package domain is the kitchen's pure model: the ticket aggregate (one
// order's way through the kitchen), the chef aggregate (breaks), stage
// timings, the quality check, and the per-restaurant board that decides
// what happens next (FIFO queue, fair chef assignment, stage deadlines).
// No I/O and no clock: time comes in as an argument.
package domain

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
)

// Stage is where a ticket is in the kitchen.
type Stage string

// The stages of a ticket, in the order of the happy path, and Withdrawn.
const (
	// NotQueued is the stage of a ticket the kitchen has not seen yet; it
	// is also recorded as the FromStage of a withdrawal that arrived before
	// the ticket (see Ticket.Withdraw).
	NotQueued    Stage = "None"
	Queued       Stage = "Queued"
	Preparing    Stage = "Preparing"
	Baking       Stage = "Baking"
	QualityCheck Stage = "QualityCheck"
	Ready        Stage = "Ready"
	Withdrawn    Stage = "Withdrawn"
)

// Done reports whether nothing more happens to a ticket in stage s.
func (s Stage) Done() bool { return s == Ready || s == Withdrawn }

// Timed reports whether stage s ends at a deadline (DueAt).
func (s Stage) Timed() bool { return s == Preparing || s == Baking || s == QualityCheck }

// Sentinel domain errors.
var (
	ErrTicketExists     = errors.New("the order already has a ticket")
	ErrAlreadyReady     = errors.New("the order is already ready")
	ErrAlreadyWithdrawn = errors.New("the ticket is already withdrawn")
)

// StageError reports a decision the ticket's stage does not allow.
type StageError struct {
	Stage Stage  // current stage
	Want  Stage  // stage the decision needs
	Op    string // the decision
}

func (e *StageError) Error() string {
	return fmt.Sprintf("%s needs a ticket in stage %s; it is in %s", e.Op, e.Want, e.Stage)
}

// FieldError names an invalid input field.
type FieldError struct {
	Field  string
	Detail string
}

// ValidationError lists invalid input fields.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Detail
	}
	return "invalid ticket: " + strings.Join(parts, "; ")
}

// Ticket is the kitchen's aggregate for one order, rebuilt from its events.
type Ticket struct {
	orderID      string
	stage        Stage
	restaurantID string
	lines        []events.OrderLine
	location     events.GeoPoint
	attempt      int
	remake       bool
	chefID       string
	queuedAt     time.Time
	stageAt      time.Time
	dueAt        time.Time
}

// NewTicket returns the empty ticket of an order (not queued yet).
func NewTicket(orderID string) *Ticket { return &Ticket{orderID: orderID, stage: NotQueued} }

func (t *Ticket) OrderID() string             { return t.orderID }
func (t *Ticket) Stage() Stage                { return t.stage }
func (t *Ticket) Exists() bool                { return t.stage != NotQueued }
func (t *Ticket) RestaurantID() string        { return t.restaurantID }
func (t *Ticket) Lines() []events.OrderLine   { return t.lines }
func (t *Ticket) Location() events.GeoPoint   { return t.location }
func (t *Ticket) Attempt() int                { return t.attempt }
func (t *Ticket) Remake() bool                { return t.remake }
func (t *Ticket) ChefID() string              { return t.chefID }
func (t *Ticket) QueuedAt() time.Time         { return t.queuedAt }
func (t *Ticket) StageStartedAt() time.Time   { return t.stageAt }
func (t *Ticket) DueAt() time.Time            { return t.dueAt }
func (t *Ticket) Occupies(chefID string) bool { return t.stage == Preparing && t.chefID == chefID }
func (t *Ticket) Due(now time.Time) bool      { return t.stage.Timed() && !now.Before(t.dueAt) }
func (t *Ticket) String() string              { return t.orderID + "@" + string(t.stage) }
func (t *Ticket) clone() *Ticket              { c := *t; return &c }
func (t *Ticket) stageErr(op string, want Stage) error {
	return &StageError{Stage: t.stage, Want: want, Op: op}
}

// QueueInput is what opening a ticket needs.
type QueueInput struct {
	RestaurantID     string
	Lines            []events.OrderLine
	DeliveryLocation events.GeoPoint
}

// Queue opens the ticket: the order's stock is reserved and it waits for a chef.
func (t *Ticket) Queue(in QueueInput) ([]events.Event, error) {
	if t.Exists() {
		return nil, ErrTicketExists
	}
	var errs []FieldError
	if err := events.ValidateID(in.RestaurantID); err != nil {
		errs = append(errs, FieldError{"restaurantId", err.Error()})
	}
	if len(in.Lines) == 0 {
		errs = append(errs, FieldError{"lines", "an order needs at least one line"})
	}
	for i, l := range in.Lines {
		if l.Quantity < 1 {
			errs = append(errs, FieldError{fmt.Sprintf("lines[%d].quantity", i), "must be at least 1"})
		}
		if l.PizzaType == "" {
			errs = append(errs, FieldError{fmt.Sprintf("lines[%d].pizzaType", i), "is required"})
		}
	}
	if len(errs) > 0 {
		return nil, &ValidationError{Fields: errs}
	}
	return []events.Event{events.TicketQueued{RestaurantID: in.RestaurantID, Lines: in.Lines, DeliveryLocation: in.DeliveryLocation}}, nil
}

// StartPreparation gives the queued ticket to a chef until now+d.
func (t *Ticket) StartPreparation(chefID string, now time.Time, d time.Duration) ([]events.Event, error) {
	if t.stage != Queued {
		return nil, t.stageErr("start preparation", Queued)
	}
	return []events.Event{events.TicketPreparationStarted{RestaurantID: t.restaurantID, ChefID: chefID, Attempt: t.attempt, DueAt: now.Add(d).UTC()}}, nil
}

// StartBaking puts the prepared ticket in the oven until now+d.
func (t *Ticket) StartBaking(now time.Time, d time.Duration) ([]events.Event, error) {
	if t.stage != Preparing {
		return nil, t.stageErr("start baking", Preparing)
	}
	return []events.Event{events.TicketBakingStarted{RestaurantID: t.restaurantID, DueAt: now.Add(d).UTC()}}, nil
}

// StartQualityCheck checks the baked ticket until now+d.
func (t *Ticket) StartQualityCheck(now time.Time, d time.Duration) ([]events.Event, error) {
	if t.stage != Baking {
		return nil, t.stageErr("start quality check", Baking)
	}
	return []events.Event{events.TicketQualityCheckStarted{RestaurantID: t.restaurantID, DueAt: now.Add(d).UTC()}}, nil
}

// FinishQualityCheck records the check's outcome: the order is ready, or it
// goes back to the front of the queue for a remake (the next attempt).
func (t *Ticket) FinishQualityCheck(passed bool) ([]events.Event, error) {
	if t.stage != QualityCheck {
		return nil, t.stageErr("finish quality check", QualityCheck)
	}
	if passed {
		return []events.Event{events.TicketReady{RestaurantID: t.restaurantID, DeliveryLocation: t.location}}, nil
	}
	return []events.Event{events.TicketQualityCheckFailed{RestaurantID: t.restaurantID, Reason: "did not pass the quality check; remaking", Attempt: t.attempt}}, nil
}

// Withdraw takes the ticket out of the kitchen because its order was
// cancelled or failed; a chef preparing it is free again. Withdrawing an
// order the kitchen has not queued yet records that fact (FromStage
// "None"), so a reservation that arrives later does not open a ticket.
func (t *Ticket) Withdraw(reason string) ([]events.Event, error) {
	switch t.stage {
	case Ready:
		return nil, ErrAlreadyReady
	case Withdrawn:
		return nil, ErrAlreadyWithdrawn
	}
	if reason == "" {
		reason = "withdrawn"
	}
	return []events.Event{events.TicketWithdrawn{RestaurantID: t.restaurantID, Reason: reason, FromStage: string(t.stage)}}, nil
}

// Apply changes the ticket by one event. It never fails: events are facts.
// Events of other types leave the ticket unchanged.
func (t *Ticket) Apply(e events.Event, at time.Time) {
	switch e := e.(type) {
	case events.TicketQueued:
		t.stage = Queued
		t.restaurantID = e.RestaurantID
		t.lines = e.Lines
		t.location = e.DeliveryLocation
		t.attempt = 1
		t.queuedAt = at
		t.stageAt = at
		t.dueAt = time.Time{}
	case events.TicketPreparationStarted:
		t.stage = Preparing
		t.chefID = e.ChefID
		if e.Attempt > 0 {
			t.attempt = e.Attempt
		}
		t.stageAt, t.dueAt = at, e.DueAt
	case events.TicketBakingStarted:
		t.stage = Baking
		t.stageAt, t.dueAt = at, e.DueAt
	case events.TicketQualityCheckStarted:
		t.stage = QualityCheck
		t.stageAt, t.dueAt = at, e.DueAt
	case events.TicketQualityCheckFailed:
		t.stage = Queued
		t.attempt = max(t.attempt, e.Attempt) + 1
		t.remake = true
		t.chefID = ""
		t.stageAt, t.dueAt = at, time.Time{}
	case events.TicketReady:
		t.stage = Ready
		t.stageAt, t.dueAt = at, time.Time{}
	case events.TicketWithdrawn:
		t.stage = Withdrawn
		if t.restaurantID == "" {
			t.restaurantID = e.RestaurantID
		}
		t.stageAt, t.dueAt = at, time.Time{}
	}
}
