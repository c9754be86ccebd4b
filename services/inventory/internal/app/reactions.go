package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/inventory/internal/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// ReactionCommandID is the command id of the inventory's reaction to an
// event of another context: "inventory:<stream>:<seq>". A redelivered
// event therefore yields the same command, and its Msg-Ids are deduplicated.
func ReactionCommandID(stream string, seq uint64) string {
	return "inventory:" + stream + ":" + strconv.FormatUint(seq, 10)
}

func reactionMeta(rec eventstore.Record, commandID string) events.Meta {
	corr := rec.Envelope.CorrelationID
	if corr == "" {
		corr = rec.Envelope.AggregateID
	}
	return events.Meta{CorrelationID: corr, CausationID: commandID, TraceParent: rec.Envelope.TraceParent}
}

// OnOrderEvent handles one event of the ORDERS stream (durable consumer
// inventory-orders): order_placed reserves, order_cancelled and
// order_failed release or waste. Other order events are ignored. A
// returned error asks for a redelivery.
func (c *Commands) OnOrderEvent(ctx context.Context, rec eventstore.Record) error {
	orderID := rec.Envelope.AggregateID
	switch e := rec.Event.(type) {
	case events.OrderPlaced:
		return c.reserve(ctx, rec, orderID, e)
	case events.OrderCancelled, events.OrderFailed:
		return c.settle(ctx, rec, orderID, "", endingReason(rec))
	default:
		return nil
	}
}

// reserve decides an order's reservation. An order the stock cannot serve
// (unknown restaurant, a line the recipes do not know) is acknowledged and
// reported: retrying cannot help, and the contract has no rejection reason
// besides missing ingredients.
func (c *Commands) reserve(ctx context.Context, rec eventstore.Record, orderID string, e events.OrderPlaced) error {
	log := c.log.With("order_id", orderID, "restaurant_id", e.RestaurantID, "orders_seq", rec.Seq)
	if _, ok := c.entries[e.RestaurantID]; !ok {
		log.Error("ALERT: order for a restaurant without managed stock; nothing reserved", "alert", "unknown_restaurant")
		return nil
	}
	need := map[string]int64{}
	lines := make([]events.OrderLine, len(e.Items))
	for i, it := range e.Items {
		ings, err := c.catalog.Ingredients(it.PizzaType, it.Size, it.Toppings, it.Quantity)
		if err != nil {
			log.Error("ALERT: order line has no recipe; nothing reserved", "alert", "unknown_recipe", "line", i, "err", err)
			return nil
		}
		for ing, n := range ings {
			need[ing] += n
		}
		lines[i] = events.OrderLine{PizzaType: it.PizzaType, Size: it.Size, Toppings: it.Toppings, Quantity: it.Quantity}
	}
	commandID := ReactionCommandID(rec.Stream, rec.Seq)
	res, err := c.execute(ctx, e.RestaurantID, orderID, commandID, reactionMeta(rec, commandID),
		func(s *domain.Stock) ([]events.Event, error) {
			return s.Reserve(orderID, need, lines, e.DeliveryLocation)
		})
	switch {
	case errors.Is(err, domain.ErrOrderAlreadyHandled):
		log.Debug("order already handled; redelivery ignored", "state", res.state)
	case err != nil:
		return fmt.Errorf("reserve for order %s: %w", orderID, err)
	default:
		c.logDecision(log, res)
	}
	if res.state != domain.Reserved {
		return nil
	}
	// A cancellation may have overtaken this reservation (a redelivered
	// order_placed, or another instance handling the cancellation first,
	// while the order had no reservation yet): settle it now.
	ended, err := c.orderEnding(ctx, orderID)
	if err != nil || ended == nil {
		return err
	}
	log.Info("order ended before its reservation was settled; settling now", "ended_by", ended.Envelope.Type, "ended_seq", ended.Seq)
	return c.settle(ctx, *ended, orderID, e.RestaurantID, endingReason(*ended))
}

// settle releases or wastes an order's reservation after the order was
// cancelled or failed. restaurantID may be empty: it is then read from the
// order's order_placed.
func (c *Commands) settle(ctx context.Context, rec eventstore.Record, orderID, restaurantID, reason string) error {
	log := c.log.With("order_id", orderID, "orders_seq", rec.Seq)
	if restaurantID == "" {
		var err error
		restaurantID, err = c.restaurantOf(ctx, orderID)
		if err != nil {
			return err
		}
		if restaurantID == "" {
			log.Warn("order ended but its placement is not in the log; nothing to release")
			return nil
		}
	}
	log = log.With("restaurant_id", restaurantID)
	if _, ok := c.entries[restaurantID]; !ok {
		log.Warn("order of a restaurant without managed stock ended; nothing to release")
		return nil
	}
	commandID := ReactionCommandID(rec.Stream, rec.Seq)
	res, err := c.execute(ctx, restaurantID, orderID, commandID, reactionMeta(rec, commandID),
		func(s *domain.Stock) ([]events.Event, error) { return s.Release(orderID, reason) })
	switch {
	case errors.Is(err, domain.ErrNoReservation):
		log.Info("order ended without a reservation; nothing to release", "state", res.state)
		return nil
	case errors.Is(err, domain.ErrReservationClosed):
		log.Debug("reservation already settled", "state", res.state)
		return nil
	case err != nil:
		return fmt.Errorf("settle order %s: %w", orderID, err)
	}
	c.logDecision(log, res)
	return nil
}

// OnKitchenEvent handles one event of the KITCHEN stream (durable consumer
// inventory-kitchen): the first ticket_preparation_started of an order
// consumes its reservation. Remakes (attempt > 1) move no stock.
func (c *Commands) OnKitchenEvent(ctx context.Context, rec eventstore.Record) error {
	e, ok := rec.Event.(events.TicketPreparationStarted)
	if !ok {
		return nil
	}
	orderID := rec.Envelope.AggregateID
	log := c.log.With("order_id", orderID, "restaurant_id", e.RestaurantID, "kitchen_seq", rec.Seq, "attempt", e.Attempt)
	if e.Attempt > 1 {
		log.Debug("remake: no stock moves")
		return nil
	}
	if _, ok := c.entries[e.RestaurantID]; !ok {
		log.Error("ALERT: preparation started in a restaurant without managed stock", "alert", "unknown_restaurant")
		return nil
	}
	commandID := ReactionCommandID(rec.Stream, rec.Seq)
	res, err := c.execute(ctx, e.RestaurantID, orderID, commandID, reactionMeta(rec, commandID),
		func(s *domain.Stock) ([]events.Event, error) { return s.Consume(orderID) })
	switch {
	case errors.Is(err, domain.ErrNoReservation):
		log.Warn("preparation started without a reservation; nothing to consume", "state", res.state)
		return nil
	case errors.Is(err, domain.ErrReservationClosed):
		log.Info("preparation started after the reservation was released; nothing to consume", "state", res.state)
		return nil
	case errors.Is(err, domain.ErrAlreadyConsumed):
		log.Debug("reservation already consumed")
		return nil
	case err != nil:
		return fmt.Errorf("consume for order %s: %w", orderID, err)
	}
	c.logDecision(log, res)
	return nil
}

func (c *Commands) logDecision(log *slog.Logger, res result) {
	if res.replayed {
		log.Debug("decision was already stored", "seq", res.seq)
		return
	}
	for _, ev := range res.events {
		switch e := ev.(type) {
		case events.StockReservationRejected:
			log.Info("reservation rejected: not enough stock", "missing", e.Missing, "seq", res.seq)
		case events.StockRunningLow:
			log.Warn("stock running low", "ingredient", e.Ingredient, "available", e.Available, "threshold", e.Threshold)
		default:
			log.Info(ev.EventType(), "seq", res.seq)
		}
	}
}

// restaurantOf reads the restaurant of an order from its order_placed, the
// first event on the order's subject. It returns "" when the order has no
// placement in the log.
func (c *Commands) restaurantOf(ctx context.Context, orderID string) (string, error) {
	st, err := c.stream(ctx, events.Orders.Stream)
	if err != nil {
		return "", err
	}
	m, err := st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(events.Orders.Subject(orderID)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("placement of order %s: %w", orderID, err)
	}
	rec, err := eventstore.DecodeMessage(c.reg, m.Subject, m.Header, m.Data, events.Orders.Stream, m.Sequence, m.Time)
	if err != nil {
		return "", err
	}
	placed, ok := rec.Event.(events.OrderPlaced)
	if !ok {
		return "", nil
	}
	return placed.RestaurantID, nil
}

var (
	orderCancelledType = events.OrderCancelled{}.EventType()
	orderFailedType    = events.OrderFailed{}.EventType()
)

// orderEnding returns the order_cancelled or order_failed event of an
// order, or nil while the order is alive. The last event on the order's
// subject answers it in one read, unless that event is an annotation that
// does not change the status (stuck alert, override record): then the
// order's events are read in full.
func (c *Commands) orderEnding(ctx context.Context, orderID string) (*eventstore.Record, error) {
	st, err := c.stream(ctx, events.Orders.Stream)
	if err != nil {
		return nil, err
	}
	m, err := st.GetLastMsgForSubject(ctx, events.Orders.Subject(orderID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("last event of order %s: %w", orderID, err)
	}
	switch m.Header.Get(events.HeaderType) {
	case orderCancelledType, orderFailedType:
		rec, err := eventstore.DecodeMessage(c.reg, m.Subject, m.Header, m.Data, events.Orders.Stream, m.Sequence, m.Time)
		if err != nil {
			return nil, err
		}
		return &rec, nil
	case events.OrderStuckDetected{}.EventType(), events.OrderStatusOverridden{}.EventType():
		recs, _, err := eventstore.New(c.js, c.reg, events.Orders).Load(ctx, orderID)
		if err != nil {
			return nil, err
		}
		for i := len(recs) - 1; i >= 0; i-- {
			switch recs[i].Event.(type) {
			case events.OrderCancelled, events.OrderFailed:
				return &recs[i], nil
			}
		}
	}
	return nil, nil
}

func endingReason(rec eventstore.Record) string {
	switch e := rec.Event.(type) {
	case events.OrderCancelled:
		return "order cancelled: " + e.Reason
	case events.OrderFailed:
		return "order failed: " + e.Reason
	}
	return rec.Envelope.Type
}
