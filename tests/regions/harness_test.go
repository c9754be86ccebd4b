package regions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/pkg/region"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// The regions of the tests and their restaurants (from the seeded catalogue).
const (
	west = "west"
	east = "east"
)

var topology = region.Topology{Regions: []region.Region{
	{Name: west, Servers: 1, Restaurants: []string{"downtown", "pearl"}},
	{Name: east, Servers: 1, Restaurants: []string{"hawthorne"}},
}}

// world is two regions of one supercluster, each with its own orders
// service, and the global dashboard projected from the GLOBAL account.
type world struct {
	t       testing.TB
	sc      *region.Supercluster
	proxies map[string]*linkProxy // by the region they lead to
	rdb     *redis.Client
	prefix  string
	regions map[string]*regionRT
	global  *projection.Runtime
	watch   *region.SourceWatch
	gjs     jetstream.JetStream
}

// regionRT is what runs in one region.
type regionRT struct {
	name     string
	keyspace string
	nc       *nats.Conn
	js       jetstream.JetStream
	router   *region.Router
	svc      *orders.Service
}

// quietLog discards, unless PIZZA_REGIONS_LOG=1 (for chasing a failure).
func quietLog() *slog.Logger {
	if os.Getenv("PIZZA_REGIONS_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// regionalCatalog keeps only the restaurants living in the region, so a
// command misrouted to another region is refused as an unknown restaurant.
func regionalCatalog(t testing.TB, name string) *catalog.Catalog {
	t.Helper()
	r, _ := topology.Region(name)
	full := catalog.Default()
	sub := *full
	sub.Restaurants = nil
	for _, rs := range full.Restaurants {
		if slices.Contains(r.Restaurants, rs.ID) {
			sub.Restaurants = append(sub.Restaurants, rs)
		}
	}
	b, err := json.Marshal(sub)
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalog.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startWorld starts the supercluster, provisions both regions' streams and
// the GLOBAL stream; with services, it also runs each region's orders
// service and the global dashboard projector.
func startWorld(t testing.TB, services bool) *world {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	plan, err := region.NewPlan(topology, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	plan.MaxMemoryStore = 64 << 20
	plan.MaxFileStore = 1 << 30
	if err := plan.FreeAddrs("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, proxies: map[string]*linkProxy{}, regions: map[string]*regionRT{}}
	// Every gateway connection between the regions runs through a proxy:
	// each region advertises its proxy, and the others dial it.
	for _, r := range topology.Names() {
		gw := plan.Servers[r][0]
		p := newLinkProxy(t, fmt.Sprintf("%s:%d", gw.Host, gw.GatewayPort))
		w.proxies[r] = p
		plan.GatewayAdvertise[r] = p.Addr()
	}
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	w.sc, err = region.StartSupercluster(sctx, plan, func(name string, i int, o *server.Options) {
		// PIZZA_REGIONS_NATS_LOG=<dir> keeps each server's debug log there,
		// for chasing a failure of the link-cut tests.
		if dir := os.Getenv("PIZZA_REGIONS_NATS_LOG"); dir != "" {
			o.LogFile, o.Debug, o.Logtime = filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, i)), true, true
			return
		}
		o.NoLog = true
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.sc.Shutdown)
	w.rdb, w.prefix = testkit.Redis(t)

	for _, name := range topology.Names() {
		rt := &regionRT{name: name, keyspace: w.prefix + name + ":"}
		if rt.nc, err = w.sc.Connect(name, nats.MaxReconnects(-1)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rt.nc.Close)
		rt.js = testkit.JetStream(t, rt.nc)
		if rt.router, err = region.NewRouter(topology, name); err != nil {
			t.Fatal(err)
		}
		// The region's streams live on its own servers.
		streams := eventstore.StreamOptions{Placement: &jetstream.Placement{Tags: []string{region.ServerTag(name)}}}
		if err := eventstore.Provision(ctx, rt.js, streams, events.DomainContexts()...); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := region.ExportOrders(ctx, rt.js, name); err != nil {
			t.Fatal(err)
		}
		w.regions[name] = rt
		if !services {
			continue
		}
		rt.svc, err = orders.New(orders.Config{Keyspace: rt.keyspace, Streams: streams},
			orders.Deps{NC: rt.nc, JS: rt.js, Redis: w.rdb, Catalog: regionalCatalog(t, name), Log: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.svc.Start(ctx); err != nil {
			t.Fatalf("%s orders: %v", name, err)
		}
		t.Cleanup(rt.svc.Stop)
	}

	gnc, err := w.sc.ConnectGlobal(nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gnc.Close)
	w.gjs = testkit.JetStream(t, gnc)
	if err := region.ProvisionGlobal(ctx, w.gjs, topology, region.GlobalOptions{}); err != nil {
		t.Fatal(err)
	}
	if !services {
		return w
	}
	w.global = projection.New(w.gjs, w.rdb, events.NewRegistry(), region.GlobalDashboard{},
		projection.Options{Keyspace: w.prefix + "global:", Logger: quietLog(), LagInterval: -1})
	// The watch the global view runs in production (there it re-seeds a
	// source stalled for 3 minutes; here after 45 s, within the test's
	// wait); a failure message includes what it saw last.
	w.watch = &region.SourceWatch{JS: w.gjs, Topology: topology, Interval: time.Second, Stall: 10 * time.Second, Reseed: 45 * time.Second, Log: quietLog()}
	gctx, gcancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { defer func() { done <- struct{}{} }(); _ = w.global.Run(gctx) }()
	go func() { defer func() { done <- struct{}{} }(); _ = w.watch.Run(gctx) }()
	t.Cleanup(func() { gcancel(); <-done; <-done })

	for _, rt := range w.regions {
		testkit.Eventually(t, 30*time.Second, func() error { return rt.svc.Ready(ctx) })
	}
	return w
}

// place sends a place command through a region's connection, routed by
// the region's router to the restaurant's home region.
func (w *world) place(via, restaurant, key string, timeout time.Duration) (ordersapi.CommandReply, error) {
	rt := w.regions[via]
	subject, err := rt.router.Subject(restaurant, ordersapi.SubjectPlace)
	if err != nil {
		return ordersapi.CommandReply{}, err
	}
	lat, lon := 45.52, -122.68
	cmd := ordersapi.PlaceCommand{
		Request: ordersapi.PlaceOrderRequest{
			CustomerID: "c-" + via, RestaurantID: restaurant, PaymentMethod: "Cash",
			Items:   []ordersapi.ItemRequest{{PizzaType: "Margherita", Size: "Large", Quantity: 1}},
			Address: &ordersapi.Address{Street: "1 Main St", City: "Portland", Coordinates: &ordersapi.Coordinates{Latitude: &lat, Longitude: &lon}},
		},
		IdempotencyKey: key,
	}
	data, err := json.Marshal(cmd)
	if err != nil {
		return ordersapi.CommandReply{}, err
	}
	msg, err := rt.nc.Request(subject, data, timeout)
	if err != nil {
		return ordersapi.CommandReply{}, fmt.Errorf("%s: %w", subject, err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		return ordersapi.CommandReply{}, fmt.Errorf("%s: error %s: %s", subject, code, msg.Data)
	}
	var reply ordersapi.CommandReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return ordersapi.CommandReply{}, fmt.Errorf("%s: reply %q: %w", subject, msg.Data, err)
	}
	return reply, nil
}

// publishEvents stores n events "event <i>" on o<i> (i from from) in the
// region's ORDERS, and returns the last one's sequence.
func (w *world) publishEvents(ctx context.Context, t testing.TB, name string, from, n int) uint64 {
	t.Helper()
	var last uint64
	for i := from; i < from+n; i++ {
		ack, err := w.regions[name].js.Publish(ctx, events.Orders.Subject(fmt.Sprintf("o%d", i)), fmt.Appendf(nil, "event %d", i))
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
	}
	return last
}

// hasOrder reports whether the region's ORDERS stream holds events of the order.
func (w *world) hasOrder(ctx context.Context, name, orderID string) (bool, error) {
	st, err := w.regions[name].js.Stream(ctx, events.Orders.Stream)
	if err != nil {
		return false, err
	}
	_, err = st.GetLastMsgForSubject(ctx, events.Orders.Subject(orderID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	return err == nil, err
}

// regionCounts is the truth of one region: its orders per status, summed
// from the region's own order dashboards (built from its own log).
func (w *world) regionCounts(ctx context.Context, name string) (map[string]int64, error) {
	r, _ := topology.Region(name)
	out := map[string]int64{}
	for _, id := range r.Restaurants {
		raw, err := w.rdb.Get(ctx, ordersapi.DashboardKey(w.regions[name].keyspace, id)).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var d ordersapi.DashboardOrders
		if err := json.Unmarshal([]byte(raw), &d); err != nil {
			return nil, err
		}
		for s, n := range d.OrdersByStatus {
			if n != 0 {
				out[s] += int64(n)
			}
		}
	}
	return out, nil
}

// ordersInLog counts the distinct orders in a region's ORDERS stream.
func (w *world) ordersInLog(ctx context.Context, name string) (int64, error) {
	st, err := w.regions[name].js.Stream(ctx, events.Orders.Stream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return int64(info.State.NumSubjects), nil
}

func (w *world) view(ctx context.Context) (region.GlobalView, error) {
	return region.ReadGlobalView(ctx, w.rdb, w.prefix+"global:", topology.Names())
}

// cut severs the link between the regions and waits until no server has a
// gateway left.
func (w *world) cut(t testing.TB) {
	t.Helper()
	for _, p := range w.proxies {
		p.Cut()
	}
	testkit.Eventually(t, 20*time.Second, func() error {
		for _, name := range topology.Names() {
			s := w.sc.Server(name, 0)
			gz, err := s.Gatewayz(nil)
			if err != nil {
				return err
			}
			n := 0
			for _, in := range gz.InboundGateways {
				n += len(in)
			}
			if out := s.NumOutboundGateways(); out+n != 0 {
				return fmt.Errorf("%s still has %d outbound and %d inbound gateway connections", name, out, n)
			}
		}
		return nil
	})
}

// restore heals the link and waits until the gateways are back.
func (w *world) restore(t testing.TB) {
	t.Helper()
	for _, p := range w.proxies {
		p.Restore()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.sc.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
}

func equalCounts(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func key(prefix string, i int) string { return prefix + "-" + strconv.Itoa(i) }
