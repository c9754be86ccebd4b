// Package app is the drivers service's application layer: the in-memory
// dispatch state (folded from the DRIVERS and TELEMETRY logs and followed
// live), the commands and the reactions to other contexts' events (each an
// atomic append with optimistic concurrency), the two read-model
// projectors and the NATS micro endpoints.
package app

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/drivers/internal/domain"
)

// dispatchPrefix marks the aggregate ids of dispatch queues on DRIVERS.
var dispatchPrefix = events.DispatchAggregateID("")

// recentCommands is how many command ids a driver remembers, so that a
// retried command is answered as a replay even after it triggered more
// events (an assignment after "Available").
const recentCommands = 8

// driverAgg is a driver's state as of stream sequence seq, with its view.
type driverAgg struct {
	d      domain.Driver
	view   driversapi.DriverView
	seq    uint64
	recent []string
}

func newDriverAgg(id string) *driverAgg { return &driverAgg{d: *domain.NewDriver(id)} }

func (a *driverAgg) apply(rec eventstore.Record) {
	a.d.Apply(rec.Event, rec.Envelope.OccurredAt)
	_ = applyDriverView(&a.view, rec.Envelope, rec.Event, rec.Seq) // the view of a corrupt history is best effort
	a.seq = rec.Seq
	if rec.CommandID != "" && !slices.Contains(a.recent, rec.CommandID) {
		a.recent = append(a.recent, rec.CommandID)
		if len(a.recent) > recentCommands {
			a.recent = slices.Delete(a.recent, 0, len(a.recent)-recentCommands)
		}
	}
}

// queueAgg is a restaurant's dispatch queue as of stream sequence seq.
type queueAgg struct {
	q   *domain.Queue
	seq uint64
}

// position is a driver's last fix.
type position struct {
	point    events.GeoPoint
	speedKmh *float64
	seq      uint64 // TELEMETRY sequence
}

// fleet is the dispatch state: every driver and dispatch queue of the
// chain and each driver's last position. It is folded from the log at
// start and then follows it; commands apply their own appends at once.
// Every aggregate carries the stream sequence of its last event, so an
// event applied twice (by the command and again by the follower) is
// applied once. Decisions run under mu (they are pure and quick); appends
// happen outside it.
type fleet struct {
	mu           sync.Mutex
	drivers      map[string]*driverAgg
	byRestaurant map[string][]string // driver ids, in registration order
	queues       map[string]*queueAgg
	positions    map[string]position
}

func newFleet() *fleet {
	return &fleet{drivers: map[string]*driverAgg{}, byRestaurant: map[string][]string{}, queues: map[string]*queueAgg{}, positions: map[string]position{}}
}

// with runs fn under the state lock.
func (f *fleet) with(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// apply folds one DRIVERS record into the state; records at or before an
// aggregate's sequence are already in it.
func (f *fleet) apply(rec eventstore.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applyLocked(rec)
}

func (f *fleet) applyLocked(rec eventstore.Record) {
	id := rec.Envelope.AggregateID
	if rid, ok := strings.CutPrefix(id, dispatchPrefix); ok {
		q := f.queueLocked(rid)
		if rec.Seq <= q.seq {
			return
		}
		q.q.Apply(rec.Event, rec.Envelope.OccurredAt)
		q.seq = rec.Seq
		return
	}
	a, ok := f.drivers[id]
	if !ok {
		a = newDriverAgg(id)
		f.drivers[id] = a
	}
	if rec.Seq <= a.seq {
		return
	}
	was := a.d.Registered()
	a.apply(rec)
	if !was && a.d.Registered() {
		f.byRestaurant[a.d.RestaurantID()] = append(f.byRestaurant[a.d.RestaurantID()], id)
	}
}

// queueLocked returns a restaurant's queue, creating the empty one.
func (f *fleet) queueLocked(restaurantID string) *queueAgg {
	q, ok := f.queues[restaurantID]
	if !ok {
		q = &queueAgg{q: domain.NewQueue(restaurantID)}
		f.queues[restaurantID] = q
	}
	return q
}

// replace installs an aggregate reloaded from the log, if it is newer
// than what the state holds.
func (f *fleet) replace(id string, recs []eventstore.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rid, ok := strings.CutPrefix(id, dispatchPrefix); ok {
		fresh := &queueAgg{q: domain.NewQueue(rid)}
		for _, rec := range recs {
			fresh.q.Apply(rec.Event, rec.Envelope.OccurredAt)
			fresh.seq = rec.Seq
		}
		if cur, ok := f.queues[rid]; !ok || fresh.seq > cur.seq {
			f.queues[rid] = fresh
		}
		return
	}
	fresh := newDriverAgg(id)
	for _, rec := range recs {
		fresh.apply(rec)
	}
	cur, ok := f.drivers[id]
	if ok && fresh.seq <= cur.seq {
		return
	}
	f.drivers[id] = fresh
	if (!ok || !cur.d.Registered()) && fresh.d.Registered() {
		f.byRestaurant[fresh.d.RestaurantID()] = append(f.byRestaurant[fresh.d.RestaurantID()], id)
	}
}

// registeredLocked returns a registered driver.
func (f *fleet) registeredLocked(id string) (*driverAgg, bool) {
	a, ok := f.drivers[id]
	if !ok || !a.d.Registered() {
		return nil, false
	}
	return a, true
}

// view returns a registered driver's view and sequence.
func (f *fleet) view(id string) (driversapi.DriverView, uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.registeredLocked(id)
	if !ok {
		return driversapi.DriverView{}, 0, false
	}
	return a.view, a.seq, true
}

// restaurantOf returns the restaurant a driver is registered with.
func (f *fleet) restaurantOf(driverID string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.registeredLocked(driverID)
	if !ok {
		return "", false
	}
	return a.d.RestaurantID(), true
}

// findOrder returns the restaurant whose dispatch queue knows the order,
// and what it knows.
func (f *fleet) findOrder(orderID string) (string, domain.RequestState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for rid, q := range f.queues {
		if s, ok := q.q.State(orderID); ok {
			return rid, s, true
		}
	}
	return "", domain.RequestState{}, false
}

// restaurantsWithWaiting lists the restaurants that have orders waiting.
func (f *fleet) restaurantsWithWaiting() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for rid, q := range f.queues {
		if _, ok := q.q.Oldest(); ok {
			out = append(out, rid)
		}
	}
	slices.Sort(out)
	return out
}

// setPosition records a fix unless a later one is known.
func (f *fleet) setPosition(driverID string, p position) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur, ok := f.positions[driverID]; ok && cur.seq >= p.seq {
		return
	}
	f.positions[driverID] = p
}

// positionLocked returns a driver's last fix.
func (f *fleet) positionLocked(driverID string) (position, bool) {
	p, ok := f.positions[driverID]
	return p, ok
}

// recordsOf turns a decision's envelopes, stored at firstSeq onwards, into
// records to apply.
func recordsOf(envs []events.Envelope, evs []events.Event, firstSeq uint64, commandID string, at time.Time) []eventstore.Record {
	recs := make([]eventstore.Record, len(envs))
	for i := range envs {
		recs[i] = eventstore.Record{Envelope: envs[i], Event: evs[i], Stream: events.Drivers.Stream, Subject: events.Drivers.Subject(envs[i].AggregateID), Seq: firstSeq + uint64(i), CommandID: commandID, Stored: at}
	}
	return recs
}
