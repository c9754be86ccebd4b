package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/inventory/internal/domain"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// Application errors, mapped to problems at the service edge.
var (
	ErrUnknownRestaurant = errors.New("restaurant not found")
	ErrConcurrentUpdate  = errors.New("the restaurant's stock kept changing; try again")
	// ErrIdempotencyKeyReused refuses a command whose Idempotency-Key an
	// earlier, different command of the same kind and restaurant used.
	ErrIdempotencyKeyReused = errors.New("this Idempotency-Key was used for a different request")
)

// maxAttempts bounds decide-append rounds when other instances keep
// winning the race for the same restaurant.
const maxAttempts = 10

// Commands decides on restaurants' stock: the commands of the micro
// endpoints, the reactions to other contexts' events, initialisation and
// the periodic low-stock check. Decisions on one restaurant are serialised
// in the process; appends carry the expected sequence so that instances
// running side by side never decide on a stale state.
type Commands struct {
	store   *eventstore.Store
	js      jetstream.JetStream
	reg     *events.Registry
	catalog *catalog.Catalog
	menu    []string // every ingredient the catalogue knows
	clock   func() time.Time
	log     *slog.Logger
	metrics *Metrics
	entries map[string]*entry // one per catalogue restaurant; fixed after construction

	streamsMu sync.Mutex
	streams   map[string]jetstream.Stream
}

// NewCommands wires the command handler for every restaurant of the catalogue.
func NewCommands(js jetstream.JetStream, reg *events.Registry, cat *catalog.Catalog, clock func() time.Time, log *slog.Logger, metrics *Metrics) *Commands {
	c := &Commands{
		store: eventstore.New(js, reg, events.Inventory), js: js, reg: reg, catalog: cat,
		menu: cat.IngredientNames(), clock: clock, log: log, metrics: metrics,
		entries: make(map[string]*entry, len(cat.Restaurants)),
		streams: map[string]jetstream.Stream{},
	}
	for _, r := range cat.Restaurants {
		c.entries[r.ID] = &entry{id: r.ID}
	}
	return c
}

// Restaurants returns the ids of the restaurants whose stock is managed, sorted.
func (c *Commands) Restaurants() []string {
	ids := make([]string, 0, len(c.entries))
	for id := range c.entries {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Initialize loads every restaurant's stock and opens the stock of those
// whose subject is empty with the catalogue's opening units. Another
// instance doing the same at the same time is harmless: the append expects
// an empty subject.
func (c *Commands) Initialize(ctx context.Context) error {
	for _, id := range c.Restaurants() {
		e := c.entries[id]
		e.mu.Lock()
		err := c.ensureLoaded(ctx, e)
		e.mu.Unlock()
		if err != nil {
			return fmt.Errorf("stock of %s: %w", id, err)
		}
	}
	return nil
}

// ensureLoaded catches up with the log and initialises an empty stock.
// The caller holds e.mu.
func (c *Commands) ensureLoaded(ctx context.Context, e *entry) error {
	if err := c.catchUp(ctx, e); err != nil {
		return err
	}
	if e.agg.seq > 0 {
		return nil
	}
	r, _ := c.catalog.Restaurant(e.id)
	opening := make(map[string]int64, len(c.menu))
	for _, ing := range c.menu {
		opening[ing] = 0 // on the menu but not stocked: at its threshold of 0 from the start
	}
	for ing, n := range r.Stock {
		opening[ing] = n
	}
	evs, err := e.agg.stock.Initialize(opening)
	if err != nil {
		return err
	}
	commandID := "inventory:init:" + e.id
	envs, err := c.envelopes(e.id, evs, events.Meta{CorrelationID: commandID, CausationID: commandID})
	if err != nil {
		return err
	}
	res, err := c.store.Append(ctx, eventstore.Append{AggregateID: e.id, ExpectedSeq: 0, CommandID: commandID, Events: envs})
	if errors.Is(err, eventstore.ErrConflict) || (err == nil && res.Duplicate) {
		return c.catchUp(ctx, e) // another instance opened it first
	}
	if err != nil {
		e.agg.stale = true
		return err
	}
	e.agg.apply(eventstore.Record{Envelope: envs[0], Event: evs[0], Stream: events.Inventory.Stream, Seq: res.LastSeq, CommandID: commandID})
	c.log.Info("stock initialised", "restaurant_id", e.id, "seq", res.LastSeq)
	return nil
}

// result is the outcome of one decision on a restaurant's stock.
type result struct {
	view     inventoryapi.StockView
	seq      uint64         // the aggregate's sequence after the decision
	events   []events.Event // what was appended; empty for a replay
	replayed bool           // the command had already been stored
	state    domain.ReservationState
}

// decision decides on the current stock without changing it.
type decision func(*domain.Stock) ([]events.Event, error)

// execute runs a decision on a restaurant's stock under the restaurant's
// lock and appends its events with the state's sequence as the expected
// one. A refusal or a no-op decided on the cache is confirmed against the
// log before it is reported, since the cache may miss another instance's
// events; a lost race reloads the missing events and decides again. When
// orderID is set, the result carries that order's reservation state.
func (c *Commands) execute(ctx context.Context, restaurantID, orderID, commandID string, meta events.Meta, decide decision) (result, error) {
	e, ok := c.entries[restaurantID]
	if !ok {
		return result{}, ErrUnknownRestaurant
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	fresh := false
	refresh := func() error {
		fresh = true
		return c.ensureLoaded(ctx, e)
	}
	if e.agg == nil || e.agg.stale {
		if err := refresh(); err != nil {
			return result{}, err
		}
	}
	done := func(evs []events.Event, replayed bool) result {
		st, _ := e.agg.stock.Reservation(orderID)
		return result{view: e.agg.view(), seq: e.agg.seq, events: evs, replayed: replayed, state: st}
	}
	for attempt := range maxAttempts {
		agg := e.agg
		if seen, same := agg.commands.match(commandID); seen {
			if !same {
				return done(nil, false), ErrIdempotencyKeyReused
			}
			return done(nil, true), nil
		}
		evs, err := decide(agg.stock)
		if (err != nil || len(evs) == 0) && !fresh {
			if err := refresh(); err != nil {
				return result{}, err
			}
			continue
		}
		if err != nil {
			return done(nil, false), err
		}
		if len(evs) == 0 {
			return done(nil, false), nil
		}
		envs, err := c.envelopes(restaurantID, evs, meta)
		if err != nil {
			return result{}, err
		}
		res, err := c.store.Append(ctx, eventstore.Append{AggregateID: restaurantID, ExpectedSeq: agg.seq, CommandID: commandID, Events: envs})
		switch {
		case errors.Is(err, eventstore.ErrConflict):
			c.metrics.Conflicts.Inc()
			// Another writer of this restaurant's stock (a reservation of
			// another instance) won: back off a little, growing and
			// jittered, so a burst of writers does not keep colliding.
			if err := conflictPause(ctx, attempt); err != nil {
				return result{}, err
			}
			if err := refresh(); err != nil {
				return result{}, err
			}
			continue
		case err != nil:
			agg.stale = true
			return result{}, err
		case res.Duplicate:
			if err := refresh(); err != nil {
				return result{}, err
			}
			return done(nil, true), nil
		}
		for i, env := range envs {
			agg.apply(eventstore.Record{Envelope: env, Event: evs[i], Stream: events.Inventory.Stream, Seq: res.FirstSeq + uint64(i), CommandID: commandID})
		}
		c.metrics.observe(evs)
		return done(evs, false), nil
	}
	return result{}, ErrConcurrentUpdate
}

// Restock adds delivered goods to a restaurant's stock.
func (c *Commands) Restock(ctx context.Context, cmd inventoryapi.RestockCommand) (inventoryapi.CommandReply, error) {
	if _, ok := c.entries[cmd.RestaurantID]; !ok {
		return inventoryapi.CommandReply{}, ErrUnknownRestaurant
	}
	if errs := cmd.Validate(); len(errs) > 0 {
		return inventoryapi.CommandReply{}, inventoryapi.Validation(errs...)
	}
	items := make([]domain.Quantity, len(cmd.Items))
	for i, it := range cmd.Items {
		items[i] = domain.Quantity{Ingredient: it.Ingredient, Units: it.Quantity}
	}
	commandID := commandIDFor("restock", cmd.RestaurantID, cmd.IdempotencyKey, struct {
		Items []inventoryapi.RestockItem
		By    string
	}{cmd.Items, cmd.By})
	res, err := c.execute(ctx, cmd.RestaurantID, "", commandID, commandMeta(commandID, cmd.CorrelationID, cmd.TraceParent),
		func(s *domain.Stock) ([]events.Event, error) { return s.Restock(items, cmd.By) })
	if err != nil {
		return inventoryapi.CommandReply{}, err
	}
	c.log.Info("stock restocked", "restaurant_id", cmd.RestaurantID, "command_id", commandID, "seq", res.seq, "replayed", res.replayed, "by", cmd.By)
	return inventoryapi.CommandReply{Stock: res.view, Seq: res.seq, Replayed: res.replayed}, nil
}

// Adjust sets counted on-hand units of a restaurant's stock.
func (c *Commands) Adjust(ctx context.Context, cmd inventoryapi.AdjustCommand) (inventoryapi.CommandReply, error) {
	if _, ok := c.entries[cmd.RestaurantID]; !ok {
		return inventoryapi.CommandReply{}, ErrUnknownRestaurant
	}
	if errs := cmd.Validate(); len(errs) > 0 {
		return inventoryapi.CommandReply{}, inventoryapi.Validation(errs...)
	}
	items := make([]domain.Quantity, len(cmd.Items))
	for i, it := range cmd.Items {
		items[i] = domain.Quantity{Ingredient: it.Ingredient, Units: it.OnHand}
	}
	commandID := commandIDFor("adjust", cmd.RestaurantID, cmd.IdempotencyKey, struct {
		Items  []inventoryapi.AdjustItem
		Reason string
		By     string
	}{cmd.Items, cmd.Reason, cmd.By})
	res, err := c.execute(ctx, cmd.RestaurantID, "", commandID, commandMeta(commandID, cmd.CorrelationID, cmd.TraceParent),
		func(s *domain.Stock) ([]events.Event, error) { return s.Adjust(items, cmd.Reason, cmd.By) })
	if err != nil {
		return inventoryapi.CommandReply{}, err
	}
	c.log.Info("stock adjusted", "restaurant_id", cmd.RestaurantID, "command_id", commandID, "seq", res.seq, "replayed", res.replayed, "reason", cmd.Reason, "by", cmd.By)
	return inventoryapi.CommandReply{Stock: res.view, Seq: res.seq, Replayed: res.replayed}, nil
}

// CheckLowStock raises stock_running_low for every ingredient of every
// restaurant that is at or below its threshold without an open alert.
func (c *Commands) CheckLowStock(ctx context.Context) error {
	var errs []error
	for _, id := range c.Restaurants() {
		commandID := "inventory:check:" + id + ":" + uuid.NewString()
		res, err := c.execute(ctx, id, "", commandID, events.Meta{CorrelationID: commandID, CausationID: commandID},
			func(s *domain.Stock) ([]events.Event, error) { return s.CheckLow(), nil })
		if err != nil {
			errs = append(errs, fmt.Errorf("low-stock check of %s: %w", id, err))
			continue
		}
		for _, ev := range res.events {
			if low, ok := ev.(events.StockRunningLow); ok {
				c.log.Warn("stock running low", "restaurant_id", id, "ingredient", low.Ingredient, "available", low.Available, "threshold", low.Threshold, "source", "periodic check")
			}
		}
	}
	c.metrics.Checks.Inc()
	return errors.Join(errs...)
}

func (c *Commands) envelopes(restaurantID string, evs []events.Event, meta events.Meta) ([]events.Envelope, error) {
	now := c.clock()
	envs := make([]events.Envelope, len(evs))
	for i, ev := range evs {
		env, err := events.NewEnvelope(restaurantID, ev, now, meta)
		if err != nil {
			return nil, err
		}
		envs[i] = env
	}
	return envs, nil
}

func commandMeta(commandID, correlationID, traceParent string) events.Meta {
	if correlationID == "" {
		correlationID = commandID
	}
	return events.Meta{CorrelationID: correlationID, CausationID: commandID, TraceParent: traceParent}
}

// commandIDFor derives a command id from the client's Idempotency-Key and
// a fingerprint of the request ("<kind>:<restaurant>:<key hash>:<request
// hash>"), or makes a fresh one when there is no key (then a retry is a
// new command). The same key with the same request is a retry; with
// another request it is refused (recentCommands.match).
func commandIDFor(kind, restaurantID, idempotencyKey string, request any) string {
	if idempotencyKey == "" {
		return kind + ":" + restaurantID + ":" + uuid.NewString()
	}
	sum := sha256.Sum256([]byte(idempotencyKey))
	body, _ := json.Marshal(request) // plain structs of strings and numbers: cannot fail
	req := sha256.Sum256(body)
	return kind + ":" + restaurantID + ":" + hex.EncodeToString(sum[:12]) + ":" + hex.EncodeToString(req[:6])
}

// conflictPause waits before retry attempt+1 after a lost race: up to
// 2 ms times 2^attempt (at most about a quarter of a second), jittered.
func conflictPause(ctx context.Context, attempt int) error {
	limit := time.Duration(2<<min(attempt, 7)) * time.Millisecond
	t := time.NewTimer(time.Duration(rand.Int64N(int64(limit))) + 100*time.Microsecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
