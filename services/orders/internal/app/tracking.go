package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// casScript replaces an order's view only if it is still exactly the one
// the new view was computed from, and announces the change on the read
// model's channel in the same step.
//
// KEYS[1] the view. ARGV[1] the expected view, ARGV[2] the new view,
// ARGV[3] the channel, ARGV[4] the notification.
var casScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`)

// Tracker folds drivers' position fixes (TELEMETRY) into the order read
// model while an order is with its driver: the view's driverTracking gets
// the driver's last fix and an ETA recomputed from it.
//
// It never changes what ORDERS decides. Each write is a compare-and-set
// on the whole view, so a change by the order projector in between wins
// and the tracker recomputes from the new view; the order projector, which
// rewrites the view from what it read, may in turn put back an older fix
// for a moment: the tracker sees its notification, compares the fix
// sequence and writes the newest fix again. Writes per order are
// throttled to one per interval (the first fix of a quiet order goes out
// at once, later ones at most interval later, always the newest).
type Tracker struct {
	rdb       *redis.Client
	js        jetstream.JetStream
	reg       *events.Registry
	keyspace  string
	cat       *catalog.Catalog
	timeScale float64
	interval  time.Duration
	log       *slog.Logger

	mu       sync.Mutex
	orders   map[string]trackedOrder        // order id -> the order while with its driver
	byDriver map[string]map[string]struct{} // driver id -> its tracked orders
	fixes    map[string]driverFix           // driver id -> last fix
	// undecoded holds the last fix of drivers with no tracked order, as
	// stored: most drivers carry no order most of the time, and decoding
	// every fix of the fleet would cost more than the rest of the tracker.
	undecoded map[string]rawFix
	dirty     map[string]struct{} // orders whose view lags their driver's fix
	lastWrite map[string]time.Time
	wake      chan struct{}
}

type trackedOrder struct {
	driverID     string
	restaurantID string
	status       string
	dropoff      *ordersapi.LatLon
}

type driverFix struct {
	fix events.DriverLocationReported
	seq uint64
}

// rawFix is a stored fix not decoded yet.
type rawFix struct {
	subject string
	header  nats.Header
	data    []byte
	stream  string
	seq     uint64
	stored  time.Time
}

// NewTracker returns a tracker; Run starts it.
func NewTracker(rdb *redis.Client, js jetstream.JetStream, reg *events.Registry, keyspace string, cat *catalog.Catalog, timeScale float64, interval time.Duration, log *slog.Logger) *Tracker {
	return &Tracker{rdb: rdb, js: js, reg: reg, keyspace: keyspace, cat: cat, timeScale: timeScale, interval: interval,
		log: log.With("component", "tracking"), orders: map[string]trackedOrder{}, byDriver: map[string]map[string]struct{}{},
		fixes: map[string]driverFix{}, undecoded: map[string]rawFix{}, dirty: map[string]struct{}{}, lastWrite: map[string]time.Time{}, wake: make(chan struct{}, 1)}
}

// Run follows the order read model and the drivers' fixes and writes the
// tracking until ctx ends.
func (t *Tracker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for wait := 100 * time.Millisecond; ctx.Err() == nil; wait = min(wait*2, 5*time.Second) {
			err := t.followOrders(ctx)
			if ctx.Err() != nil {
				return
			}
			t.log.Warn("driver tracking interrupted; resuming", "retry_in", wait, "err", err)
			tm := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				tm.Stop()
			case <-tm.C:
			}
		}
	}()
	// The last fix of every driver, then every new one.
	go func() {
		defer wg.Done()
		eventstore.Follow(ctx, t.js, events.Telemetry.Stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{events.DriverLocationSubject(">")}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy},
			t.log, nil, t.onFixMsg)
	}()
	t.writeLoop(ctx)
	wg.Wait()
}

// followOrders learns which orders are with which driver from the order
// read model: a scan of the orders in the tracked statuses at every
// (re)subscription, then every change notification.
func (t *Tracker) followOrders(ctx context.Context) error {
	ps := t.rdb.Subscribe(ctx, ordersapi.Channel(t.keyspace))
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	defer ps.Close()
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			// Notifications may have been missed before (or while
			// re)subscribing: read the present.
			if err := t.scan(ctx); err != nil {
				return err
			}
		case *redis.Message:
			var n ordersapi.Notification
			if err := codec.Unmarshal([]byte(m.Payload), &n); err != nil {
				t.log.Warn("bad order notification", "err", err)
				continue
			}
			t.note(n.Order)
		}
	}
}

// scan reads every order currently in a tracked status.
func (t *Tracker) scan(ctx context.Context) error {
	for _, r := range t.cat.Restaurants {
		for _, status := range ordersapi.TrackedStatuses {
			members, err := t.rdb.ZRange(ctx, ordersapi.RestaurantOrdersKey(t.keyspace, r.ID, status), 0, -1).Result()
			if err != nil {
				return err
			}
			for _, m := range members {
				_, id, ok := strings.Cut(m, ":")
				if !ok {
					continue
				}
				raw, err := t.rdb.Get(ctx, ordersapi.OrderKey(t.keyspace, id)).Bytes()
				if errors.Is(err, redis.Nil) {
					continue
				}
				if err != nil {
					return err
				}
				var v ordersapi.OrderView
				if err := codec.Unmarshal(raw, &v); err != nil {
					return fmt.Errorf("order view %s: %w", id, err)
				}
				t.note(v)
			}
		}
	}
	return nil
}

// note records what a view says about the order and its driver, and marks
// the order for a write when its tracking lags the driver's last fix.
func (t *Tracker) note(v ordersapi.OrderView) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := v.OrderID
	prev, known := t.orders[id]
	if known {
		if set := t.byDriver[prev.driverID]; set != nil {
			delete(set, id)
			if len(set) == 0 {
				delete(t.byDriver, prev.driverID)
			}
		}
		delete(t.orders, id)
	}
	if !slices.Contains(ordersapi.TrackedStatuses, v.Status) || v.AssignedDriverID == nil {
		delete(t.dirty, id)
		delete(t.lastWrite, id)
		return
	}
	d := *v.AssignedDriverID
	t.orders[id] = trackedOrder{driverID: d, restaurantID: v.RestaurantID, status: v.Status, dropoff: v.DeliveryLocation}
	if t.byDriver[d] == nil {
		t.byDriver[d] = map[string]struct{}{}
	}
	t.byDriver[d][id] = struct{}{}
	t.decodePendingLocked(d)
	// A newer fix, or a new status (the way left changes at pickup).
	if f, ok := t.fixes[d]; ok && (v.DriverTracking == nil || v.DriverTracking.DriverID != d || v.DriverTracking.Seq < f.seq || (known && prev.status != v.Status)) {
		t.markLocked(id)
	}
}

func (t *Tracker) markLocked(orderID string) {
	t.dirty[orderID] = struct{}{}
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// onFixMsg takes one stored fix: kept as stored while nobody follows the
// driver, decoded and applied to the driver's orders otherwise.
func (t *Tracker) onFixMsg(m jetstream.Msg, md *jetstream.MsgMetadata) {
	driverID := strings.TrimPrefix(m.Subject(), events.DriverLocationSubject(""))
	raw := rawFix{subject: m.Subject(), header: m.Headers(), data: m.Data(), stream: md.Stream, seq: md.Sequence.Stream, stored: md.Timestamp}
	t.mu.Lock()
	if len(t.byDriver[driverID]) == 0 {
		// Nobody follows this driver now: keep the fix as stored.
		if old, ok := t.undecoded[driverID]; !ok || old.seq < raw.seq {
			t.undecoded[driverID] = raw
		}
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	fix, ok := t.decode(raw)
	if !ok {
		return
	}
	t.onFix(driverID, fix, raw.seq)
}

// decode turns a stored fix into the event; a fix that cannot be decoded
// is logged and skipped.
func (t *Tracker) decode(raw rawFix) (events.DriverLocationReported, bool) {
	rec, err := eventstore.DecodeMessage(t.reg, raw.subject, raw.header, raw.data, raw.stream, raw.seq, raw.stored)
	if err != nil {
		t.log.Warn("undecodable position fix skipped", "seq", raw.seq, "subject", raw.subject, "err", err)
		return events.DriverLocationReported{}, false
	}
	fix, ok := rec.Event.(events.DriverLocationReported)
	return fix, ok
}

// decodePendingLocked decodes the stored last fix of a driver that has
// just become followed.
func (t *Tracker) decodePendingLocked(driverID string) {
	raw, ok := t.undecoded[driverID]
	if !ok {
		return
	}
	delete(t.undecoded, driverID)
	if old, ok := t.fixes[driverID]; ok && old.seq >= raw.seq {
		return
	}
	if fix, ok := t.decode(raw); ok {
		t.fixes[driverID] = driverFix{fix: fix, seq: raw.seq}
	}
}

func (t *Tracker) onFix(driverID string, fix events.DriverLocationReported, seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.fixes[driverID]; ok && old.seq >= seq {
		return
	}
	t.fixes[driverID] = driverFix{fix: fix, seq: seq}
	delete(t.undecoded, driverID)
	for id := range t.byDriver[driverID] {
		t.markLocked(id)
	}
}

// writeLoop writes the tracking of dirty orders, at most one write per
// order per interval. It sleeps until a fix arrives or until the earliest
// throttled order becomes due, so a fix waits at most the interval.
func (t *Tracker) writeLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		case <-timer.C:
		}
		ids, next := t.due()
		for _, id := range ids {
			if err := t.write(ctx, id); err != nil && ctx.Err() == nil {
				t.log.Warn("driver position not folded into the order view; retrying", "order_id", id, "err", err)
				t.mu.Lock()
				if _, ok := t.orders[id]; ok {
					t.dirty[id] = struct{}{}
				}
				t.mu.Unlock()
				next = min(next, t.interval)
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// due takes the dirty orders whose last write is at least interval old,
// and tells how long until the next of the others is due (an hour when
// none is waiting).
func (t *Tracker) due() ([]string, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	next := time.Hour
	var out []string
	for id := range t.dirty {
		if last, ok := t.lastWrite[id]; ok && now.Sub(last) < t.interval {
			next = min(next, t.interval-now.Sub(last))
			continue
		}
		delete(t.dirty, id)
		t.lastWrite[id] = now
		out = append(out, id)
	}
	return out, next
}

// write folds the driver's last fix into one order's view.
func (t *Tracker) write(ctx context.Context, orderID string) error {
	key := ordersapi.OrderKey(t.keyspace, orderID)
	for attempt := 0; attempt < 5; attempt++ {
		raw, err := t.rdb.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return nil // rebuilding: the projector's notification brings it back
		}
		if err != nil {
			return err
		}
		var v ordersapi.OrderView
		if err := codec.Unmarshal([]byte(raw), &v); err != nil {
			return fmt.Errorf("order view %s: %w", orderID, err)
		}
		if !slices.Contains(ordersapi.TrackedStatuses, v.Status) || v.AssignedDriverID == nil {
			return nil
		}
		driverID := *v.AssignedDriverID
		t.mu.Lock()
		f, ok := t.fixes[driverID]
		t.mu.Unlock()
		if !ok || (v.DriverTracking != nil && v.DriverTracking.DriverID == driverID && v.DriverTracking.Seq > f.seq) {
			return nil
		}
		tr := t.tracking(v, driverID, f)
		if v.DriverTracking != nil && reflect.DeepEqual(*v.DriverTracking, *tr) {
			return nil // up to date
		}
		v.DriverTracking = tr
		b, err := codec.Marshal(v)
		if err != nil {
			return err
		}
		note, err := codec.Marshal(ordersapi.Notification{OrderID: orderID, Seq: v.Version, Order: v, Tracking: true})
		if err != nil {
			return err
		}
		ok2, err := casScript.Run(ctx, t.rdb, []string{key}, raw, string(b), ordersapi.Channel(t.keyspace), string(note)).Int()
		if err != nil {
			return err
		}
		if ok2 == 1 {
			return nil
		}
		// The projector changed the view meanwhile: decide again on it.
	}
	return errors.New("the order view kept changing")
}

// tracking computes the live part of an order from its driver's fix.
func (t *Tracker) tracking(v ordersapi.OrderView, driverID string, f driverFix) *ordersapi.DriverTracking {
	km := 0.0
	if v.DeliveryLocation != nil {
		from := ordersapi.LatLon{Latitude: f.fix.Latitude, Longitude: f.fix.Longitude}
		if v.Status == "DriverAssigned" {
			// Not picked up yet: the way goes through the restaurant.
			if r, ok := t.cat.Restaurant(v.RestaurantID); ok {
				km += haversineKm(from.Latitude, from.Longitude, r.Location.Latitude, r.Location.Longitude)
				from = ordersapi.LatLon{Latitude: r.Location.Latitude, Longitude: r.Location.Longitude}
			}
		}
		km += haversineKm(from.Latitude, from.Longitude, v.DeliveryLocation.Latitude, v.DeliveryLocation.Longitude)
	}
	speed := ordersapi.TrackingDefaultSpeedKmh
	if f.fix.SpeedKmh != nil && *f.fix.SpeedKmh > 5 {
		speed = *f.fix.SpeedKmh
	}
	travel := time.Duration(km / speed * float64(time.Hour) / t.timeScale)
	return &ordersapi.DriverTracking{
		DriverID: driverID, Latitude: f.fix.Latitude, Longitude: f.fix.Longitude, SpeedKmh: f.fix.SpeedKmh, Heading: f.fix.Heading, AccuracyM: f.fix.AccuracyM,
		At: f.fix.RecordedAt, DistanceKm: math.Round(km*1000) / 1000, EtaAt: f.fix.RecordedAt.Add(travel).UTC(), Seq: f.seq,
	}
}

func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dLat, dLon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}
