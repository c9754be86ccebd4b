package app

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/drivers/internal/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// Application errors, mapped to problems at the service edge.
var (
	ErrDriverNotFound   = errors.New("driver not found")
	ErrOrderNotFound    = errors.New("the order is not known to dispatch (not ready for pickup yet, or unknown)")
	ErrConcurrentUpdate = errors.New("the driver or the dispatch queue kept changing; try again")
)

// errReplay tells a decision that its command is already in the log.
var errReplay = errors.New("command already applied")

// maxAttempts bounds decide-append rounds when other writers keep winning.
const maxAttempts = 5

// Options tune the dispatcher.
type Options struct {
	// TimeScale compresses estimated travel times (demo time); default 1.
	TimeScale float64
	// ManualDispatch turns automatic assignment off: ready orders wait
	// until a manager assigns a driver.
	ManualDispatch bool
	// OnAssigned is called after every assignment (metrics). Optional.
	OnAssigned func(manual bool)
}

// Dispatcher decides everything the drivers context does: commands from
// drivers and managers, reactions to the kitchen and the orders process,
// and the assignment of waiting orders. Decisions about one restaurant's
// drivers and queue are made one at a time (a lock per restaurant), each
// appended with the sequences it was decided on; the log rejects a
// decision made on stale state, which is then reloaded and made again.
type Dispatcher struct {
	store  *eventstore.Store // DRIVERS
	orders *eventstore.Store // ORDERS, read only
	js     jetstream.JetStream
	cat    *catalog.Catalog
	clock  func() time.Time
	log    *slog.Logger
	opts   Options
	fleet  *fleet

	locksMu    sync.Mutex
	locks      map[string]*sync.Mutex // per restaurant
	orderLocks [64]sync.Mutex         // striped by order id
}

// NewDispatcher returns a dispatcher with an empty state; Follow fills it.
func NewDispatcher(js jetstream.JetStream, reg *events.Registry, cat *catalog.Catalog, clock func() time.Time, log *slog.Logger, opts Options) *Dispatcher {
	if opts.TimeScale <= 0 {
		opts.TimeScale = 1
	}
	return &Dispatcher{
		store: eventstore.New(js, reg, events.Drivers), orders: eventstore.New(js, reg, events.Orders), js: js,
		cat: cat, clock: clock, log: log, opts: opts, fleet: newFleet(), locks: map[string]*sync.Mutex{},
	}
}

// RestaurantOf returns the restaurant of a registered driver (for the
// positions projector).
func (d *Dispatcher) RestaurantOf(driverID string) (string, bool) {
	return d.fleet.restaurantOf(driverID)
}

// change is a decision's events for one aggregate, and the sequence the
// decision was based on.
type change struct {
	aggregateID string
	expectedSeq uint64
	events      []events.Event
}

// decision is what a command decided: its id (which makes the append
// idempotent), causal metadata and the changes, appended atomically.
type decision struct {
	commandID string
	meta      events.Meta
	changes   []change
}

// commit decides against the current state and appends the decision in
// one atomic batch. When another writer won, it reloads the aggregates
// involved and decides again. A decision without events appends nothing
// (changed is false).
func (d *Dispatcher) commit(ctx context.Context, decide func() (decision, error)) (res eventstore.AppendResult, changed bool, err error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		var dec decision
		var derr error
		d.fleet.with(func() { dec, derr = decide() })
		if derr != nil {
			return eventstore.AppendResult{}, false, derr
		}
		var parts []eventstore.Append
		var envs []events.Envelope
		var evs []events.Event
		now := d.clock()
		meta := dec.meta
		if meta.CausationID == "" {
			meta.CausationID = dec.commandID
		}
		for _, c := range dec.changes {
			if len(c.events) == 0 {
				continue
			}
			part := eventstore.Append{AggregateID: c.aggregateID, ExpectedSeq: c.expectedSeq, CommandID: dec.commandID}
			for _, e := range c.events {
				env, err := events.NewEnvelope(c.aggregateID, e, now, meta)
				if err != nil {
					return eventstore.AppendResult{}, false, err
				}
				part.Events = append(part.Events, env)
				envs, evs = append(envs, env), append(evs, e)
			}
			parts = append(parts, part)
		}
		if len(parts) == 0 {
			return eventstore.AppendResult{}, false, nil
		}
		res, err = d.store.AppendAll(ctx, parts...)
		if errors.Is(err, eventstore.ErrConflict) {
			d.log.Debug("decision made on stale state; reloading", "command_id", dec.commandID, "attempt", attempt+1)
			if err := d.reload(ctx, parts); err != nil {
				return eventstore.AppendResult{}, false, err
			}
			continue
		}
		if err != nil {
			return eventstore.AppendResult{}, false, err
		}
		if res.Duplicate {
			// Stored by an earlier attempt whose acknowledgement was lost.
			return res, true, d.reload(ctx, parts)
		}
		recs := recordsOf(envs, evs, res.FirstSeq, dec.commandID, now)
		d.fleet.with(func() {
			for _, r := range recs {
				d.fleet.applyLocked(r)
			}
		})
		return res, true, nil
	}
	return eventstore.AppendResult{}, false, ErrConcurrentUpdate
}

// reload replaces the state of the aggregates of parts with the log's.
func (d *Dispatcher) reload(ctx context.Context, parts []eventstore.Append) error {
	for _, p := range parts {
		recs, _, err := d.store.Load(ctx, p.AggregateID)
		if err != nil {
			return fmt.Errorf("reload %s: %w", p.AggregateID, err)
		}
		d.fleet.replace(p.AggregateID, recs)
	}
	return nil
}

// one is a decision on a single aggregate.
func one(commandID string, meta events.Meta, aggregateID string, seq uint64, evs []events.Event) decision {
	return decision{commandID: commandID, meta: meta, changes: []change{{aggregateID: aggregateID, expectedSeq: seq, events: evs}}}
}

// lockRestaurant serialises the decisions about one restaurant's drivers
// and dispatch queue in this process.
func (d *Dispatcher) lockRestaurant(restaurantID string) (unlock func()) {
	d.locksMu.Lock()
	m, ok := d.locks[restaurantID]
	if !ok {
		m = &sync.Mutex{}
		d.locks[restaurantID] = m
	}
	d.locksMu.Unlock()
	m.Lock()
	return m.Unlock
}

// lockOrder serialises the reactions to one order's "ready" and "ended"
// events, which arrive on two consumers in no guaranteed order.
func (d *Dispatcher) lockOrder(orderID string) (unlock func()) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(orderID))
	m := &d.orderLocks[h.Sum32()%uint32(len(d.orderLocks))]
	m.Lock()
	return m.Unlock
}

// drain assigns a restaurant's waiting orders while it has both waiting
// orders and Available drivers: the oldest order first, to the preferred
// driver (one that just became Available) if it is Available, otherwise
// to the Available driver nearest to the pickup point (a driver with no
// known position is taken to be at the restaurant). Each assignment is one
// atomic append on the driver and the queue. The caller holds the
// restaurant's lock. It returns the last sequence written.
func (d *Dispatcher) drain(ctx context.Context, restaurantID, preferred string) (uint64, error) {
	if d.opts.ManualDispatch {
		return 0, nil
	}
	var last uint64
	for {
		var orderID, driverID string
		res, changed, err := d.commit(ctx, func() (decision, error) {
			orderID, driverID = "", ""
			q, ok := d.fleet.queues[restaurantID]
			if !ok {
				return decision{}, nil
			}
			oldest, ok := q.q.Oldest()
			if !ok {
				return decision{}, nil
			}
			if a, ok := d.fleet.registeredLocked(preferred); ok && a.d.Available() && a.d.RestaurantID() == restaurantID {
				driverID = preferred
			} else {
				c, ok := domain.Nearest(d.candidatesLocked(restaurantID, oldest.Pickup), oldest.Pickup)
				if !ok {
					return decision{}, nil
				}
				driverID = c.DriverID
			}
			orderID = oldest.OrderID
			a := d.fleet.drivers[driverID]
			dEvs, qEvs, err := domain.Assign(&a.d, q.q, orderID, false, "")
			if err != nil {
				return decision{}, err
			}
			return decision{
				commandID: fmt.Sprintf("drivers:assign:%s:%s:%d", orderID, driverID, a.seq),
				meta:      events.Meta{CorrelationID: orderID},
				changes: []change{
					{aggregateID: driverID, expectedSeq: a.seq, events: dEvs},
					{aggregateID: events.DispatchAggregateID(restaurantID), expectedSeq: q.seq, events: qEvs},
				},
			}, nil
		})
		if err != nil {
			return last, fmt.Errorf("assign waiting orders of %s: %w", restaurantID, err)
		}
		if !changed {
			return last, nil
		}
		last, preferred = res.LastSeq, ""
		d.log.Info("driver assigned", "order_id", orderID, "driver_id", driverID, "restaurant_id", restaurantID, "seq", res.LastSeq)
		if d.opts.OnAssigned != nil {
			d.opts.OnAssigned(false)
		}
	}
}

// candidatesLocked lists a restaurant's Available drivers with their last
// known position (the fallback when a driver has reported none).
func (d *Dispatcher) candidatesLocked(restaurantID string, fallback events.GeoPoint) []domain.Candidate {
	if r, ok := d.cat.Restaurant(restaurantID); ok {
		fallback = r.Location
	}
	var out []domain.Candidate
	for _, id := range d.fleet.byRestaurant[restaurantID] {
		a := d.fleet.drivers[id]
		if !a.d.Available() {
			continue
		}
		pos := fallback
		if p, ok := d.fleet.positionLocked(id); ok {
			pos = p.point
		}
		out = append(out, domain.Candidate{DriverID: id, Position: pos})
	}
	return out
}

// Seed registers the catalogue's drivers that are not registered yet and
// makes them Available, so a fresh platform can deliver at once. It is
// idempotent: a registered driver is left as it is.
func (d *Dispatcher) Seed(ctx context.Context) error {
	for _, r := range d.cat.Restaurants {
		for _, cd := range r.Drivers {
			unlock := d.lockRestaurant(r.ID)
			res, changed, err := d.commit(ctx, func() (decision, error) {
				seq := uint64(0)
				if a, ok := d.fleet.drivers[cd.ID]; ok {
					if a.d.Registered() {
						return decision{}, nil
					}
					seq = a.seq
				}
				evs, err := domain.NewDriver(cd.ID).Register(domain.RegisterInput{RestaurantID: r.ID, Name: cd.Name, Vehicle: cd.Vehicle})
				if err != nil {
					return decision{}, err
				}
				evs = append(evs, events.DriverStatusChanged{Status: events.DriverAvailable, Previous: events.DriverOffline})
				return one("drivers:seed:"+cd.ID, events.Meta{}, cd.ID, seq, evs), nil
			})
			unlock()
			if err != nil {
				return fmt.Errorf("seed driver %s: %w", cd.ID, err)
			}
			if changed {
				d.log.Info("catalogue driver registered and Available", "driver_id", cd.ID, "restaurant_id", r.ID, "seq", res.LastSeq)
			}
		}
	}
	return nil
}

// DrainAll assigns the waiting orders of every restaurant (after a start:
// a crash may have come between queuing an order and assigning it).
func (d *Dispatcher) DrainAll(ctx context.Context) error {
	var errs []error
	for _, rid := range d.fleet.restaurantsWithWaiting() {
		unlock := d.lockRestaurant(rid)
		_, err := d.drain(ctx, rid, "")
		unlock()
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// commandIDFor derives a command's id from its idempotency key (the same
// derivation the MQTT bridge uses for the fixes it appends itself).
func commandIDFor(kind, id, idempotencyKey string) string {
	return driversapi.CommandID(kind, id, idempotencyKey)
}

// reactionID is the command id of a reaction to another context's event:
// a redelivery of the event is the same command.
func reactionID(rec eventstore.Record) string {
	return fmt.Sprintf("drivers:%s:%d", rec.Stream, rec.Seq)
}

func orEmpty(v, fallback string) string {
	if v != "" {
		return v
	}
	return fallback
}
