package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/drivers/internal/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// OnKitchenEvent reacts to the kitchen (durable consumer drivers-kitchen):
// a ready ticket puts its order in the restaurant's dispatch queue (pickup
// at the restaurant, dropoff at the delivery location), then waiting
// orders are assigned. Idempotent: an order the queue already knows is
// not queued again, and the append's command id derives from the event.
func (d *Dispatcher) OnKitchenEvent(ctx context.Context, rec eventstore.Record) error {
	ready, ok := rec.Event.(events.TicketReady)
	if !ok {
		return nil
	}
	orderID := rec.Envelope.AggregateID
	log := d.log.With("order_id", orderID, "restaurant_id", ready.RestaurantID, "stream", rec.Stream, "seq", rec.Seq)
	rest, ok := d.cat.Restaurant(ready.RestaurantID)
	if !ok {
		log.Warn("ready order of a restaurant that is not in the catalogue; not dispatched")
		return nil
	}
	unlockOrder := d.lockOrder(orderID)
	defer unlockOrder()
	ended, err := d.orderEnded(ctx, orderID)
	if err != nil {
		return err
	}
	if ended != "" {
		log.Info("order ended before it could be dispatched; not queued", "order_status", ended)
		return nil
	}
	meta := events.Meta{CorrelationID: orEmpty(rec.Envelope.CorrelationID, orderID), CausationID: rec.Envelope.ID}
	unlock := d.lockRestaurant(rest.ID)
	defer unlock()
	res, queued, err := d.commit(ctx, func() (decision, error) {
		q := d.fleet.queueLocked(rest.ID)
		return one(reactionID(rec), meta, events.DispatchAggregateID(rest.ID), q.seq, q.q.Request(orderID, rest.Location, ready.DeliveryLocation)), nil
	})
	if err != nil {
		return fmt.Errorf("queue order %s: %w", orderID, err)
	}
	if queued {
		log.Info("order waits for a driver", "queue_seq", res.LastSeq)
	} else {
		log.Debug("order already known to dispatch; nothing to queue")
	}
	if _, err := d.drain(ctx, rest.ID, ""); err != nil {
		return err
	}
	return nil
}

// OnOrderEvent reacts to the orders process (durable consumer
// drivers-orders): a cancelled or failed order leaves the dispatch queue,
// or, if a driver holds it and has not picked it up, the driver is
// unassigned and gets the oldest waiting order. An order dispatch does not
// know, or one already picked up, delivered or closed, is acknowledged and
// logged.
func (d *Dispatcher) OnOrderEvent(ctx context.Context, rec eventstore.Record) error {
	var reason, detail string
	switch e := rec.Event.(type) {
	case events.OrderCancelled:
		reason, detail = domain.ClosedCancelled, e.Reason
	case events.OrderFailed:
		reason, detail = domain.ClosedFailed, e.Reason
	default:
		return nil
	}
	orderID := rec.Envelope.AggregateID
	log := d.log.With("order_id", orderID, "reason", reason, "detail", detail, "stream", rec.Stream, "seq", rec.Seq)
	unlockOrder := d.lockOrder(orderID)
	defer unlockOrder()
	rid, _, ok := d.fleet.findOrder(orderID)
	if !ok {
		log.Debug("order unknown to dispatch; nothing to withdraw")
		return nil
	}
	log = log.With("restaurant_id", rid)
	meta := events.Meta{CorrelationID: orEmpty(rec.Envelope.CorrelationID, orderID), CausationID: rec.Envelope.ID}
	unlock := d.lockRestaurant(rid)
	defer unlock()
	var freed, outcome string
	_, changed, err := d.commit(ctx, func() (decision, error) {
		freed, outcome = "", ""
		q := d.fleet.queueLocked(rid)
		s, _ := q.q.State(orderID)
		switch {
		case s.Waiting:
			evs, err := q.q.Close(orderID, reason)
			return one(reactionID(rec), meta, events.DispatchAggregateID(rid), q.seq, evs), err
		case s.Reason == domain.ClosedAssigned:
			a, ok := d.fleet.registeredLocked(s.DriverID)
			if !ok || !a.d.Holds(orderID) {
				outcome = "the order was already delivered or withdrawn"
				return decision{}, nil
			}
			evs, err := a.d.Unassign(orderID, reason)
			if errors.Is(err, domain.ErrAlreadyPickedUp) {
				outcome = "the driver has picked the order up and keeps it until it is delivered or returned"
				return decision{}, nil
			}
			freed = s.DriverID
			return one(reactionID(rec), meta, s.DriverID, a.seq, evs), err
		default:
			outcome = "the order already left the queue (" + s.Reason + ")"
			return decision{}, nil
		}
	})
	if err != nil {
		return fmt.Errorf("withdraw order %s: %w", orderID, err)
	}
	switch {
	case !changed:
		log.Info("order ended; no dispatch change", "outcome", outcome)
	case freed != "":
		log.Info("driver unassigned from an ended order", "driver_id", freed)
	default:
		log.Info("order left the dispatch queue")
	}
	// Also on a redelivery: the driver freed by the first delivery may
	// still be waiting for its next order.
	if _, err := d.drain(ctx, rid, freed); err != nil {
		return err
	}
	return nil
}

// orderEnded reports whether the order was cancelled or failed according
// to the ORDERS log. It closes the race between the two consumers: the
// cancellation may be handled before the "ready" it overtook.
func (d *Dispatcher) orderEnded(ctx context.Context, orderID string) (string, error) {
	recs, _, err := d.orders.Load(ctx, orderID)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("order %s status: %w", orderID, err)
	}
	for _, r := range recs {
		switch r.Event.(type) {
		case events.OrderCancelled:
			return "Cancelled", nil
		case events.OrderFailed:
			return "Failed", nil
		}
	}
	return "", nil
}
