package app

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/redis/go-redis/v9"
)

// orderGets counts the GETs of order views a Redis client sends, and its
// MGETs.
type orderGets struct {
	mu          sync.Mutex
	gets, mgets int
}

func (c *orderGets) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *orderGets) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}

func (c *orderGets) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

func (c *orderGets) count(cmd redis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch args := cmd.Args(); strings.ToUpper(cmd.Name()) {
	case "GET":
		if strings.Contains(fmt.Sprint(args[1]), ":order:") {
			c.gets++
		}
	case "MGET":
		c.mgets++
	}
}

// keyByKey is a projector with the order projector's Apply but no
// Prefetch: it reads every view by itself.
type keyByKey struct{ projection.Projector }

// The order model rebuilt with its views prefetched a batch at a time is
// the model rebuilt reading view by view, and no view is read by a GET.
func TestPrefetchedRebuildEqualsKeyByKeyRebuild(t *testing.T) {
	s := testkit.RunJetStream(t)
	js := testkit.JetStream(t, testkit.Connect(t, s))
	ctx := context.Background()
	if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{}, events.Orders); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(js, events.NewRegistry(), events.Orders)
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	life := []func(i int) events.Event{
		func(i int) events.Event {
			return events.OrderPlaced{RestaurantID: fmt.Sprintf("r%d", i%3), CustomerID: "c", TotalCents: 1000, Currency: "USD", PaymentMethod: "Cash",
				Items: []events.OrderItem{{PizzaType: "Margherita", Size: "Large", Quantity: 1, UnitPriceCents: 1000, LineTotalCents: 1000}}}
		},
		func(int) events.Event { return events.OrderValidated{} },
		func(i int) events.Event { return events.OrderQueued{TicketID: fmt.Sprint("t", i)} },
		func(int) events.Event { return events.OrderPreparationStarted{ChefID: "chef"} },
		func(int) events.Event { return events.OrderReadyForPickup{} },
		func(int) events.Event { return events.OrderDriverAssigned{DriverID: "d"} },
		func(int) events.Event { return events.OrderPickedUp{} },
		func(int) events.Event { return events.OrderDelivered{} },
	}
	const orders = 13
	seqs := map[string]uint64{}
	var last uint64
	for step, ev := range life {
		for i := range orders {
			if step >= 5 && i%4 == 0 {
				continue // some orders stay at the kitchen
			}
			id := fmt.Sprintf("o%d", i)
			en, err := events.NewEnvelope(id, ev(i), t0.Add(time.Duration(step*orders+i)*time.Minute), events.Meta{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := store.Append(ctx, eventstore.Append{AggregateID: id, ExpectedSeq: seqs[id], CommandID: fmt.Sprintf("%s-%d", id, step), Events: []events.Envelope{en}})
			if err != nil {
				t.Fatal(err)
			}
			seqs[id], last = res.LastSeq, res.LastSeq
		}
	}

	rebuild := func(p func(keyspace string) projection.Projector) (model map[string]string, gets, mgets int) {
		rdb, ks := testkit.Redis(t)
		calls := &orderGets{}
		rdb.AddHook(calls)
		rt := projection.New(js, rdb, events.NewRegistry(), p(ks), projection.Options{Keyspace: ks, BatchSize: 5})
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = rt.Run(rctx) }()
		testkit.Eventually(t, 20*time.Second, func() error {
			if !rt.CaughtUp() || rt.Checkpoint() != last {
				return fmt.Errorf("checkpoint %d of %d", rt.Checkpoint(), last)
			}
			return nil
		})
		cancel()
		<-done
		calls.mu.Lock()
		gets, mgets = calls.gets, calls.mgets // before reading the model
		calls.mu.Unlock()
		return modelOf(t, rdb, ks), gets, mgets
	}
	prefetched, pgets, pmgets := rebuild(func(ks string) projection.Projector { return Projector{Keyspace: ks} })
	plain, kgets, _ := rebuild(func(ks string) projection.Projector { return keyByKey{Projector{Keyspace: ks}} })
	if _, ok := any(keyByKey{}).(projection.Prefetcher); ok {
		t.Fatal("the key-by-key projector prefetches")
	}
	if len(prefetched) < orders || fmt.Sprint(prefetched) != fmt.Sprint(plain) {
		t.Fatalf("prefetched model (%d keys) differs from the key-by-key one (%d keys):\n%v\n%v", len(prefetched), len(plain), prefetched, plain)
	}
	if pgets != 0 || pmgets == 0 {
		t.Fatalf("prefetching rebuild: %d GETs of views, %d MGETs", pgets, pmgets)
	}
	if kgets == 0 {
		t.Fatal("the key-by-key rebuild read no view: the comparison shows nothing")
	}
}

// BenchmarkRebuild rebuilds the order model of 1,500 order lives (12,000
// events) from sequence 1 and reports events/s, and the share of the time
// Redis spent running the batches' scripts (from its command statistics,
// so only meaningful on an otherwise idle Redis). REBUILD_BENCH_ORDERS
// sets another number of orders.
func BenchmarkRebuild(b *testing.B) {
	orders := 1500
	if v, err := strconv.Atoi(os.Getenv("REBUILD_BENCH_ORDERS")); err == nil {
		orders = v
	}
	s := testkit.RunJetStream(b)
	nc := testkit.Connect(b, s)
	js := testkit.JetStream(b, nc)
	ctx := context.Background()
	if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{}, events.Orders); err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	life := []events.Event{
		events.OrderPlaced{CustomerID: "c", TotalCents: 1000, Currency: "USD", PaymentMethod: "Cash",
			Items: []events.OrderItem{{PizzaType: "Margherita", Size: "Large", Toppings: []string{"Basil"}, Quantity: 2, UnitPriceCents: 1000, LineTotalCents: 2000}}},
		events.OrderValidated{}, events.OrderQueued{TicketID: "t"}, events.OrderPreparationStarted{ChefID: "chef"},
		events.OrderReadyForPickup{}, events.OrderDriverAssigned{DriverID: "d"}, events.OrderPickedUp{}, events.OrderDelivered{},
	}
	// Orders overlap as on a busy platform: 40 in flight at a time.
	n := 0
	for start := 0; start < orders; start += 40 {
		for step, ev := range life {
			for i := start; i < min(start+40, orders); i++ {
				if p, ok := ev.(events.OrderPlaced); ok {
					p.RestaurantID = fmt.Sprintf("r%d", i%4)
					ev = p
				}
				en, _ := events.NewEnvelope(fmt.Sprintf("o%d", i), ev, t0.Add(time.Duration(step)*time.Minute), events.Meta{CorrelationID: "c"})
				body, _ := en.Marshal()
				if _, err := js.PublishAsync(events.Orders.Subject(en.AggregateID), body); err != nil {
					b.Fatal(err)
				}
				n++
			}
		}
	}
	<-js.PublishAsyncComplete()
	rdb, ks := testkit.Redis(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		space := fmt.Sprintf("%sb%d:", ks, i)
		evalBefore := evalUsec(b, rdb)
		rt := projection.New(js, rdb, events.NewRegistry(), Projector{Keyspace: space}, projection.Options{Keyspace: space, BatchSize: 512})
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		start := time.Now()
		go func() { defer close(done); _ = rt.Run(rctx) }()
		if err := rt.WaitCaughtUp(ctx); err != nil || rt.Checkpoint() != uint64(n) {
			b.Fatalf("caught up at %d of %d: %v", rt.Checkpoint(), n, err)
		}
		elapsed := time.Since(start)
		cancel()
		<-done
		b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
		b.ReportMetric(float64(evalUsec(b, rdb)-evalBefore)/1e6/elapsed.Seconds(), "redis-script-share")
	}
}

func evalUsec(b *testing.B, rdb *redis.Client) int64 {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:"); ok {
			for _, f := range strings.Split(rest, ",") {
				if v, ok := strings.CutPrefix(f, "usec="); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					return n
				}
			}
		}
	}
	return 0
}

// modelOf returns the order model of a keyspace, its keys without the
// keyspace, sorted sets as member=score lists.
func modelOf(t *testing.T, rdb *redis.Client, ks string) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, projection.KeyBase(ks, ordersapi.ReadModel)+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	out := map[string]string{}
	for _, k := range keys {
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			out[strings.TrimPrefix(k, ks)] = rdb.Get(ctx, k).Val()
		case "zset":
			out[strings.TrimPrefix(k, ks)] = fmt.Sprint(rdb.ZRangeWithScores(ctx, k, 0, -1).Val())
		default:
			t.Fatalf("%s is a %s", k, typ)
		}
	}
	return out
}
