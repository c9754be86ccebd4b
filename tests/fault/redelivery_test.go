package fault_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/redis/go-redis/v9"
)

// Redelivery: two orders services project into the same keyspace, so each
// of their projector runtimes receives the events the other one already
// applied, late and out of order; both are also restarted mid-stream,
// which replays from the checkpoint. A third service projects into a
// clean keyspace alone. Order lifecycles are appended to ORDERS as their
// producers would. The racing model must end equal to the clean one, every
// event must be applied exactly once, and no order's version may ever go
// backwards in the change notifications (one per order per batch, in
// stream order).
func TestRedeliveryNeverMovesAReadModelBackwards(t *testing.T) {
	const (
		writers         = 6
		ordersPerWriter = 8
	)
	ctx := context.Background()
	ns := testkit.RunJetStream(t)
	nc := testkit.Connect(t, ns)
	js := testkit.JetStream(t, nc)
	rdb, racing := testkit.Redis(t)
	_, clean := testkit.Redis(t)
	log, logs := captureLogs(t)

	watch := watchVersions(ctx, t, rdb, ordersapi.Channel(racing))
	a := startOrders(t, nc, js, rdb, racing, log, nil)
	b := startOrders(t, nc, js, rdb, racing, log, nil)
	startOrders(t, nc, js, rdb, clean, log, nil)

	store := eventstore.New(js, events.NewRegistry(), events.Orders)
	var appended atomic.Int64
	total := 0
	for w := 0; w < writers; w++ {
		for o := 0; o < ordersPerWriter; o++ {
			total += len(orderLifecycle(w*ordersPerWriter + o))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := appendLifecycles(ctx, store, w, ordersPerWriter, &appended); err != nil {
				errs <- err
			}
		}()
	}

	// Restart each racing service once mid-stream: its new runtime
	// resumes from the shared checkpoint while the other keeps going.
	restarts := 0
	for i, svc := range []**orders.Service{&b, &a} {
		testkit.Eventually(t, 60*time.Second, func() error {
			if n := appended.Load(); n < int64(total*(i+1)/3) {
				return fmt.Errorf("%d of %d events appended", n, total)
			}
			return nil
		})
		(*svc).Stop()
		*svc = startOrders(t, nc, js, rdb, racing, log, nil)
		restarts++
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	loadDone := time.Now()

	last := streamLastSeq(ctx, t, js, events.Orders.Stream)
	waitCheckpoint(t, rdb, projection.CheckpointKey(racing, ordersapi.ReadModel), last)
	waitCheckpoint(t, rdb, projection.CheckpointKey(clean, ordersapi.ReadModel), last)
	converged := time.Since(loadDone)
	if d := diffSnapshots(snapshotKeyspace(ctx, t, rdb, racing), snapshotKeyspace(ctx, t, rdb, clean)); d != "" {
		t.Errorf("the model built by racing, restarted projectors differs from the clean one:\n%s", d)
	}
	// The projector announces each order once per batch, with the
	// sequence of the batch's last event of that order, in stream order:
	// an event applied twice would show as a notification whose sequence
	// is not above the one before (observe). Every order's last
	// notification must carry the version the model stores.
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := watch.lastSeq(); got != last {
			return fmt.Errorf("change notifications up to seq %d of %d received", got, last)
		}
		return nil
	})
	rep := watch.report()
	for _, p := range rep.problems {
		t.Error(p)
	}
	if uint64(rep.notified) > last {
		t.Errorf("%d change notifications for %d events: some event was applied twice", rep.notified, last)
	}
	if rep.orders != writers*ordersPerWriter {
		t.Errorf("notifications named %d orders, want %d", rep.orders, writers*ordersPerWriter)
	}
	for id, v := range watch.versions() {
		raw, err := rdb.Get(ctx, ordersapi.OrderKey(racing, id)).Bytes()
		if err != nil {
			t.Fatalf("order %s: %v", id, err)
		}
		var stored ordersapi.OrderView
		if err := json.Unmarshal(raw, &stored); err != nil {
			t.Fatal(err)
		}
		if stored.Version != v {
			t.Errorf("order %s: last notified version %d, stored %d", id, v, stored.Version)
		}
	}
	stale := logs.count("another writer advanced the read model")
	audit := auditLog(scanStream(ctx, t, js, events.Orders.Stream))

	summary{
		Test: "redelivery", Faults: restarts + stale, Acked: int(appended.Load()), Stored: audit.Stored, Duplicates: rep.reapplied + audit.Duplicates, Convergence: converged,
		Extra: []any{"racing_runtimes", 2, "restarts", restarts, "stale_batches_rejected", stale, "notifications", rep.notified,
			"versions_backwards", rep.backwards, "orders", rep.orders},
	}.print(t)
}

// orderLifecycle is the sequence of commands (each one or more events)
// of order i: a delivered order, or every fourth one cancelled while
// being prepared.
func orderLifecycle(i int) [][]events.Event {
	restaurants := []string{"downtown", "pearl", "hawthorne"}
	driver := fmt.Sprintf("driver-%d", i%5)
	placed := events.OrderPlaced{
		RestaurantID: restaurants[i%len(restaurants)], CustomerID: fmt.Sprintf("customer-%d", i%7),
		Items:      []events.OrderItem{{PizzaType: "Margherita", Size: "Large", Quantity: 1, UnitPriceCents: 1299, LineTotalCents: 1299}},
		TotalCents: 1299, Currency: "USD", PaymentMethod: "Cash",
		DeliveryLocation:    events.GeoPoint{Latitude: 45.52, Longitude: -122.68},
		EstimatedDeliveryAt: time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC),
	}
	steps := [][]events.Event{
		{placed, events.OrderValidated{}},
		{events.OrderQueued{TicketID: fmt.Sprintf("ticket-%d", i)}},
		{events.OrderPreparationStarted{ChefID: fmt.Sprintf("chef-%d", i%3)}},
	}
	if i%4 == 0 {
		return append(steps, []events.Event{events.OrderCancelled{Reason: "changed my mind", CancelledBy: "customer", FromStatus: "Preparing"}})
	}
	return append(steps,
		[]events.Event{events.OrderBakingStarted{}},
		[]events.Event{events.OrderQualityCheckStarted{}},
		[]events.Event{events.OrderReadyForPickup{}},
		[]events.Event{events.OrderDriverAssigned{DriverID: driver}},
		[]events.Event{events.OrderPickedUp{DriverID: driver}},
		[]events.Event{events.OrderOutForDelivery{DriverID: driver}},
		[]events.Event{events.OrderDelivered{DriverID: driver}},
	)
}

// appendLifecycles appends the lifecycles of writer w's orders, one step
// of each order in turn, so that the stream interleaves many orders.
func appendLifecycles(ctx context.Context, store *eventstore.Store, w, count int, appended *atomic.Int64) error {
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	type progress struct {
		id    string
		steps [][]events.Event
		next  int
		seq   uint64
	}
	all := make([]*progress, count)
	for o := range all {
		i := w*count + o
		all[o] = &progress{id: fmt.Sprintf("redelivery-%03d", i), steps: orderLifecycle(i)}
	}
	for busy := true; busy; {
		busy = false
		for _, p := range all {
			if p.next == len(p.steps) {
				continue
			}
			busy = true
			at := base.Add(time.Duration(p.next) * time.Minute)
			commandID := fmt.Sprintf("%s-step-%d", p.id, p.next)
			envs := make([]events.Envelope, 0, len(p.steps[p.next]))
			for _, e := range p.steps[p.next] {
				env, err := events.NewEnvelope(p.id, e, at, events.Meta{CorrelationID: p.id, CausationID: commandID})
				if err != nil {
					return err
				}
				envs = append(envs, env)
			}
			res, err := store.Append(ctx, eventstore.Append{AggregateID: p.id, ExpectedSeq: p.seq, CommandID: commandID, Events: envs})
			if err != nil {
				return fmt.Errorf("append %s: %w", commandID, err)
			}
			p.seq = res.LastSeq
			p.next++
			appended.Add(int64(len(envs)))
		}
	}
	return nil
}

// versionWatch follows a read model's change notifications and checks
// that the model only ever moves forward.
type versionWatch struct {
	mu        sync.Mutex
	last      uint64
	perOrder  map[string]uint64
	count     int
	reapplied int
	backwards int
	problems  []string
}

type watchReport struct {
	notified, reapplied, backwards, orders int
	problems                               []string
}

func watchVersions(ctx context.Context, t *testing.T, rdb *redis.Client, channel string) *versionWatch {
	t.Helper()
	sub := rdb.Subscribe(ctx, channel)
	if _, err := sub.Receive(ctx); err != nil { // the subscription is confirmed
		t.Fatal(err)
	}
	w := &versionWatch{perOrder: map[string]uint64{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for msg := range sub.Channel() {
			w.observe(msg.Payload)
		}
	}()
	t.Cleanup(func() {
		_ = sub.Close()
		<-done
	})
	return w
}

func (w *versionWatch) observe(payload string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n ordersapi.Notification
	if err := json.Unmarshal([]byte(payload), &n); err != nil {
		w.problems = append(w.problems, fmt.Sprintf("undecodable notification: %v", err))
		return
	}
	w.count++
	if n.Seq <= w.last {
		w.reapplied++
		w.problems = append(w.problems, fmt.Sprintf("notification for seq %d after seq %d: an event was applied again", n.Seq, w.last))
	}
	w.last = max(w.last, n.Seq)
	if n.Order.Version != n.Seq {
		w.problems = append(w.problems, fmt.Sprintf("order %s: view version %d in the notification of seq %d", n.OrderID, n.Order.Version, n.Seq))
	}
	if prev := w.perOrder[n.OrderID]; n.Order.Version <= prev {
		w.backwards++
		w.problems = append(w.problems, fmt.Sprintf("order %s went from version %d to %d", n.OrderID, prev, n.Order.Version))
	}
	w.perOrder[n.OrderID] = max(w.perOrder[n.OrderID], n.Order.Version)
}

func (w *versionWatch) lastSeq() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func (w *versionWatch) versions() map[string]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.perOrder)
}

func (w *versionWatch) report() watchReport {
	w.mu.Lock()
	defer w.mu.Unlock()
	return watchReport{notified: w.count, reapplied: w.reapplied, backwards: w.backwards, orders: len(w.perOrder), problems: append([]string(nil), w.problems...)}
}
