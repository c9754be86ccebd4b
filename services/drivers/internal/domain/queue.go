package domain

import (
	"slices"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
)

// Reasons a delivery request leaves the dispatch queue.
const (
	ClosedAssigned  = "assigned"
	ClosedCancelled = "cancelled"
	ClosedFailed    = "failed"
)

// Request is an order waiting in a dispatch queue.
type Request struct {
	OrderID     string
	Pickup      events.GeoPoint
	Dropoff     events.GeoPoint
	RequestedAt time.Time
}

// RequestState is what the queue knows about an order it has seen.
type RequestState struct {
	Request
	Waiting  bool
	Reason   string // why it left the queue, once it has
	DriverID string // who got it, when Reason is "assigned"
}

// Queue is a restaurant's dispatch queue: orders ready and waiting for a
// driver, first come first served. It remembers every order it has seen,
// so a redelivered "ready" never queues an order twice.
type Queue struct {
	restaurantID string
	waiting      []Request
	known        map[string]RequestState
	updatedAt    time.Time
}

// NewQueue returns the empty queue of a restaurant.
func NewQueue(restaurantID string) *Queue {
	return &Queue{restaurantID: restaurantID, known: map[string]RequestState{}}
}

func (q *Queue) RestaurantID() string   { return q.restaurantID }
func (q *Queue) LastUpdated() time.Time { return q.updatedAt }

// Waiting returns the waiting orders, oldest first.
func (q *Queue) Waiting() []Request { return slices.Clone(q.waiting) }

// Oldest returns the order that has waited longest.
func (q *Queue) Oldest() (Request, bool) {
	if len(q.waiting) == 0 {
		return Request{}, false
	}
	return q.waiting[0], true
}

// State returns what the queue knows about an order.
func (q *Queue) State(orderID string) (RequestState, bool) {
	s, ok := q.known[orderID]
	return s, ok
}

// Request puts a ready order in the queue. An order the queue has already
// seen (waiting, assigned or closed) records nothing: the request is a
// retry or a redelivery.
func (q *Queue) Request(orderID string, pickup, dropoff events.GeoPoint) []events.Event {
	if _, seen := q.known[orderID]; seen {
		return nil
	}
	return []events.Event{events.DeliveryRequested{OrderID: orderID, RestaurantID: q.restaurantID, Pickup: pickup, Dropoff: dropoff}}
}

// Close takes a waiting order out of the queue for a reason other than an
// assignment (see Assign for that).
func (q *Queue) Close(orderID, reason string) ([]events.Event, error) {
	if s, ok := q.known[orderID]; !ok || !s.Waiting {
		return nil, ErrNotWaiting
	}
	return []events.Event{events.DeliveryRequestClosed{OrderID: orderID, Reason: reason}}, nil
}

// Apply folds one of the queue's events into its state.
func (q *Queue) Apply(ev events.Event, at time.Time) {
	switch e := ev.(type) {
	case events.DeliveryRequested:
		r := Request{OrderID: e.OrderID, Pickup: e.Pickup, Dropoff: e.Dropoff, RequestedAt: at}
		q.waiting = append(q.waiting, r)
		q.known[e.OrderID] = RequestState{Request: r, Waiting: true}
	case events.DeliveryRequestClosed:
		q.waiting = slices.DeleteFunc(q.waiting, func(r Request) bool { return r.OrderID == e.OrderID })
		s := q.known[e.OrderID]
		s.OrderID, s.Waiting, s.Reason, s.DriverID = e.OrderID, false, e.Reason, e.DriverID
		q.known[e.OrderID] = s
	default:
		return
	}
	q.updatedAt = at
}

// Assign gives a waiting order to an Available driver of the same
// restaurant. The events go to both aggregates and must be appended in
// one atomic batch, each checked against the state it was decided on: no
// driver can get two orders and no order two drivers.
func Assign(d *Driver, q *Queue, orderID string, manual bool, by string) (driverEvents, queueEvents []events.Event, err error) {
	if !d.Registered() {
		return nil, nil, ErrNotRegistered
	}
	if d.restaurantID != q.restaurantID {
		return nil, nil, ErrOtherRestaurant
	}
	s, ok := q.known[orderID]
	if !ok || !s.Waiting {
		return nil, nil, ErrNotWaiting
	}
	if !d.Available() {
		return nil, nil, ErrNotAvailable
	}
	assigned := events.DriverAssigned{OrderID: orderID, RestaurantID: q.restaurantID, Pickup: s.Pickup, Dropoff: s.Dropoff, Manual: manual}
	if manual {
		assigned.AssignedBy = by
	}
	return []events.Event{assigned},
		[]events.Event{events.DeliveryRequestClosed{OrderID: orderID, Reason: ClosedAssigned, DriverID: d.id}},
		nil
}
