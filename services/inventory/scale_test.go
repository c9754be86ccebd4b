package inventory_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/inventory"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
	"github.com/prometheus/client_golang/prometheus"
)

// outOfOrder records the log lines that only a cancellation handled before
// its order's placement produces.
type outOfOrder struct {
	slog.Handler
	mu    *sync.Mutex
	lines *[]string
}

func (o outOfOrder) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "order ended without a reservation; nothing to release" {
		var order, state string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "order_id":
				order = a.Value.String()
			case "state":
				state = a.Value.String()
			}
			return true
		})
		if state != "rejected" {
			o.mu.Lock()
			*o.lines = append(*o.lines, fmt.Sprintf("order %s: cancellation handled before its placement (state %s)", order, state))
			o.mu.Unlock()
		}
	}
	return o.Handler.Handle(ctx, r)
}

func (o outOfOrder) WithAttrs(as []slog.Attr) slog.Handler {
	return outOfOrder{Handler: o.Handler.WithAttrs(as), mu: o.mu, lines: o.lines}
}

func (o outOfOrder) WithGroup(g string) slog.Handler {
	return outOfOrder{Handler: o.Handler.WithGroup(g), mu: o.mu, lines: o.lines}
}

// startPartitioned starts an inventory instance whose consumers are
// partitioned, on its own connection, logging through log.
func (h *harness) startPartitioned(keyspace, id string, log *slog.Logger) *instance {
	h.t.Helper()
	nc := testkit.Connect(h.t, h.ns)
	reg := prometheus.NewRegistry()
	svc, err := inventory.New(inventory.Config{Keyspace: keyspace, TimeScale: 1, Scale: eventstore.Scale{Partitions: 8, InstanceID: id, LeaseTTL: 1500 * time.Millisecond}},
		inventory.Deps{NC: nc, JS: testkit.JetStream(h.t, nc), Redis: h.rdb, Catalog: h.cat, Clock: func() time.Time { return t0 }, Metrics: reg, Log: log})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	if err := svc.Start(ctx); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(svc.Stop)
	testkit.Eventually(h.t, wait, func() error { return svc.Ready(context.Background()) })
	return &instance{svc: svc, nc: nc, metrics: reg, keyspace: keyspace}
}

// ownedBy waits until the instances own every partition of inventory-orders
// between them, each some, and returns the assignment.
func ownedBy(t *testing.T, ins map[string]*instance) map[string][]int {
	t.Helper()
	var got map[string][]int
	testkit.Eventually(t, wait, func() error {
		got = map[string][]int{}
		seen := map[int]bool{}
		for name, in := range ins {
			ps := in.svc.Partitions()[inventoryapi.DurableOrders]
			if len(ps) == 0 {
				return fmt.Errorf("%s owns no partition yet", name)
			}
			for _, p := range ps {
				if seen[p] {
					return fmt.Errorf("partition %d owned twice", p)
				}
				seen[p] = true
			}
			got[name] = ps
		}
		if len(seen) != 8 {
			return fmt.Errorf("%d of 8 partitions owned: %v", len(seen), got)
		}
		return nil
	})
	return got
}

// The Done-when test: three instances share the orders, one of
// them crashes (its connection closes: no graceful release) while orders
// keep coming, and every order's reservation — and release, for the
// cancelled ones — is stored exactly once and in causal order.
func TestThreeInstancesShareOrdersAndSurviveACrash(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var disorder []string
	base := slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})
	if testing.Verbose() {
		base = slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})
	}
	log := slog.New(outOfOrder{Handler: base, mu: &mu, lines: &disorder})
	ins := map[string]*instance{
		"inv-a": h.startPartitioned(h.keyspace, "inv-a", log.With("instance", "inv-a")),
		"inv-b": h.startPartitioned(h.keyspace+"b:", "inv-b", log.With("instance", "inv-b")),
		"inv-c": h.startPartitioned(h.keyspace+"c:", "inv-c", log.With("instance", "inv-c")),
	}
	t.Logf("partitions of %s: %v", inventoryapi.DurableOrders, ownedBy(t, ins))

	const orders = 180
	restaurants := []string{"downtown", "pearl", "hawthorne"}
	cancelled := func(i int) bool { return i%3 == 0 }
	var published atomic.Int32
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := range orders {
			id := fmt.Sprintf("o%03d", i)
			h.place(id, restaurants[i%len(restaurants)], line("Margherita", "Medium", 1))
			if cancelled(i) {
				h.cancel(id)
			}
			published.Add(1)
		}
	}()

	handled := func(in *instance) float64 { return counter(t, in.metrics, "pizza_inventory_consumed_events_total") }
	// Mid-load, once every instance has handled some orders: crash inv-b.
	testkit.Eventually(t, wait, func() error {
		for name, in := range ins {
			if handled(in) == 0 {
				return fmt.Errorf("%s has handled nothing yet", name)
			}
		}
		if n := published.Load(); n < orders/3 {
			return fmt.Errorf("%d orders published", n)
		}
		return nil
	})
	if published.Load() == orders {
		t.Fatal("the load ended before the crash")
	}
	crashed := time.Now()
	ins["inv-b"].nc.Close()
	t.Logf("inv-b crashed after %d orders were published", published.Load())
	for name, in := range ins {
		t.Logf("%s handled %v events before the crash", name, handled(in))
	}
	survivors := map[string]*instance{"inv-a": ins["inv-a"], "inv-c": ins["inv-c"]}
	t.Logf("partitions after the crash: %v (%v after it)", ownedBy(t, survivors), time.Since(crashed).Round(time.Millisecond))
	<-pubDone

	// Every order ends with exactly its expected events, in causal order.
	want := func(i int) []string {
		if cancelled(i) {
			return []string{"stock_reserved", "stock_released"}
		}
		return []string{"stock_reserved"}
	}
	var logs map[string][]eventstore.Record
	testkit.Eventually(t, 40*time.Second, func() error {
		logs = map[string][]eventstore.Record{}
		for _, r := range restaurants {
			recs, _, err := h.inv.Load(context.Background(), r)
			if err != nil {
				return err
			}
			logs[r] = recs
		}
		for i := range orders {
			id := fmt.Sprintf("o%03d", i)
			got := forOrder(logs[restaurants[i%len(restaurants)]], id)
			if !slices.Equal(got, want(i)) {
				return fmt.Errorf("order %s: %v, want %v", id, got, want(i))
			}
		}
		return nil
	})
	t.Logf("all %d orders settled %v after the crash", orders, time.Since(crashed).Round(time.Millisecond))

	// Nothing more arrives later (a late duplicate would show here), and no
	// command produced two events of a kind.
	testkit.Eventually(t, wait, func() error {
		for p := range 8 {
			c, err := h.js.Consumer(context.Background(), "ORDERS", eventstore.PartitionDurable(inventoryapi.DurableOrders, p, 8))
			if err != nil {
				return err
			}
			info, err := c.Info(context.Background())
			if err != nil {
				return err
			}
			if info.NumPending > 0 || info.NumAckPending > 0 {
				return fmt.Errorf("partition %d: %d pending, %d unacknowledged", p, info.NumPending, info.NumAckPending)
			}
		}
		return nil
	})
	for _, r := range restaurants {
		recs, _, err := h.inv.Load(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]uint64{}
		for _, rec := range recs {
			if o := orderOf(rec.Event); o != "" {
				k := o + " " + rec.Envelope.Type
				if prev, dup := seen[k]; dup {
					t.Errorf("%s: %s stored twice (seq %d and %d)", r, k, prev, rec.Seq)
				}
				seen[k] = rec.Seq
			}
		}
		fold(t, recs)
	}
	mu.Lock()
	for _, d := range disorder {
		t.Error(d)
	}
	mu.Unlock()
	var per []string
	for _, name := range []string{"inv-a", "inv-b", "inv-c"} {
		n := handled(ins[name])
		if n == 0 {
			t.Errorf("%s handled nothing", name)
		}
		per = append(per, fmt.Sprintf("%s=%v", name, n))
	}
	t.Logf("events handled per instance: %s", strings.Join(per, " "))
}
