// Package hub fans the order read model's change notifications out to the
// gateway's SSE clients: one Redis subscription per gateway process, any
// number of watchers per order. A watcher keeps only the newest snapshot
// (each is the whole order), so a slow client never blocks the others and
// never misses the latest state.
package hub

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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
				var n ordersapi.Notification
				if err := json.Unmarshal([]byte(m.Payload), &n); err != nil {
					h.log.Warn("bad order notification", "err", err)
					continue
				}
				h.dispatch(&n)
				h.signalRestaurant(n.Order.RestaurantID)
				continue
			}
			if rid := restaurantOf([]byte(m.Payload)); rid != "" {
				h.signalRestaurant(rid)
			}
			if did := driverOf([]byte(m.Payload)); did != "" {
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

// driverOf finds the driver a position notification concerns.
func driverOf(payload []byte) string {
	var n struct {
		Position struct {
			DriverID string `json:"driverId"`
		} `json:"position"`
	}
	if json.Unmarshal(payload, &n) != nil {
		return ""
	}
	return n.Position.DriverID
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

// restaurantOf finds the restaurant a read model's notification concerns:
// a top-level "restaurantId", or one in a nested object.
func restaurantOf(payload []byte) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(payload, &top) != nil {
		return ""
	}
	var rid string
	if raw, ok := top["restaurantId"]; ok && json.Unmarshal(raw, &rid) == nil && rid != "" {
		return rid
	}
	for _, raw := range top {
		var inner struct {
			RestaurantID string `json:"restaurantId"`
		}
		if len(raw) > 0 && raw[0] == '{' && json.Unmarshal(raw, &inner) == nil && inner.RestaurantID != "" {
			return inner.RestaurantID
		}
	}
	return ""
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
