package scale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
)

// lifecycle is an order's ORDERS events from placement to delivery, each
// once and in this order (no quality check fails in the world).
var lifecycle = []string{"order_placed", "order_queued", "order_preparation_started",
	"order_baking_started", "order_quality_check_started", "order_ready_for_pickup", "order_driver_assigned",
	"order_picked_up", "order_out_for_delivery", "order_delivered"}

// Three instances of every service, scaled out; orders carried from
// placement to delivery (a courier picks up and delivers through the API).
// A third of the way into the load, one instance of each service crashes
// — cut off from NATS and Redis at once, releasing nothing — the kitchen
// instance that runs the scheduler among them. Every order is delivered,
// each step of its life stored once and in order, one stock decision and
// one driver per order; the survivors own every partition.
func TestThreeInstancesSurviveACrashMidLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four services three times through full order lifecycles")
	}
	const (
		n       = 3
		count   = 45
		clients = 6
	)
	w := startWorldWith(t, n, worldOptions{timeScale: 300, leaseTTL: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hc := newHTTPClient(clients + 4)

	courierCtx, stopCourier := context.WithCancel(ctx)
	var courier sync.WaitGroup
	courier.Go(func() { w.courier(courierCtx, hc) })
	defer func() { stopCourier(); courier.Wait() }()

	// The load: each client retries an order with its idempotency key
	// until it is accepted (a command in flight at the crash fails).
	ids := make([]string, count)
	var placedCount atomic.Int32
	var retries atomic.Int32
	var next atomic.Int32
	var load sync.WaitGroup
	var loadErr error
	var errMu sync.Mutex
	for range clients {
		load.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= count {
					return
				}
				deadline := time.Now().Add(60 * time.Second)
				for {
					p, err := w.placeOne(ctx, hc, "crash", i)
					if err == nil {
						ids[i] = p.orderID
						placedCount.Add(1)
						break
					}
					retries.Add(1)
					if time.Now().After(deadline) || ctx.Err() != nil {
						errMu.Lock()
						loadErr = errors.Join(loadErr, err)
						errMu.Unlock()
						break
					}
					wait(ctx, 100*time.Millisecond)
				}
			}
		})
	}

	// A third of the way in: crash one instance of each service.
	testkit.Eventually(t, 60*time.Second, func() error {
		if p := placedCount.Load(); p < count/3 {
			return fmt.Errorf("%d of %d orders placed", p, count)
		}
		return nil
	})
	leader := -1
	for i, k := range w.kitchen {
		if k.Scheduling() {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no kitchen instance runs the scheduler")
	}
	victims := map[string]bool{"orders-1": true, "inventory-1": true, "drivers-1": true, fmt.Sprintf("kitchen-%d", leader): true}
	crashed := time.Now()
	for _, in := range w.instances {
		if victims[in.name] {
			in.crash()
		}
	}
	t.Logf("crashed %v after %d orders were placed", slices.Sorted(mapsKeys(victims)), placedCount.Load())

	load.Wait()
	if loadErr != nil {
		t.Fatalf("orders not accepted: %v", loadErr)
	}
	t.Logf("%d orders accepted (%d attempts retried)", count, retries.Load())

	// Every order is delivered.
	defer func() {
		if t.Failed() {
			for msg, c := range w.logs.snapshot() {
				t.Logf("logged %d×: %s", c, msg)
			}
			for _, l := range w.logs.firstLines() {
				t.Log(l)
			}
		}
	}()
	testkit.Eventually(t, 150*time.Second, func() error {
		notYet := map[string]int{}
		for _, id := range ids {
			v, err := w.getOrder(ctx, hc, 0, id)
			if err != nil {
				return err
			}
			if v.Status != "Delivered" {
				notYet[v.Status]++
			}
		}
		if len(notYet) > 0 {
			return fmt.Errorf("orders not delivered yet, by status: %v", notYet)
		}
		return nil
	})
	t.Logf("all %d orders delivered %v after the crash", count, time.Since(crashed).Round(time.Millisecond))
	stopCourier()
	courier.Wait()

	// Each order's life, once and in order, in ORDERS.
	orderLog, err := w.readStream(ctx, events.Orders.Stream)
	if err != nil {
		t.Fatal(err)
	}
	lives := map[string][]string{}
	for _, e := range orderLog {
		if e.env.Type != "order_stuck_detected" {
			lives[e.env.AggregateID] = append(lives[e.env.AggregateID], e.env.Type)
		}
	}
	for _, id := range ids {
		if !slices.Equal(lives[id], lifecycle) {
			t.Errorf("order %s: ORDERS holds %v, want %v", id, lives[id], lifecycle)
		}
	}
	if len(lives) != count {
		t.Errorf("ORDERS holds %d orders, want %d", len(lives), count)
	}

	// One stock decision per order; one driver per order; each ticket's
	// steps once.
	invLog, err := w.readStream(ctx, events.Inventory.Stream)
	if err != nil {
		t.Fatal(err)
	}
	decisions := map[string]int{}
	for _, e := range invLog {
		if e.env.Type == "stock_reserved" || e.env.Type == "stock_reservation_rejected" {
			decisions[orderIDOf(t, e.env.Data)]++
		}
	}
	drvLog, err := w.readStream(ctx, events.Drivers.Stream)
	if err != nil {
		t.Fatal(err)
	}
	assigned := map[string]int{}
	for _, e := range drvLog {
		switch e.env.Type {
		case "driver_assigned":
			assigned[orderIDOf(t, e.env.Data)]++
		case "driver_unassigned":
			assigned[orderIDOf(t, e.env.Data)]--
		}
	}
	kitLog, err := w.readStream(ctx, events.Kitchen.Stream)
	if err != nil {
		t.Fatal(err)
	}
	steps := map[string]map[string]int{}
	for _, e := range kitLog {
		if steps[e.env.AggregateID] == nil {
			steps[e.env.AggregateID] = map[string]int{}
		}
		steps[e.env.AggregateID][e.env.Type]++
	}
	for _, id := range ids {
		if decisions[id] != 1 {
			t.Errorf("order %s: %d stock decisions, want 1", id, decisions[id])
		}
		if assigned[id] != 1 {
			t.Errorf("order %s: %d drivers assigned (net of unassignments), want 1", id, assigned[id])
		}
		for typ, c := range steps[id] {
			if c != 1 {
				t.Errorf("order %s: ticket event %s stored %d times", id, typ, c)
			}
		}
		if len(steps[id]) == 0 {
			t.Errorf("order %s has no kitchen ticket", id)
		}
	}

	// The survivors own every partition between them.
	var alive []string
	for _, in := range w.instances {
		if !victims[in.name] {
			alive = append(alive, in.name)
		}
	}
	testkit.Eventually(t, 30*time.Second, func() error { return w.partitionsSharedBy(victims) })
	t.Logf("survivors: %v; inventory partitions %s", alive, w.partitionOwnership())
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func orderIDOf(t *testing.T, data []byte) string {
	t.Helper()
	var d struct {
		OrderID string `json:"orderId"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	return d.OrderID
}

func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// courier plays every driver: through gateway 0 it picks up the orders
// assigned to a driver and delivers those out for delivery, until ctx
// ends. Refusals (a step already taken, a read model a moment behind) are
// retried on the next round.
func (w *world) courier(ctx context.Context, hc *http.Client) {
	for ctx.Err() == nil {
		for _, r := range restaurants {
			for status, verb := range map[string]string{"DriverAssigned": "pickup", "OutForDelivery": "deliver"} {
				for _, o := range w.listOrders(ctx, hc, r, status) {
					if o.AssignedDriverID == nil {
						continue
					}
					body := strings.NewReader(`{"orderId":"` + o.OrderID + `"}`)
					req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.gateways[0]+"/api/drivers/"+*o.AssignedDriverID+"/"+verb, body)
					if err != nil {
						return
					}
					req.Header.Set("Content-Type", "application/json")
					if resp, err := hc.Do(req); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						_ = resp.Body.Close()
					}
				}
			}
		}
		wait(ctx, 50*time.Millisecond)
	}
}

// listOrders lists a restaurant's orders in a status through gateway 0
// (nil on any failure).
func (w *world) listOrders(ctx context.Context, hc *http.Client, restaurant, status string) []ordersapi.OrderView {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.gateways[0]+"/api/restaurants/"+restaurant+"/orders?status="+status+"&limit=100", nil)
	if err != nil {
		return nil
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var page struct {
		Orders []ordersapi.OrderView `json:"orders"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&page) != nil {
		return nil
	}
	return page.Orders
}
