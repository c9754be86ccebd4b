package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/kitchen/internal/domain"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
)

// Reactions are the kitchen's handlers of other contexts' events. Each is
// idempotent: its command id derives from the triggering event
// ("kitchen:<stream>:<seq>") and it decides against the ticket's state in
// the log, appending with that state's sequence as the expected one.
type Reactions struct {
	store *eventstore.Store
	chefs map[string]string
	clock func() time.Time
	log   *slog.Logger
}

// NewReactions wires the handlers.
func NewReactions(store *eventstore.Store, cat *catalog.Catalog, clock func() time.Time, log *slog.Logger) *Reactions {
	return &Reactions{store: store, chefs: chefIndex(cat), clock: clock, log: log}
}

// InventorySpec is the durable consumer of stock reservations.
func InventorySpec() eventstore.ConsumerSpec {
	return eventstore.ConsumerSpec{Stream: events.Inventory.Stream, Durable: kitchenapi.DurableInventory, FilterSubjects: []string{events.Inventory.Wildcard()}}
}

// OrdersSpec is the durable consumer of order cancellations and failures.
func OrdersSpec() eventstore.ConsumerSpec {
	return eventstore.ConsumerSpec{Stream: events.Orders.Stream, Durable: kitchenapi.DurableOrders, FilterSubjects: []string{events.Orders.Wildcard()}}
}

func triggerCommandID(rec eventstore.Record) string {
	return fmt.Sprintf("kitchen:%s:%d", rec.Stream, rec.Seq)
}

// OnInventory opens a ticket for every stock reservation. The ticket must
// not exist yet (expected sequence 0): a redelivery, or a reservation for an
// order already withdrawn, stores nothing and is acknowledged.
func (r *Reactions) OnInventory(ctx context.Context, rec eventstore.Record) error {
	sr, ok := rec.Event.(events.StockReserved)
	if !ok {
		return nil
	}
	log := r.log.With("order_id", sr.OrderID, "restaurant_id", sr.RestaurantID, "trigger", rec.Stream, "trigger_seq", rec.Seq)
	if err := events.ValidateID(sr.OrderID); err != nil {
		return fmt.Errorf("stock_reserved seq %d: order id: %w", rec.Seq, err)
	}
	if _, clash := r.chefs[sr.OrderID]; clash {
		return fmt.Errorf("stock_reserved seq %d: order id %q is a chef's id; a ticket cannot share the chef's subject", rec.Seq, sr.OrderID)
	}
	if events.IsKitchenDevicesAggregate(sr.OrderID) {
		return fmt.Errorf("stock_reserved seq %d: order id %q starts with %q, the prefix of the kitchen devices' subjects", rec.Seq, sr.OrderID, events.KitchenDevicesPrefix)
	}
	evs, err := domain.NewTicket(sr.OrderID).Queue(domain.QueueInput{RestaurantID: sr.RestaurantID, Lines: sr.Lines, DeliveryLocation: sr.DeliveryLocation})
	if err != nil {
		return fmt.Errorf("stock_reserved seq %d: %w", rec.Seq, err)
	}
	commandID := triggerCommandID(rec)
	meta := events.Meta{CorrelationID: orEmpty(rec.Envelope.CorrelationID, sr.OrderID), CausationID: rec.Envelope.ID, TraceParent: rec.Envelope.TraceParent}
	envs, err := envelopes(sr.OrderID, evs, r.clock(), meta)
	if err != nil {
		return err
	}
	res, err := r.store.Append(ctx, eventstore.Append{AggregateID: sr.OrderID, ExpectedSeq: 0, CommandID: commandID, Events: envs})
	switch {
	case errors.Is(err, eventstore.ErrConflict):
		log.Info("stock_reserved ignored: the order already has a ticket or was withdrawn")
		return nil
	case err != nil:
		return fmt.Errorf("queue ticket for %s: %w", sr.OrderID, err)
	case res.Duplicate:
		log.Info("stock_reserved redelivered: ticket already queued", "seq", res.LastSeq)
	default:
		log.Info("ticket queued", "seq", res.LastSeq)
	}
	return nil
}

// OnOrders withdraws the ticket of a cancelled or failed order, freeing
// its chef. A ticket already Ready or Withdrawn stays as it is. An order the
// kitchen has not queued yet gets a withdrawal as its first kitchen event,
// so a stock reservation that is still on its way opens no ticket.
func (r *Reactions) OnOrders(ctx context.Context, rec eventstore.Record) error {
	var reason string
	switch e := rec.Event.(type) {
	case events.OrderCancelled:
		reason = "order cancelled: " + e.Reason
	case events.OrderFailed:
		reason = "order failed: " + e.Reason
	default:
		return nil
	}
	orderID := rec.Envelope.AggregateID
	if err := events.ValidateID(orderID); err != nil {
		return fmt.Errorf("%s seq %d: order id: %w", rec.Envelope.Type, rec.Seq, err)
	}
	log := r.log.With("order_id", orderID, "trigger", rec.Stream, "trigger_seq", rec.Seq, "event", rec.Envelope.Type)
	commandID := triggerCommandID(rec)
	meta := events.Meta{CorrelationID: orEmpty(rec.Envelope.CorrelationID, orderID), CausationID: rec.Envelope.ID, TraceParent: rec.Envelope.TraceParent}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		t, version, lastCommand, err := loadTicket(ctx, r.store, orderID)
		if err != nil {
			return err
		}
		if lastCommand == commandID {
			log.Info("order end redelivered: ticket already withdrawn")
			return nil
		}
		evs, err := t.Withdraw(reason)
		if errors.Is(err, domain.ErrAlreadyReady) || errors.Is(err, domain.ErrAlreadyWithdrawn) {
			log.Info("order end does not apply to the ticket", "stage", t.Stage(), "why", err.Error())
			return nil
		}
		if err != nil {
			return err
		}
		envs, err := envelopes(orderID, evs, r.clock(), meta)
		if err != nil {
			return err
		}
		res, err := r.store.Append(ctx, eventstore.Append{AggregateID: orderID, ExpectedSeq: version, CommandID: commandID, Events: envs})
		if errors.Is(err, eventstore.ErrConflict) {
			continue // the scheduler moved the ticket meanwhile: decide again
		}
		if err != nil {
			return fmt.Errorf("withdraw ticket %s: %w", orderID, err)
		}
		log.Info("ticket withdrawn", "from_stage", t.Stage(), "chef_id", t.ChefID(), "restaurant_id", t.RestaurantID(), "seq", res.LastSeq, "duplicate", res.Duplicate)
		return nil
	}
	return fmt.Errorf("withdraw ticket %s: %w", orderID, ErrConcurrentUpdate)
}
