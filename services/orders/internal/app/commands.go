package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/orders/internal/domain"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/google/uuid"
)

// Application errors, mapped to problems at the service edge.
var (
	ErrNotFound            = errors.New("order not found")
	ErrIdempotencyMismatch = errors.New("the Idempotency-Key was used with a different request")
	ErrConcurrentUpdate    = errors.New("the order kept changing; try again")
)

// maxAttempts bounds decide-append rounds when other writers keep winning.
const maxAttempts = 5

// orderIDNamespace derives order ids from (customer, Idempotency-Key), so a
// retried request names the same order.
var orderIDNamespace = uuid.MustParse("6b1f5a3e-0c53-4d5e-9a0e-8f4f1c2d7b90")

// Commands handles the orders service's commands.
type Commands struct {
	store   *eventstore.Store
	catalog *catalog.Catalog
	vault   *Vault
	clock   func() time.Time
	log     *slog.Logger
	cache   *cache
}

// NewCommands wires the command handler.
func NewCommands(store *eventstore.Store, cat *catalog.Catalog, vault *Vault, clock func() time.Time, log *slog.Logger, cacheSize int) *Commands {
	return &Commands{store: store, catalog: cat, vault: vault, clock: clock, log: log, cache: newCache(cacheSize)}
}

// Place places an order. With an Idempotency-Key, the order id and command
// id derive from (customer, key): a retry finds the stored order and gets
// the same reply; a different request under the same key is refused.
func (c *Commands) Place(ctx context.Context, cmd ordersapi.PlaceCommand) (ordersapi.CommandReply, error) {
	req := cmd.Request
	if errs := req.Validate(); len(errs) > 0 {
		return ordersapi.CommandReply{}, ordersapi.Validation(errs...)
	}
	if len(cmd.IdempotencyKey) > ordersapi.MaxIdempotencyKey {
		return ordersapi.CommandReply{}, ordersapi.Validation(ordersapi.FieldError{Field: "Idempotency-Key", Detail: fmt.Sprintf("is longer than %d characters", ordersapi.MaxIdempotencyKey)})
	}
	hash := requestHash(req)
	var orderID string
	if cmd.IdempotencyKey != "" {
		orderID = uuid.NewSHA1(orderIDNamespace, []byte(req.CustomerID+"\n"+cmd.IdempotencyKey)).String()
	} else {
		id, err := uuid.NewV7()
		if err != nil {
			return ordersapi.CommandReply{}, err
		}
		orderID = id.String()
	}
	commandID := "place:" + orderID

	items := make([]domain.ItemInput, len(req.Items))
	for i, it := range req.Items {
		items[i] = domain.ItemInput{PizzaType: it.PizzaType, Size: it.Size, Toppings: it.Toppings, Quantity: it.Quantity}
	}
	in := domain.PlaceInput{
		CustomerID: req.CustomerID, RestaurantID: req.RestaurantID, Items: items, PaymentMethod: req.PaymentMethod,
		Location:    events.GeoPoint{Latitude: *req.Address.Coordinates.Latitude, Longitude: *req.Address.Coordinates.Longitude},
		AddressRef:  AddressRef(orderID),
		RequestHash: hash,
	}
	now := c.clock()
	evs, err := domain.New(orderID).Place(in, c.catalog, now)
	if err != nil {
		return ordersapi.CommandReply{}, err
	}
	// The address and the customer's index entry are two vault writes
	// with nothing between them: they go out together, one round trip. An
	// index entry written for a placement refused below is harmless: the
	// order exists already (same Idempotency-Key) or erasing it finds
	// nothing to remove.
	indexed := make(chan error, 1)
	go func() { indexed <- c.vault.IndexOrder(ctx, req.CustomerID, orderID) }()
	_, addrErr := c.vault.PutAddress(ctx, orderID, *req.Address)
	indexErr := <-indexed
	if errors.Is(addrErr, ErrAddressConflict) {
		// Only an Idempotency-Key names an existing order: same key, other body.
		return ordersapi.CommandReply{}, ErrIdempotencyMismatch
	}
	if err := errors.Join(addrErr, indexErr); err != nil {
		return ordersapi.CommandReply{}, fmt.Errorf("%w: %v", eventstore.ErrUnavailable, err)
	}
	meta := events.Meta{CorrelationID: orEmpty(cmd.CorrelationID, orderID), CausationID: commandID, TraceParent: cmd.TraceParent}
	envs, err := envelopes(orderID, evs, now, meta)
	if err != nil {
		return ordersapi.CommandReply{}, err
	}
	res, err := c.store.Append(ctx, eventstore.Append{AggregateID: orderID, ExpectedSeq: 0, CommandID: commandID, Events: envs})
	if errors.Is(err, eventstore.ErrConflict) || (err == nil && res.Duplicate) {
		// The order exists: the same request retried, or a reused key.
		return c.replayPlacement(ctx, orderID, commandID, hash)
	}
	if err != nil {
		return ordersapi.CommandReply{}, err
	}
	agg := &aggregate{order: *domain.New(orderID)}
	for i, env := range envs {
		if err := agg.apply(eventstore.Record{Envelope: env, Event: evs[i], Seq: res.FirstSeq + uint64(i), CommandID: commandID}); err != nil {
			return ordersapi.CommandReply{}, err
		}
	}
	c.cache.put(orderID, agg)
	return ordersapi.CommandReply{Order: agg.view, Seq: agg.seq}, nil
}

// replayPlacement answers a retried placement with the reply the first
// attempt got: the order as its placement left it.
func (c *Commands) replayPlacement(ctx context.Context, orderID, commandID, hash string) (ordersapi.CommandReply, error) {
	recs, _, err := c.store.Load(ctx, orderID)
	if err != nil {
		return ordersapi.CommandReply{}, err
	}
	agg := &aggregate{order: *domain.New(orderID)}
	for _, rec := range recs {
		if rec.CommandID != commandID {
			break
		}
		if err := agg.apply(rec); err != nil {
			return ordersapi.CommandReply{}, err
		}
	}
	if agg.seq == 0 {
		return ordersapi.CommandReply{}, fmt.Errorf("order %s exists but its placement is not first in the log", orderID)
	}
	if agg.order.RequestHash() != hash {
		return ordersapi.CommandReply{}, ErrIdempotencyMismatch
	}
	return ordersapi.CommandReply{Order: agg.view, Seq: agg.seq, Replayed: true}, nil
}

// Cancel cancels an order if its state allows.
func (c *Commands) Cancel(ctx context.Context, cmd ordersapi.CancelCommand) (ordersapi.CommandReply, error) {
	if err := events.ValidateID(cmd.OrderID); err != nil {
		return ordersapi.CommandReply{}, ErrNotFound
	}
	reason := cmd.Reason
	if reason == "" {
		reason = "cancelled by customer"
	}
	commandID := commandIDFor("cancel", cmd.OrderID, cmd.IdempotencyKey)
	meta := events.Meta{CorrelationID: orEmpty(cmd.CorrelationID, cmd.OrderID), CausationID: commandID, TraceParent: cmd.TraceParent}
	return c.execute(ctx, cmd.OrderID, commandID, meta, func(o *domain.Order) ([]events.Event, error) {
		return o.Transition(domain.Cancelled, domain.TransitionDetails{Reason: reason, By: cmd.CancelledBy})
	})
}

// Transition moves an order to a new status if the state machine allows.
func (c *Commands) Transition(ctx context.Context, cmd ordersapi.TransitionCommand) (ordersapi.CommandReply, error) {
	if err := events.ValidateID(cmd.OrderID); err != nil {
		return ordersapi.CommandReply{}, ErrNotFound
	}
	to, ok := domain.ParseStatus(cmd.Status)
	if !ok {
		return ordersapi.CommandReply{}, ordersapi.Validation(ordersapi.FieldError{Field: "status", Detail: fmt.Sprintf("%q is not an order status", cmd.Status)})
	}
	if to == domain.Created {
		return ordersapi.CommandReply{}, ordersapi.Validation(ordersapi.FieldError{Field: "status", Detail: "an order is created by placing it"})
	}
	commandID := commandIDFor("transition-"+cmd.Status, cmd.OrderID, cmd.IdempotencyKey)
	meta := events.Meta{CorrelationID: orEmpty(cmd.CorrelationID, cmd.OrderID), CausationID: commandID, TraceParent: cmd.TraceParent}
	return c.execute(ctx, cmd.OrderID, commandID, meta, func(o *domain.Order) ([]events.Event, error) {
		evs, err := o.Transition(to, domain.TransitionDetails{Reason: cmd.Reason, By: cmd.By, ChefID: cmd.ChefID, DriverID: cmd.DriverID, TicketID: cmd.TicketID})
		if err != nil || !cmd.Override {
			return evs, err
		}
		return append(evs, events.OrderStatusOverridden{Status: string(to), By: cmd.By, Reason: cmd.Reason}), nil
	})
}

// execute runs decide against the current state and appends its events
// with the state's sequence as the expected one; when another writer won,
// it reloads and decides again.
func (c *Commands) execute(ctx context.Context, orderID, commandID string, meta events.Meta, decide func(*domain.Order) ([]events.Event, error)) (ordersapi.CommandReply, error) {
	fresh := false
	for attempt := 0; attempt < maxAttempts; attempt++ {
		agg, cached, err := c.load(ctx, orderID, fresh)
		if err != nil {
			return ordersapi.CommandReply{}, err
		}
		fresh = true // any next attempt reads the log
		if agg.commands[commandID] {
			// This command is already stored: a retry. Answer with the order
			// as it is now.
			return ordersapi.CommandReply{Order: agg.view, Seq: agg.seq, Replayed: true}, nil
		}
		order := agg.order
		evs, err := decide(&order)
		if err != nil && cached {
			// The cached state may be behind the log: another instance
			// may have appended since (several instances share the
			// orders). Refuse only what the log's state refuses.
			c.cache.drop(orderID)
			continue
		}
		if err != nil {
			return ordersapi.CommandReply{Order: agg.view, Seq: agg.seq}, err
		}
		now := c.clock()
		envs, err := envelopes(orderID, evs, now, meta)
		if err != nil {
			return ordersapi.CommandReply{}, err
		}
		res, err := c.store.Append(ctx, eventstore.Append{AggregateID: orderID, ExpectedSeq: agg.seq, CommandID: commandID, Events: envs})
		if errors.Is(err, eventstore.ErrConflict) {
			c.cache.drop(orderID)
			continue
		}
		if err != nil {
			return ordersapi.CommandReply{}, err
		}
		if res.Duplicate {
			c.cache.drop(orderID)
			now, _, err := c.load(ctx, orderID, true)
			if err != nil {
				return ordersapi.CommandReply{}, err
			}
			return ordersapi.CommandReply{Order: now.view, Seq: now.seq, Replayed: true}, nil
		}
		next := agg.clone()
		for i, env := range envs {
			if err := next.apply(eventstore.Record{Envelope: env, Event: evs[i], Seq: res.FirstSeq + uint64(i), CommandID: commandID}); err != nil {
				return ordersapi.CommandReply{}, err
			}
		}
		c.cache.put(orderID, next)
		return ordersapi.CommandReply{Order: next.view, Seq: next.seq}, nil
	}
	return ordersapi.CommandReply{}, ErrConcurrentUpdate
}

// load returns the order's current state, from the cache unless fresh is
// asked for; cached tells which.
func (c *Commands) load(ctx context.Context, orderID string, fresh bool) (agg *aggregate, cached bool, err error) {
	if !fresh {
		if agg, ok := c.cache.get(orderID); ok {
			return agg, true, nil
		}
	}
	recs, _, err := c.store.Load(ctx, orderID)
	if err != nil {
		return nil, false, err
	}
	if len(recs) == 0 {
		return nil, false, ErrNotFound
	}
	agg = &aggregate{order: *domain.New(orderID)}
	for _, rec := range recs {
		if err := agg.apply(rec); err != nil {
			return nil, false, err
		}
	}
	c.cache.put(orderID, agg)
	return agg, false, nil
}

func envelopes(orderID string, evs []events.Event, now time.Time, meta events.Meta) ([]events.Envelope, error) {
	envs := make([]events.Envelope, len(evs))
	for i, e := range evs {
		env, err := events.NewEnvelope(orderID, e, now, meta)
		if err != nil {
			return nil, err
		}
		envs[i] = env
	}
	return envs, nil
}

// requestHash fingerprints a request. json.Marshal of the struct is
// canonical: fixed field order, no whitespace.
func requestHash(req ordersapi.PlaceOrderRequest) string {
	b, _ := json.Marshal(req)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func commandIDFor(kind, orderID, idempotencyKey string) string {
	if idempotencyKey == "" {
		return kind + ":" + orderID + ":" + uuid.NewString()
	}
	sum := sha256.Sum256([]byte(idempotencyKey))
	return kind + ":" + orderID + ":" + hex.EncodeToString(sum[:12])
}

func orEmpty(v, fallback string) string {
	if v != "" {
		return v
	}
	return fallback
}

// Erase removes a customer's personal data: each of their orders' vault
// entries is purged and the erasure is recorded on the order (without any
// personal data). Orders, items and totals stay. Idempotent: a repeated
// request finds nothing left to erase.
func (c *Commands) Erase(ctx context.Context, cmd ordersapi.EraseCommand) (ordersapi.EraseReply, error) {
	if err := events.ValidateID(cmd.CustomerID); err != nil {
		return ordersapi.EraseReply{}, ordersapi.Validation(ordersapi.FieldError{Field: "customerId", Detail: err.Error()})
	}
	ids, err := c.vault.CustomerOrders(ctx, cmd.CustomerID)
	if err != nil {
		return ordersapi.EraseReply{}, fmt.Errorf("%w: %v", eventstore.ErrUnavailable, err)
	}
	reply := ordersapi.EraseReply{CustomerID: cmd.CustomerID, Orders: []string{}}
	for _, id := range ids {
		commandID := "erase:" + id
		meta := events.Meta{CorrelationID: id, CausationID: commandID}
		_, err := c.execute(ctx, id, commandID, meta, func(*domain.Order) ([]events.Event, error) {
			return []events.Event{events.OrderPersonalDataErased{Fields: []string{"address"}, By: cmd.By}}, nil
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return reply, err
		}
		// Purge after recording: a crash in between leaves the index entry,
		// so a retry finds the order again.
		if err := c.vault.EraseOrder(ctx, cmd.CustomerID, id); err != nil {
			return reply, fmt.Errorf("%w: %v", eventstore.ErrUnavailable, err)
		}
		reply.Orders = append(reply.Orders, id)
	}
	return reply, nil
}
