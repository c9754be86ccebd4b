package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/orders/internal/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// Saga drives each order through its states in response to the other
// contexts' events: stock reservations (INVENTORY), tickets (KITCHEN) and
// deliveries (DRIVERS). Every reaction is a command on the order whose id
// is derived from the triggering event, so a redelivery changes nothing.
//
// Events of different streams arrive through different consumers and may
// overtake each other (a driver assignment before the kitchen's "ready"
// has been applied). A reaction whose prerequisite state is not reached
// yet is retried after a backoff; one that the order has moved past
// (already applied, or the order ended) is acknowledged and dropped.
type Saga struct {
	cmds *Commands
	js   jetstream.JetStream
	reg  *events.Registry
	log  *slog.Logger

	consumers eventstore.Consumers
}

// Durable consumer names of the saga: contracts (see docs/events.md).
const (
	DurableSagaInventory = "orders-saga-inventory"
	DurableSagaKitchen   = "orders-saga-kitchen"
	DurableSagaDrivers   = "orders-saga-drivers"
)

// NewSaga wires the saga.
func NewSaga(cmds *Commands, js jetstream.JetStream, reg *events.Registry, log *slog.Logger) *Saga {
	return &Saga{cmds: cmds, js: js, reg: reg, log: log.With("component", "saga")}
}

// Start creates the durable consumers (shared or partitioned, as sc says)
// and begins reacting.
func (s *Saga) Start(ctx context.Context, sc eventstore.Scale, onDeadLetter func(eventstore.DeadLetter)) error {
	specs := []struct {
		stream, durable string
	}{
		{events.Inventory.Stream, DurableSagaInventory},
		{events.Kitchen.Stream, DurableSagaKitchen},
		{events.Drivers.Stream, DurableSagaDrivers},
	}
	for _, sp := range specs {
		err := s.consumers.Start(ctx, s.js, s.reg, sc, eventstore.ConsumerSpec{
			Stream:     sp.stream,
			Durable:    sp.durable,
			MaxDeliver: 30,
			BackOff:    []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, time.Second, 2 * time.Second},
		}, s.handle, eventstore.ConsumerOptions{Logger: s.log, OnDeadLetter: onDeadLetter})
		if err != nil {
			s.Stop()
			return fmt.Errorf("saga: %w", err)
		}
	}
	return nil
}

// Stop stops reacting; a reaction in progress completes.
func (s *Saga) Stop() { s.consumers.Stop() }

// Partitions returns the partitions this instance owns per saga durable
// (nil unless partitioned).
func (s *Saga) Partitions() map[string][]int { return s.consumers.Partitions() }

// errNotYet asks for a redelivery: the order has not reached the state the
// event follows.
var errNotYet = errors.New("order not ready for this step yet")

// step is what an event asks of an order.
type step struct {
	orderID string
	to      []domain.Status // one or more consecutive transitions
	details domain.TransitionDetails
	eta     *time.Time
}

func (s *Saga) handle(ctx context.Context, rec eventstore.Record) error {
	st, ok := s.stepFor(rec)
	if !ok {
		return nil
	}
	if events.ValidateID(st.orderID) != nil {
		s.log.Warn("event names an invalid order id; ignored", "stream", rec.Stream, "seq", rec.Seq, "order_id", st.orderID)
		return nil
	}
	commandID := "saga:" + rec.Stream + ":" + strconv.FormatUint(rec.Seq, 10)
	meta := events.Meta{CorrelationID: orEmpty(rec.Envelope.CorrelationID, st.orderID), CausationID: rec.Envelope.ID, TraceParent: rec.Envelope.TraceParent}
	_, err := s.cmds.execute(ctx, st.orderID, commandID, meta, func(o *domain.Order) ([]events.Event, error) {
		return decideSteps(o, st)
	})
	var te *domain.TransitionError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNotYet):
		return err
	case errors.As(err, &te), errors.Is(err, ErrNotFound), errors.Is(err, domain.ErrWrongDriver):
		s.log.Debug("event no longer applies to the order", "order_id", st.orderID, "event", rec.Envelope.Type, "err", err)
		return nil
	default:
		return err
	}
}

// decideSteps applies the requested transitions in order on a copy of the
// order. It tells an early event (retry) from a stale one (drop).
func decideSteps(o *domain.Order, st step) ([]events.Event, error) {
	first := st.to[0]
	if !domain.CanTransition(o.Status(), first) {
		if !o.Status().Terminal() && rank(o.Status()) < rank(first)-1 {
			return nil, fmt.Errorf("%w: %s before %s", errNotYet, o.Status(), first)
		}
		return nil, &domain.TransitionError{From: o.Status(), To: first}
	}
	var out []events.Event
	cur := *o
	for _, to := range st.to {
		evs, err := cur.Transition(to, st.details)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if ofd, ok := e.(events.OrderOutForDelivery); ok && st.eta != nil {
				ofd.EstimatedDeliveryAt = st.eta
				e = ofd
			}
			cur.Apply(e, time.Time{})
			out = append(out, e)
		}
	}
	return out, nil
}

// rank orders the happy path; a remake (QualityCheck → Preparing) and the
// terminal states are handled by CanTransition.
func rank(s domain.Status) int {
	for i, st := range []domain.Status{domain.Created, domain.Validated, domain.Queued, domain.Preparing, domain.Baking,
		domain.QualityCheck, domain.ReadyForPickup, domain.DriverAssigned, domain.PickedUp, domain.OutForDelivery, domain.Delivered} {
		if st == s {
			return i
		}
	}
	return 100
}

// stepFor maps another context's event to the order transition it causes.
func (s *Saga) stepFor(rec eventstore.Record) (step, bool) {
	agg := rec.Envelope.AggregateID
	switch e := rec.Event.(type) {
	// INVENTORY
	case events.StockReservationRejected:
		parts := make([]string, len(e.Missing))
		for i, m := range e.Missing {
			parts[i] = fmt.Sprintf("%s (need %d, have %d)", m.Ingredient, m.Required, m.Available)
		}
		return step{orderID: e.OrderID, to: []domain.Status{domain.Failed}, details: domain.TransitionDetails{Reason: "out of stock: " + strings.Join(parts, ", "), By: "inventory"}}, true
	// KITCHEN (ticket aggregates are named by order id)
	case events.TicketQueued:
		return step{orderID: agg, to: []domain.Status{domain.Queued}, details: domain.TransitionDetails{TicketID: agg}}, true
	case events.TicketPreparationStarted:
		return step{orderID: agg, to: []domain.Status{domain.Preparing}, details: domain.TransitionDetails{ChefID: e.ChefID}}, true
	case events.TicketBakingStarted:
		return step{orderID: agg, to: []domain.Status{domain.Baking}}, true
	case events.TicketQualityCheckStarted:
		return step{orderID: agg, to: []domain.Status{domain.QualityCheck}}, true
	case events.TicketReady:
		return step{orderID: agg, to: []domain.Status{domain.ReadyForPickup}}, true
	// DRIVERS (driver aggregates are named by driver id)
	case events.DriverAssigned:
		return step{orderID: e.OrderID, to: []domain.Status{domain.DriverAssigned}, details: domain.TransitionDetails{DriverID: agg}}, true
	case events.DeliveryPickedUp:
		eta := e.EstimatedDeliveryAt
		return step{orderID: e.OrderID, to: []domain.Status{domain.PickedUp, domain.OutForDelivery}, details: domain.TransitionDetails{DriverID: agg}, eta: &eta}, true
	case events.DeliveryCompleted:
		return step{orderID: e.OrderID, to: []domain.Status{domain.Delivered}, details: domain.TransitionDetails{DriverID: agg}}, true
	}
	return step{}, false
}
