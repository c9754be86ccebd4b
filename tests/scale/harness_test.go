package scale

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/drivers"
	"github.com/awesome-pizza/pizza/services/gateway"
	"github.com/awesome-pizza/pizza/services/inventory"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
	"github.com/awesome-pizza/pizza/services/kitchen"
	"github.com/awesome-pizza/pizza/services/orders"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// partitions is the partition count of every consumer group when more
// than one instance of each service runs (the default, 8).
const partitions = 8

// restaurants of the default catalogue the load spreads over.
var restaurants = []string{"downtown", "pearl", "hawthorne"}

// world is one platform: n instances of orders, inventory, drivers and
// kitchen and n gateways, all on one embedded nats-server (JetStream on
// disk) and the real Redis under a keyspace of its own.
//
// With n > 1 every service runs scaled out (eventstore.Scale, ADR 0015):
// each durable consumer is a partitioned group, so each upstream
// aggregate's events are handled in order by one instance at a time; each
// read model is written by the instance holding its lease (ADR 0018); the
// kitchen's scheduler runs in the instance that leads its role (ADR 0012).
// The commands are micro endpoints in one queue group per service, so they
// spread over the instances. The mqttbridge is not part of order intake
// and is not started.
type world struct {
	tb       testing.TB
	n        int
	ns       *server.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	rdb      *redis.Client
	keyspace string
	cat      *catalog.Catalog
	logs     *logTally

	orders     []*orders.Service
	inventory  []*inventory.Service
	invMetrics []*prometheus.Registry
	drivers    []*drivers.Service
	kitchen    []*kitchen.Service
	gateways   []string // base URLs
	gwMetrics  []*prometheus.Registry
	instances  []instance // of the services, in start order

	stops     []func() // in start order; run in reverse
	closeOnce sync.Once
}

// worldOptions tune a world: the services' time scale (1: real time)
// and, scaled out, how long a crashed instance keeps its partitions and
// roles (0: the default, 10 s).
type worldOptions struct {
	timeScale float64
	leaseTTL  time.Duration
}

// startWorld starts a platform with n instances of each service and n
// gateways, in real time, and waits until every part is ready.
func startWorld(tb testing.TB, n int) *world {
	return startWorldWith(tb, n, worldOptions{timeScale: 1})
}

// instance is one service instance's own connections; closing both is
// how a test crashes it (no graceful release of anything it holds).
type instance struct {
	name string
	nc   *nats.Conn
	rdb  *redis.Client
}

// crash cuts the instance off from NATS and Redis at once.
func (i instance) crash() {
	i.nc.Close()
	_ = i.rdb.Close()
}

func startWorldWith(tb testing.TB, n int, o worldOptions) *world {
	tb.Helper()
	timeScale, leaseTTL := o.timeScale, o.leaseTTL
	w := &world{tb: tb, n: n, cat: catalog.Default(), logs: newLogTally()}
	w.ns = testkit.RunJetStream(tb) // a temporary store directory: file storage
	w.nc = testkit.Connect(tb, w.ns)
	w.js = testkit.JetStream(tb, w.nc)
	w.rdb, w.keyspace = testkit.Redis(tb)
	tb.Cleanup(w.close)

	ctx, cancel := context.WithCancel(context.Background())
	w.stops = append(w.stops, cancel)
	streams := eventstore.StreamOptions{Storage: jetstream.FileStorage}
	// Provisioned once up front, so the instances starting after it find
	// the streams instead of racing to create them.
	if err := eventstore.Provision(ctx, w.js, streams, events.DomainContexts()...); err != nil {
		tb.Fatal(err)
	}
	log := slog.New(w.logs.handler())

	scale := func(service string, i int) eventstore.Scale {
		if n == 1 {
			return eventstore.Scale{}
		}
		return eventstore.Scale{Partitions: partitions, InstanceID: fmt.Sprintf("%s-%d", service, i), LeaseTTL: leaseTTL}
	}
	for i := range n {
		nc, js, rdb := w.connections()
		svc, err := orders.New(orders.Config{Keyspace: w.keyspace, Streams: streams, TimeScale: timeScale, Scale: scale("orders", i)},
			orders.Deps{NC: nc, JS: js, Redis: rdb, Catalog: w.cat, Log: log.With("instance", fmt.Sprintf("orders-%d", i)), Metrics: prometheus.NewRegistry()})
		if err != nil {
			tb.Fatal(err)
		}
		w.start(ctx, "orders", svc)
		w.orders = append(w.orders, svc)
		w.instances = append(w.instances, instance{name: fmt.Sprintf("orders-%d", i), nc: nc, rdb: rdb})
	}
	for i := range n {
		nc, js, rdb := w.connections()
		reg := prometheus.NewRegistry()
		svc, err := inventory.New(inventory.Config{Keyspace: w.keyspace, Streams: streams, TimeScale: timeScale, Scale: scale("inventory", i)},
			inventory.Deps{NC: nc, JS: js, Redis: rdb, Catalog: w.cat, Log: log.With("instance", fmt.Sprintf("inventory-%d", i)), Metrics: reg})
		if err != nil {
			tb.Fatal(err)
		}
		w.start(ctx, "inventory", svc)
		w.inventory = append(w.inventory, svc)
		w.invMetrics = append(w.invMetrics, reg)
		w.instances = append(w.instances, instance{name: fmt.Sprintf("inventory-%d", i), nc: nc, rdb: rdb})
	}
	for i := range n {
		nc, js, rdb := w.connections()
		svc, err := drivers.New(drivers.Config{Keyspace: w.keyspace, Streams: streams, TimeScale: timeScale, Scale: scale("drivers", i)},
			drivers.Deps{NC: nc, JS: js, Redis: rdb, Catalog: w.cat, Log: log.With("instance", fmt.Sprintf("drivers-%d", i)), Metrics: prometheus.NewRegistry()})
		if err != nil {
			tb.Fatal(err)
		}
		w.start(ctx, "drivers", svc)
		w.drivers = append(w.drivers, svc)
		w.instances = append(w.instances, instance{name: fmt.Sprintf("drivers-%d", i), nc: nc, rdb: rdb})
	}
	for i := range n {
		nc, js, rdb := w.connections()
		svc, err := kitchen.New(kitchen.Config{Keyspace: w.keyspace, Streams: streams, TimeScale: timeScale, QCFailureRate: kitchen.NoQCFailures, Seed: 1, Scale: scale("kitchen", i)},
			kitchen.Deps{NC: nc, JS: js, Redis: rdb, Catalog: w.cat, Log: log.With("instance", fmt.Sprintf("kitchen-%d", i)), Metrics: prometheus.NewRegistry()})
		if err != nil {
			tb.Fatal(err)
		}
		w.start(ctx, "kitchen", svc)
		w.kitchen = append(w.kitchen, svc)
		w.instances = append(w.instances, instance{name: fmt.Sprintf("kitchen-%d", i), nc: nc, rdb: rdb})
	}
	for i := range n {
		w.gateways = append(w.gateways, w.startGateway(ctx, log.With("instance", fmt.Sprintf("gateway-%d", i))))
	}

	testkit.Eventually(tb, 60*time.Second, func() error {
		var errs []error
		for i, s := range w.orders {
			errs = append(errs, named(fmt.Sprintf("orders-%d", i), s.Ready(ctx)))
		}
		for i, s := range w.inventory {
			errs = append(errs, named(fmt.Sprintf("inventory-%d", i), s.Ready(ctx)))
		}
		for i, s := range w.drivers {
			errs = append(errs, named(fmt.Sprintf("drivers-%d", i), s.Ready(ctx)))
		}
		for i, s := range w.kitchen {
			errs = append(errs, named(fmt.Sprintf("kitchen-%d", i), s.Ready(ctx)))
		}
		return errors.Join(errs...)
	})
	if n > 1 {
		// The intake starts once the instances share the partitions, not
		// during the first assignment rounds.
		testkit.Eventually(tb, 30*time.Second, w.partitionsShared)
	}
	return w
}

func named(name string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// connections opens what one instance gets for itself: a NATS connection,
// its JetStream context and a Redis client, all closed with the world.
func (w *world) connections() (*nats.Conn, jetstream.JetStream, *redis.Client) {
	w.tb.Helper()
	nc := testkit.Connect(w.tb, w.ns)
	js := testkit.JetStream(w.tb, nc)
	opt, err := redis.ParseURL(testkit.RedisURL())
	if err != nil {
		w.tb.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	w.stops = append(w.stops, func() { _ = rdb.Close(); nc.Close() })
	return nc, js, rdb
}

type service interface {
	Start(context.Context) error
	Stop()
}

func (w *world) start(ctx context.Context, name string, s service) {
	w.tb.Helper()
	if err := s.Start(ctx); err != nil {
		w.tb.Fatalf("%s: %v", name, err)
	}
	w.stops = append(w.stops, s.Stop)
}

// startGateway runs a gateway on its own listener and connections, with
// authentication off and a rate limit out of the way (every client of the
// load comes from 127.0.0.1), and returns its base URL.
func (w *world) startGateway(ctx context.Context, log *slog.Logger) string {
	w.tb.Helper()
	nc, js, rdb := w.connections()
	reg := prometheus.NewRegistry()
	w.gwMetrics = append(w.gwMetrics, reg)
	gw, err := gateway.New(gateway.Config{Keyspace: w.keyspace, TimeScale: 1, RatePerSecond: 1e6, RateBurst: 1e6},
		gateway.Deps{NC: nc, JS: js, Redis: rdb, Catalog: w.cat, Log: log, Metrics: reg})
	if err != nil {
		w.tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.tb.Fatal(err)
	}
	gctx, cancel := context.WithCancel(ctx)
	srv := &http.Server{Handler: gw.Handler(), ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = gw.Run(gctx) }()
	go func() { defer wg.Done(); _ = srv.Serve(l) }()
	w.stops = append(w.stops, func() {
		gw.CloseStreams()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
		cancel()
		wg.Wait()
	})
	select {
	case <-gw.Ready():
	case <-time.After(10 * time.Second):
		w.tb.Fatal("gateway notifications did not start within 10s")
	}
	return "http://" + l.Addr().String()
}

// close stops everything in the reverse order of start, then the server.
func (w *world) close() {
	w.closeOnce.Do(func() {
		for i := len(w.stops) - 1; i >= 0; i-- {
			w.stops[i]()
		}
		w.ns.Shutdown()
	})
}

// partitioned is a service instance with partitioned consumers.
type partitioned interface {
	Partitions() map[string][]int
}

func asPartitioned[S partitioned](services []S) []partitioned {
	out := make([]partitioned, len(services))
	for i, s := range services {
		out[i] = s
	}
	return out
}

// groups are the scaled services, with the number of durable consumers
// each runs.
func (w *world) groups() []struct {
	name     string
	members  []partitioned
	durables int
} {
	return []struct {
		name     string
		members  []partitioned
		durables int
	}{
		{"orders", asPartitioned(w.orders), 3},
		{"inventory", asPartitioned(w.inventory), 2},
		{"drivers", asPartitioned(w.drivers), 2},
		{"kitchen", asPartitioned(w.kitchen), 2},
	}
}

// partitionsShared reports whether, for every durable consumer of every
// scaled service, the instances own every partition between them, each
// some, none twice.
func (w *world) partitionsShared() error { return w.partitionsSharedBy(nil) }

// partitionsSharedBy is partitionsShared among the instances not in
// crashed (by name, e.g. "orders-1").
func (w *world) partitionsSharedBy(crashed map[string]bool) error {
	for _, g := range w.groups() {
		owners := map[string]map[int]int{} // durable -> partition -> instance
		for i, m := range g.members {
			if crashed[fmt.Sprintf("%s-%d", g.name, i)] {
				continue
			}
			for durable, ps := range m.Partitions() {
				if len(ps) == 0 {
					return fmt.Errorf("%s-%d owns no partition of %s yet", g.name, i, durable)
				}
				if owners[durable] == nil {
					owners[durable] = map[int]int{}
				}
				for _, p := range ps {
					if other, dup := owners[durable][p]; dup {
						return fmt.Errorf("%s: partition %d owned by %s-%d and %s-%d", durable, p, g.name, other, g.name, i)
					}
					owners[durable][p] = i
				}
			}
		}
		if len(owners) != g.durables {
			return fmt.Errorf("%s: %d partitioned durables, want %d", g.name, len(owners), g.durables)
		}
		for durable, ps := range owners {
			if len(ps) != partitions {
				return fmt.Errorf("%s: %d of %d partitions owned", durable, len(ps), partitions)
			}
		}
	}
	return nil
}

// partitionOwnership describes which inventory instance owns which
// partitions of inventory-orders.
func (w *world) partitionOwnership() string {
	var parts []string
	for i, s := range w.inventory {
		parts = append(parts, fmt.Sprintf("inventory-%d=%v", i, s.Partitions()[inventoryapi.DurableOrders]))
	}
	return strings.Join(parts, " ")
}

// inventoryHandled returns, per inventory instance, the events it handled
// (pizza_inventory_consumed_events_total, every consumer).
func (w *world) inventoryHandled() []float64 {
	out := make([]float64, len(w.invMetrics))
	for i, reg := range w.invMetrics {
		mfs, err := reg.Gather()
		if err != nil {
			w.tb.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "pizza_inventory_consumed_events_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				out[i] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// rywWait sums, over the gateways, the time commands waited for their
// read model (pizza_gateway_read_your_writes_wait_seconds) and the number
// of waits.
func (w *world) rywWait() (seconds float64, count uint64) {
	for _, reg := range w.gwMetrics {
		mfs, err := reg.Gather()
		if err != nil {
			w.tb.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "pizza_gateway_read_your_writes_wait_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				seconds += m.GetHistogram().GetSampleSum()
				count += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return seconds, count
}

// placeCounts asks every orders instance for its micro stats and returns,
// per instance id, the requests its place endpoint has handled.
func (w *world) placeCounts() map[string]int {
	w.tb.Helper()
	inbox := nats.NewInbox()
	sub, err := w.nc.SubscribeSync(inbox)
	if err != nil {
		w.tb.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	subject, err := micro.ControlSubject(micro.StatsVerb, ordersapi.ServiceName, "")
	if err != nil {
		w.tb.Fatal(err)
	}
	if err := w.nc.PublishRequest(subject, inbox, nil); err != nil {
		w.tb.Fatal(err)
	}
	out := map[string]int{}
	for len(out) < len(w.orders) {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			w.tb.Fatalf("micro stats: %d of %d orders instances answered: %v", len(out), len(w.orders), err)
		}
		var st micro.Stats
		if err := json.Unmarshal(msg.Data, &st); err != nil {
			w.tb.Fatal(err)
		}
		out[st.ID] = 0
		for _, ep := range st.Endpoints {
			if ep.Subject == ordersapi.SubjectPlace {
				out[st.ID] += ep.NumRequests
			}
		}
	}
	return out
}

// spread is the place commands each orders instance handled between two
// placeCounts, in the order of the instances' ids.
func spread(before, after map[string]int) []int {
	ids := make([]string, 0, len(after))
	for id := range after {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]int, 0, len(ids))
	for _, id := range ids {
		out = append(out, after[id]-before[id])
	}
	return out
}

// --- the load ---

// placed is the outcome of one order placed through a gateway.
type placed struct {
	orderID string
	gateway int
	// latency runs from sending the POST until the order is visible in
	// the read model: the reply when the gateway's read-your-writes wait
	// succeeded (Pizza-Read-Your-Writes: ok), else the first GET that
	// finds it.
	latency time.Duration
	// pending is set when the reply came before the read model showed
	// the order (the gateway's wait timed out).
	pending bool
}

// loadResult is a finished load.
type loadResult struct {
	orders  []placed
	elapsed time.Duration
}

// newHTTPClient returns a client keeping enough idle connections per
// gateway for every load client.
func newHTTPClient(clients int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 4 * clients, MaxIdleConnsPerHost: clients, IdleConnTimeout: time.Minute,
	}}
}

// load places count orders with the given number of concurrent clients,
// round-robin over the gateways (order i goes to gateway i mod n). Keys
// start with run, which must be unique within the world. Any failure
// (non-201 reply, order never visible) is returned: a load that needed
// retries would not measure intake.
func (w *world) load(ctx context.Context, hc *http.Client, run string, count, clients int) (loadResult, error) {
	res := loadResult{orders: make([]placed, count)}
	var next atomic.Int64
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= count {
					return
				}
				p, err := w.placeOne(ctx, hc, run, i)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				res.orders[i] = p
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res, errors.Join(errs...)
}

// orderRequest is order i of a run: one to three large Margheritas at one
// of three restaurants, for one of seventeen customers.
func orderRequest(i int) ordersapi.PlaceOrderRequest {
	lat, lon := 45.52+float64(i%10)/1000, -122.68
	return ordersapi.PlaceOrderRequest{
		CustomerID: fmt.Sprintf("customer-%d", i%17), RestaurantID: restaurants[i%len(restaurants)], PaymentMethod: "CreditCard",
		Items: []ordersapi.ItemRequest{{PizzaType: "Margherita", Size: "Large", Toppings: []string{"Basil"}, Quantity: 1 + i%3}},
		Address: &ordersapi.Address{Street: fmt.Sprintf("%d Main St", i), City: "Portland", State: "OR", ZipCode: "97201",
			Coordinates: &ordersapi.Coordinates{Latitude: &lat, Longitude: &lon}},
	}
}

func (w *world) placeOne(ctx context.Context, hc *http.Client, run string, i int) (placed, error) {
	g := i % len(w.gateways)
	body, err := json.Marshal(orderRequest(i))
	if err != nil {
		return placed{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.gateways[g]+"/api/orders", bytes.NewReader(body))
	if err != nil {
		return placed{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(gateway.HeaderIdempotencyKey, fmt.Sprintf("%s-%d", run, i))
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return placed{}, fmt.Errorf("order %d: %w", i, err)
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return placed{}, fmt.Errorf("order %d: %w", i, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return placed{}, fmt.Errorf("order %d through gateway %d: %d %s", i, g, resp.StatusCode, b)
	}
	var o ordersapi.OrderView
	if err := json.Unmarshal(b, &o); err != nil || o.OrderID == "" {
		return placed{}, fmt.Errorf("order %d: 201 without an order: %s", i, b)
	}
	p := placed{orderID: o.OrderID, gateway: g}
	if resp.Header.Get(gateway.HeaderConsistency) == "ok" {
		p.latency = time.Since(start)
		return p, nil
	}
	// The gateway answered before the read model showed the order: the
	// order counts as visible when a read finds it.
	p.pending = true
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := w.getOrder(ctx, hc, g, o.OrderID); err == nil {
			p.latency = time.Since(start)
			return p, nil
		} else if time.Now().After(deadline) {
			return placed{}, fmt.Errorf("order %d (%s) not visible 30s after its reply: %w", i, o.OrderID, err)
		}
		t := time.NewTimer(5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return placed{}, ctx.Err()
		case <-t.C:
		}
	}
}

// getOrder reads an order's view through gateway g.
func (w *world) getOrder(ctx context.Context, hc *http.Client, g int, id string) (ordersapi.OrderView, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.gateways[g]+"/api/orders/"+id, nil)
	if err != nil {
		return ordersapi.OrderView{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return ordersapi.OrderView{}, err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return ordersapi.OrderView{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return ordersapi.OrderView{}, fmt.Errorf("GET order %s through gateway %d: %d %s", id, g, resp.StatusCode, b)
	}
	var v ordersapi.OrderView
	if err := json.Unmarshal(b, &v); err != nil {
		return ordersapi.OrderView{}, err
	}
	return v, nil
}

// percentile returns the q-quantile (0..1) of sorted durations, nearest
// rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func latencies(ps []placed) []time.Duration {
	out := make([]time.Duration, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.latency)
	}
	slices.Sort(out)
	return out
}

// --- the log ---

// storedEvent is one event of a stream, its envelope decoded.
type storedEvent struct {
	seq uint64
	env events.Envelope
}

// readStream returns every event of a stream, in order.
func (w *world) readStream(ctx context.Context, stream string) ([]storedEvent, error) {
	st, err := w.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	last := info.State.LastSeq
	if last == 0 {
		return nil, nil
	}
	cons, err := w.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var out []storedEvent
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			env, err := events.UnmarshalEnvelope(m.Data())
			if err != nil {
				return nil, fmt.Errorf("%s seq %d: %w", stream, md.Sequence.Stream, err)
			}
			out = append(out, storedEvent{seq: md.Sequence.Stream, env: env})
			if md.Sequence.Stream >= last {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if got == 0 {
			return nil, fmt.Errorf("%s: read %d events, stream ends at %d", stream, len(out), last)
		}
	}
}

// --- logs ---

// logTally counts the warnings and errors the services log, by message,
// and keeps the first few lines; everything else is dropped. Services log
// from their own goroutines, possibly after a test ends, so nothing goes
// to the test's output from here.
type logTally struct {
	mu    sync.Mutex
	count map[string]int
	first []string
}

func newLogTally() *logTally { return &logTally{count: map[string]int{}} }

// handler returns the slog handler feeding the tally.
func (l *logTally) handler() slog.Handler { return tallyHandler{l: l} }

type tallyHandler struct {
	l     *logTally
	attrs string
}

func (h tallyHandler) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }

func (h tallyHandler) Handle(_ context.Context, r slog.Record) error {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	h.l.count[r.Message]++
	if len(h.l.first) < 20 {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %q%s", r.Level, r.Message, h.attrs)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		h.l.first = append(h.l.first, b.String())
	}
	return nil
}

func (h tallyHandler) WithAttrs(as []slog.Attr) slog.Handler {
	for _, a := range as {
		h.attrs += fmt.Sprintf(" %s=%v", a.Key, a.Value)
	}
	return h
}

func (h tallyHandler) WithGroup(string) slog.Handler { return h }

// snapshot returns the counts so far.
func (l *logTally) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.count))
	for k, v := range l.count {
		out[k] = v
	}
	return out
}

func (l *logTally) firstLines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.first)
}

// msgProjectorRestart is logged when a projector (of any read model) lost
// the race for its checkpoint to another instance's projector, or met
// another trouble, and resumes from the checkpoint.
const msgProjectorRestart = "projection interrupted; resuming from checkpoint"
