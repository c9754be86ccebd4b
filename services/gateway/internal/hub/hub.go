// Package hub fans the order read model's change notifications out to the
// gateway's SSE clients: one Redis subscription per gateway process, any
// number of watchers per order. A watcher keeps only the newest snapshot
// (each is the whole order), so a slow client never blocks the others and
// never misses the latest state.
package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/redis/go-redis/v9"
)

// Hub distributes order notifications.
type Hub struct {
	rdb      *redis.Client
	keyspace string
	log      *slog.Logger

	mu       sync.Mutex
	watchers map[string]map[*Watcher]struct{} // by order id
	rwatch   map[string]map[*Watcher]struct{} // by restaurant id
	dwatch   map[string]map[*Watcher]struct{} // by driver id (positions)
	count    atomic.Int64
	ready    chan struct{}
	once     sync.Once

	// seen holds the newest version announced of each recently changed
	// order, so WaitFor can tell that a command's result is already in
	// the read model without reading it back from Redis.
	seen recentVersions
	// waitTick is how often WaitFor reads the read model while no
	// notification comes (a subscription that is reconnecting).
	waitTick time.Duration
}

// New returns a hub for the order read model in keyspace.
func New(rdb *redis.Client, keyspace string, log *slog.Logger) *Hub {
	return &Hub{rdb: rdb, keyspace: keyspace, log: log, watchers: map[string]map[*Watcher]struct{}{}, rwatch: map[string]map[*Watcher]struct{}{}, dwatch: map[string]map[*Watcher]struct{}{}, ready: make(chan struct{}), waitTick: 50 * time.Millisecond}
}

// Watcher receives the snapshots of one order.
type Watcher struct {
	orderID string
	c       chan struct{}
	mu      sync.Mutex
	latest  *ordersapi.Notification
	resync  bool
	// versionOnly marks a watcher that reads only Seq (WaitFor): the hub
	// decodes an order's snapshot only when some other watcher needs it.
	versionOnly bool
}

// C signals that Latest has something new.
func (w *Watcher) C() <-chan struct{} { return w.c }

// Latest returns the newest notification, and whether the watcher must
// re-read the order from Redis (notifications may have been missed while
// the hub's subscription was reconnecting).
func (w *Watcher) Latest() (n *ordersapi.Notification, resync bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, resync = w.latest, w.resync
	w.latest, w.resync = nil, false
	return n, resync
}

func (w *Watcher) offer(n *ordersapi.Notification, resync bool) {
	w.mu.Lock()
	if n != nil && (w.latest == nil || n.Seq > w.latest.Seq) {
		w.latest = n
	}
	w.resync = w.resync || resync
	w.mu.Unlock()
	select {
	case w.c <- struct{}{}:
	default:
	}
}

// Watch registers a watcher for an order. Call the returned function to stop.
func (h *Hub) Watch(orderID string) (*Watcher, func()) {
	return h.watch(h.watchers, orderID)
}

// WatchRestaurant registers a watcher signalled on any change of any read
// model concerning the restaurant (orders, kitchen, drivers, stock). It
// carries no snapshot: re-read what you show.
func (h *Hub) WatchRestaurant(restaurantID string) (*Watcher, func()) {
	return h.watch(h.rwatch, restaurantID)
}

// WatchDriver registers a watcher signalled whenever the driver's position
// changes (re-read it from the positions read model).
func (h *Hub) WatchDriver(driverID string) (*Watcher, func()) {
	return h.watch(h.dwatch, driverID)
}

func (h *Hub) watch(index map[string]map[*Watcher]struct{}, key string) (*Watcher, func()) {
	return h.add(index, &Watcher{orderID: key, c: make(chan struct{}, 1)})
}

func (h *Hub) add(index map[string]map[*Watcher]struct{}, w *Watcher) (*Watcher, func()) {
	key := w.orderID
	h.mu.Lock()
	set := index[key]
	if set == nil {
		set = map[*Watcher]struct{}{}
		index[key] = set
	}
	set[w] = struct{}{}
	h.mu.Unlock()
	h.count.Add(1)
	return w, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if set, ok := index[key]; ok {
			if _, ok := set[w]; ok {
				delete(set, w)
				h.count.Add(-1)
			}
			if len(set) == 0 {
				delete(index, key)
			}
		}
	}
}

// Watchers returns the number of registered watchers.
func (h *Hub) Watchers() int64 { return h.count.Load() }

// Ready is closed once the hub's subscription is active.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Run holds the Redis subscription until ctx ends. After a reconnect it
// tells every watcher to resync from Redis.
func (h *Hub) Run(ctx context.Context) error {
	// One pattern subscription covers every read model's channel.
	ps := h.rdb.PSubscribe(ctx, h.keyspace+"notify:*")
	// Receive does not return on cancellation while it waits for a
	// message; closing the subscription does.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	defer ps.Close()
	subscribed := 0
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			h.seen.interrupted()
			h.log.Warn("notification subscription interrupted", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			subscribed++
			h.seen.subscribed()
			if subscribed == 1 {
				h.once.Do(func() { close(h.ready) })
			} else {
				h.log.Info("notification subscription restored; resyncing watchers")
				h.broadcastResync()
			}
		case *redis.Message:
			if m.Channel == ordersapi.Channel(h.keyspace) {
				n, rid, err := decodeNotificationHead([]byte(m.Payload))
				if err != nil {
					h.log.Warn("bad order notification", "err", err)
					continue
				}
				h.seen.note(n.OrderID, n.Seq)
				if err := h.dispatch(&n); err != nil {
					h.log.Warn("bad order notification", "err", err)
					continue
				}
				if !n.Tracking { // a position alone changes nothing restaurant-wide
					h.signalRestaurant(rid)
				}
				continue
			}
			// Only the positions channel concerns a driver; the other
			// read models name their restaurant, near the start of the
			// payload, which routeOf reads without decoding the rest.
			rid, did := routeOf([]byte(m.Payload), strings.HasSuffix(m.Channel, positionsSuffix))
			if rid != "" {
				h.signalRestaurant(rid)
			}
			if did != "" {
				h.signal(h.dwatch, did)
			}
		}
	}
}

// dispatch offers an order notification to the order's watchers. It
// decodes the order's snapshot only if a watcher reads more than the
// version: a placement's read-your-writes wait does not.
func (h *Hub) dispatch(n *ordersapi.Notification) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.watchers[n.OrderID]
	for w := range set {
		if !w.versionOnly {
			if err := codec.Unmarshal(n.OrderJSON, &n.Order); err != nil {
				return err
			}
			break
		}
	}
	for w := range set {
		w.offer(n, false)
	}
	return nil
}

func (h *Hub) signalRestaurant(rid string) { h.signal(h.rwatch, rid) }

func (h *Hub) signal(index map[string]map[*Watcher]struct{}, key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range index[key] {
		w.offer(nil, false)
	}
}

func (h *Hub) broadcastResync() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, index := range []map[string]map[*Watcher]struct{}{h.watchers, h.rwatch, h.dwatch} {
		for _, set := range index {
			for w := range set {
				w.offer(nil, true)
			}
		}
	}
}

// decodeNotificationHead decodes what the hub routes an order
// notification by: the order, its version and restaurant. The snapshot
// stays encoded in OrderJSON, with Order left zero.
func decodeNotificationHead(payload []byte) (n ordersapi.Notification, restaurantID string, err error) {
	var wire struct {
		OrderID  string          `json:"orderId"`
		Seq      uint64          `json:"seq"`
		Order    json.RawMessage `json:"order"`
		Tracking bool            `json:"tracking"`
	}
	if err := codec.Unmarshal(payload, &wire); err != nil {
		return n, "", err
	}
	var head struct {
		RestaurantID string `json:"restaurantId"`
	}
	if err := codec.Unmarshal(wire.Order, &head); err != nil {
		return n, "", err
	}
	return ordersapi.Notification{OrderID: wire.OrderID, Seq: wire.Seq, Tracking: wire.Tracking, OrderJSON: wire.Order}, head.RestaurantID, nil
}

// positionsSuffix ends the channel of the drivers' positions read model.
var positionsSuffix = "notify:" + driversapi.PositionsModel

// routeOf finds whom a read model's notification concerns: its restaurant
// (a top-level "restaurantId", else the first nested object's one) and,
// with positions set, the driver of a position ("position.driverId").
//
// Notifications can be large (an order notification carries the order)
// and all of them pass through the hub's one goroutine, so routeOf reads
// the payload as a token stream and stops at the first top-level
// restaurant id instead of decoding the whole document.
func routeOf(payload []byte, positions bool) (rid, did string) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", ""
	}
	var nested string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nested, did
		}
		key, _ := tok.(string)
		switch {
		case key == "restaurantId":
			var s string
			if dec.Decode(&s) != nil {
				return nested, did
			}
			if s != "" && (!positions || did != "") {
				return s, did
			}
			if s != "" {
				rid = s
			}
		case positions && key == "position":
			var p struct {
				DriverID     string `json:"driverId"`
				RestaurantID string `json:"restaurantId"`
			}
			if dec.Decode(&p) != nil {
				return firstOf(rid, nested), did
			}
			did = p.DriverID
			if nested == "" {
				nested = p.RestaurantID
			}
		default:
			var raw json.RawMessage
			if dec.Decode(&raw) != nil {
				return firstOf(rid, nested), did
			}
			if nested == "" && len(raw) > 0 && raw[0] == '{' {
				var inner struct {
					RestaurantID string `json:"restaurantId"`
				}
				if codec.Unmarshal(raw, &inner) == nil {
					nested = inner.RestaurantID
				}
			}
		}
	}
	return firstOf(rid, nested), did
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ErrNotFound reports an order the read model does not have.
var ErrNotFound = errors.New("order not found in the read model")

// Load reads an order's view from Redis.
func (h *Hub) Load(ctx context.Context, orderID string) (ordersapi.OrderView, []byte, error) {
	raw, err := h.rdb.Get(ctx, ordersapi.OrderKey(h.keyspace, orderID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return ordersapi.OrderView{}, nil, ErrNotFound
	}
	if err != nil {
		return ordersapi.OrderView{}, nil, err
	}
	var v ordersapi.OrderView
	if err := codec.Unmarshal(raw, &v); err != nil {
		return ordersapi.OrderView{}, nil, err
	}
	return v, raw, nil
}

// Mark records where the hub's notifications stand. Take it before sending
// a command and pass it to WaitFor: every notification of the command's
// result arrives after it.
type Mark struct {
	epoch, rotations uint64
	up               bool
}

// Mark returns the current mark.
func (h *Hub) Mark() Mark { return h.seen.mark() }

// WaitFor waits until the order read model holds version seq of the order
// or later: the read-your-writes wait of a command sent after mark.
//
// The hub remembers the newest version announced of each recently changed
// order, so a wait whose result was announced before it started returns
// without reading the order back from Redis. It reads the read model when
// the memory cannot vouch for the order: the subscription was down or
// restored since mark, or the memory dropped what it had then.
func (h *Hub) WaitFor(ctx context.Context, mark Mark, orderID string, seq uint64) error {
	w, stop := h.add(h.watchers, &Watcher{orderID: orderID, c: make(chan struct{}, 1), versionOnly: true})
	defer stop()
	// The watcher is registered: from now on a notification wakes the
	// wait.
	v, complete := h.seen.get(orderID, mark)
	if v >= seq {
		return nil
	}
	load := !complete
	// The slow tick covers a subscription that is (re)connecting.
	tick := time.NewTicker(h.waitTick)
	defer tick.Stop()
	for {
		if load {
			v, _, err := h.Load(ctx, orderID)
			if err == nil && v.Version >= seq {
				return nil
			}
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			load = true
		case <-w.C():
			n, resync := w.Latest()
			if n != nil && n.Seq >= seq && !resync {
				return nil
			}
			load = resync
		}
	}
}

// recentVersions remembers the newest version announced of each order
// changed recently: two generations of at most recentOrders orders each,
// the older dropped when the newer fills up.
type recentVersions struct {
	mu        sync.Mutex
	cur, prev map[string]uint64
	rotations uint64
	// epoch counts the subscription's ups and downs; up is whether it is
	// receiving now.
	epoch uint64
	up    bool
}

const recentOrders = 16384

// subscribed and interrupted follow the subscription: a notification
// sent while it was down never arrives, so the memory starts again.
func (r *recentVersions) subscribed()  { r.set(true) }
func (r *recentVersions) interrupted() { r.set(false) }

func (r *recentVersions) set(up bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur, r.prev = nil, nil
	r.epoch++
	r.up = up
}

func (r *recentVersions) mark() Mark {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Mark{epoch: r.epoch, rotations: r.rotations, up: r.up}
}

func (r *recentVersions) note(orderID string, seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil {
		r.cur = make(map[string]uint64, recentOrders)
	}
	old, ok := r.cur[orderID]
	if seq <= old {
		return
	}
	if !ok && len(r.cur) >= recentOrders {
		r.prev, r.cur = r.cur, make(map[string]uint64, recentOrders)
		r.rotations++
	}
	r.cur[orderID] = seq
}

// get returns the newest version announced of the order, and whether
// that covers every announcement since mark: the subscription has been up
// throughout, and at most one generation has begun since (so the older
// one still holds everything noted after mark).
func (r *recentVersions) get(orderID string, mark Mark) (seq uint64, complete bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq = max(r.cur[orderID], r.prev[orderID])
	return seq, mark.up && r.up && mark.epoch == r.epoch && r.rotations-mark.rotations <= 1
}
