// Package domain is the order aggregate: pure decisions (validate, then
// return the events that record the decision) and pure application of
// events to state. No I/O, no clock: time comes in as an argument.
package domain

import (
	"errors"
	"fmt"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
)

// Status is a state of the order process.
type Status string

// The states of an order, in the order of the happy path.
const (
	Created        Status = "Created"
	Validated      Status = "Validated"
	Queued         Status = "Queued"
	Preparing      Status = "Preparing"
	Baking         Status = "Baking"
	QualityCheck   Status = "QualityCheck"
	ReadyForPickup Status = "ReadyForPickup"
	DriverAssigned Status = "DriverAssigned"
	PickedUp       Status = "PickedUp"
	OutForDelivery Status = "OutForDelivery"
	Delivered      Status = "Delivered"
	Cancelled      Status = "Cancelled"
	Failed         Status = "Failed"
)

// AllStatuses lists every state.
var AllStatuses = []Status{Created, Validated, Queued, Preparing, Baking, QualityCheck, ReadyForPickup,
	DriverAssigned, PickedUp, OutForDelivery, Delivered, Cancelled, Failed}

// transitions is the state machine. Cancellation is allowed up to
// ReadyForPickup; failure at any point before delivery; a failed quality
// check sends the pizza back to Preparing (a remake).
var transitions = map[Status][]Status{
	Created:        {Validated, Cancelled, Failed},
	Validated:      {Queued, Cancelled, Failed},
	Queued:         {Preparing, Cancelled, Failed},
	Preparing:      {Baking, Cancelled, Failed},
	Baking:         {QualityCheck, Cancelled, Failed},
	QualityCheck:   {ReadyForPickup, Preparing, Cancelled, Failed},
	ReadyForPickup: {DriverAssigned, Cancelled, Failed},
	DriverAssigned: {PickedUp, Failed},
	PickedUp:       {OutForDelivery, Failed},
	OutForDelivery: {Delivered, Failed},
}

// CanTransition reports whether the state machine allows from → to.
func CanTransition(from, to Status) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// ParseStatus returns the status named s.
func ParseStatus(s string) (Status, bool) {
	for _, st := range AllStatuses {
		if string(st) == s {
			return st, true
		}
	}
	return "", false
}

// Terminal reports whether no transition leaves s.
func (s Status) Terminal() bool { return len(transitions[s]) == 0 }

// TransitionError reports a transition the state machine forbids.
type TransitionError struct {
	From, To Status
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("an order in status %s cannot move to %s", e.From, e.To)
}

// Sentinel domain errors.
var (
	ErrNotPlaced      = errors.New("order has not been placed")
	ErrAlreadyPlaced  = errors.New("order already exists")
	ErrDriverRequired = errors.New("a driver id is required")
	ErrWrongDriver    = errors.New("the order is assigned to another driver")
	ErrReasonRequired = errors.New("a reason is required")
)

// Order is the aggregate state, rebuilt by applying its events.
type Order struct {
	id           string
	status       Status
	restaurantID string
	customerID   string
	totalCents   int64
	requestHash  string
	chefID       string
	driverID     string
	placedAt     time.Time
	updatedAt    time.Time
}

// New returns the empty aggregate for id (before placement).
func New(id string) *Order { return &Order{id: id} }

func (o *Order) ID() string             { return o.id }
func (o *Order) Status() Status         { return o.status }
func (o *Order) RestaurantID() string   { return o.restaurantID }
func (o *Order) CustomerID() string     { return o.customerID }
func (o *Order) RequestHash() string    { return o.requestHash }
func (o *Order) DriverID() string       { return o.driverID }
func (o *Order) ChefID() string         { return o.chefID }
func (o *Order) Placed() bool           { return o.status != "" }
func (o *Order) LastUpdated() time.Time { return o.updatedAt }

// TransitionDetails carries what some transitions need.
type TransitionDetails struct {
	Reason   string
	By       string
	ChefID   string
	DriverID string
	TicketID string
}

// Transition decides a move to status `to` and returns the event that
// records it. It never changes the order: apply the events for that.
func (o *Order) Transition(to Status, d TransitionDetails) ([]events.Event, error) {
	if !o.Placed() {
		return nil, ErrNotPlaced
	}
	if !CanTransition(o.status, to) {
		return nil, &TransitionError{From: o.status, To: to}
	}
	var e events.Event
	switch to {
	case Validated:
		e = events.OrderValidated{}
	case Queued:
		e = events.OrderQueued{TicketID: d.TicketID}
	case Preparing:
		e = events.OrderPreparationStarted{ChefID: d.ChefID, Remake: o.status == QualityCheck}
	case Baking:
		e = events.OrderBakingStarted{}
	case QualityCheck:
		e = events.OrderQualityCheckStarted{}
	case ReadyForPickup:
		e = events.OrderReadyForPickup{}
	case DriverAssigned:
		if d.DriverID == "" {
			return nil, ErrDriverRequired
		}
		e = events.OrderDriverAssigned{DriverID: d.DriverID}
	case PickedUp, OutForDelivery, Delivered:
		driver := d.DriverID
		if driver == "" {
			driver = o.driverID
		}
		if driver != o.driverID {
			return nil, ErrWrongDriver
		}
		switch to {
		case PickedUp:
			e = events.OrderPickedUp{DriverID: driver}
		case OutForDelivery:
			e = events.OrderOutForDelivery{DriverID: driver}
		default:
			e = events.OrderDelivered{DriverID: driver}
		}
	case Cancelled:
		reason := d.Reason
		if reason == "" {
			reason = "cancelled"
		}
		e = events.OrderCancelled{Reason: reason, CancelledBy: d.By, FromStatus: string(o.status)}
	case Failed:
		if d.Reason == "" {
			return nil, ErrReasonRequired
		}
		e = events.OrderFailed{Reason: d.Reason, FromStatus: string(o.status)}
	default:
		return nil, &TransitionError{From: o.status, To: to}
	}
	return []events.Event{e}, nil
}

// Apply changes the state by one event. It never fails: events are facts.
// Events of types it does not know leave the state unchanged.
func (o *Order) Apply(e events.Event, at time.Time) {
	o.updatedAt = at
	switch e := e.(type) {
	case events.OrderPlaced:
		o.status = Status(e.Status())
		o.restaurantID = e.RestaurantID
		o.customerID = e.CustomerID
		o.totalCents = e.TotalCents
		o.requestHash = e.RequestHash
		o.placedAt = at
	case events.OrderValidated:
		o.status = Validated
	case events.OrderQueued:
		o.status = Queued
	case events.OrderPreparationStarted:
		o.status = Preparing
		if e.ChefID != "" {
			o.chefID = e.ChefID
		}
	case events.OrderBakingStarted:
		o.status = Baking
	case events.OrderQualityCheckStarted:
		o.status = QualityCheck
	case events.OrderReadyForPickup:
		o.status = ReadyForPickup
	case events.OrderDriverAssigned:
		o.status = DriverAssigned
		o.driverID = e.DriverID
	case events.OrderPickedUp:
		o.status = PickedUp
	case events.OrderOutForDelivery:
		o.status = OutForDelivery
	case events.OrderDelivered:
		o.status = Delivered
	case events.OrderCancelled:
		o.status = Cancelled
	case events.OrderFailed:
		o.status = Failed
	}
}
