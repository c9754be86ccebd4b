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
}

// New returns a hub for the order read model in keyspace.
func New(rdb *redis.Client, keyspace string, log *slog.Logger) *Hub {
	return &Hub{rdb: rdb, keyspace: keyspace, log: log, watchers: map[string]map[*Watcher]struct{}{}, rwatch: map[string]map[*Watcher]struct{}{}, dwatch: map[string]map[*Watcher]struct{}{}, ready: make(chan struct{})}
}

// Watcher receives the snapshots of one order.
type Watcher struct {
	orderID string
	c       chan struct{}
	mu      sync.Mutex
	latest  *ordersapi.Notification
	resync  bool
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
	w := &Watcher{orderID: key, c: make(chan struct{}, 1)}
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
			if subscribed == 1 {
				h.once.Do(func() { close(h.ready) })
			} else {
				h.log.Info("notification subscription restored; resyncing watchers")
				h.broadcastResync()
			}
		case *redis.Message:
			if m.Channel == ordersapi.Channel(h.keyspace) {
				n, err := decodeNotification([]byte(m.Payload))
				if err != nil {
					h.log.Warn("bad order notification", "err", err)
					continue
				}
				h.dispatch(&n)
				if !n.Tracking { // a position alone changes nothing restaurant-wide
					h.signalRestaurant(n.Order.RestaurantID)
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

func (h *Hub) dispatch(n *ordersapi.Notification) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers[n.OrderID] {
		w.offer(n, false)
	}
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

// decodeNotification decodes an order notification and keeps the order's
// encoding, which every tracking stream of the order sends as it is.
func decodeNotification(payload []byte) (ordersapi.Notification, error) {
	var wire struct {
		OrderID  string          `json:"orderId"`
		Seq      uint64          `json:"seq"`
		Order    json.RawMessage `json:"order"`
		Tracking bool            `json:"tracking"`
	}
	if err := json.Unmarshal(payload, &wire); err != nil {
		return ordersapi.Notification{}, err
	}
	n := ordersapi.Notification{OrderID: wire.OrderID, Seq: wire.Seq, Tracking: wire.Tracking, OrderJSON: wire.Order}
	if err := json.Unmarshal(wire.Order, &n.Order); err != nil {
		return ordersapi.Notification{}, err
	}
	return n, nil
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
				if json.Unmarshal(raw, &inner) == nil {
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
	if err := json.Unmarshal(raw, &v); err != nil {
		return ordersapi.OrderView{}, nil, err
	}
	return v, raw, nil
}

// WaitFor blocks until the read model holds the order at version seq or
// later (read-your-writes after a command), or ctx ends.
func (h *Hub) WaitFor(ctx context.Context, orderID string, seq uint64) error {
	w, stop := h.Watch(orderID)
	defer stop()
	// Notifications wake the wait at once; the slow tick covers a
	// subscription that is still (re)connecting.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		v, _, err := h.Load(ctx, orderID)
		if err == nil && v.Version >= seq {
			return nil
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		case <-w.C():
			if n, resync := w.Latest(); n != nil && n.Seq >= seq && !resync {
				return nil
			}
		}
	}
}
