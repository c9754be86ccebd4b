package scale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/redis/go-redis/v9"
)

// Three instances of orders, inventory (partitioned) and drivers, one
// kitchen and three gateways: orders placed round-robin through the
// gateways are each stored once, reach the read model once (readable
// through every gateway), get one stock decision, and the commands and the
// inventory's work are spread over the instances.
func TestThreeInstancesPlaceEveryOrderOnce(t *testing.T) {
	const (
		n       = 3
		count   = 90
		clients = 12
	)
	w := startWorld(t, n)
	ctx := context.Background()
	t.Logf("partitions of inventory-orders: %s", w.partitionOwnership())
	hc := newHTTPClient(clients)
	before := w.placeCounts()
	res, err := w.load(ctx, hc, "once", count, clients)
	if err != nil {
		t.Fatal(err)
	}

	// Every reply names a distinct order.
	ids := map[string]int{} // order id -> index
	pending := 0
	for i, p := range res.orders {
		if prev, dup := ids[p.orderID]; dup {
			t.Fatalf("orders %d and %d got the same id %s", prev, i, p.orderID)
		}
		ids[p.orderID] = i
		if p.pending {
			pending++
		}
	}
	t.Logf("%d orders placed in %v; %d replies came before the read model showed the order", count, res.elapsed.Round(time.Millisecond), pending)

	// The commands spread over the orders instances.
	per := spread(before, w.placeCounts())
	t.Logf("place commands per orders instance: %v", per)
	total := 0
	for i, c := range per {
		if c == 0 {
			t.Errorf("orders instance %d handled no place command", i)
		}
		total += c
	}
	if len(per) != n || total != count {
		t.Errorf("%d place commands over %d instances, want %d over %d (no retries were made)", total, len(per), count, n)
	}

	// Each order readable through a gateway other than the one that placed
	// it, with one placement in its history.
	for id, i := range ids {
		g := (res.orders[i].gateway + 1) % n
		v, err := w.getOrder(ctx, hc, g, id)
		if err != nil {
			t.Fatal(err)
		}
		// Placed once: the placement's status (Validated, order_placed.v3)
		// opens the history, and only once.
		placed := 0
		for _, sc := range v.StatusHistory {
			if sc.Status == "Validated" {
				placed++
			}
		}
		if v.OrderID != id || v.RestaurantID != restaurants[i%len(restaurants)] || placed != 1 || v.StatusHistory[0].Status != "Validated" {
			t.Errorf("order %d through gateway %d: id %s restaurant %s, Validated %d times in %v", i, g, v.OrderID, v.RestaurantID, placed, v.StatusHistory)
		}
	}

	// ORDERS holds one order_placed per order, and nothing else placed.
	orderLog, err := w.readStream(ctx, events.Orders.Stream)
	if err != nil {
		t.Fatal(err)
	}
	placedIn := map[string]int{}
	for _, e := range orderLog {
		if e.env.Type == "order_placed" {
			placedIn[e.env.AggregateID]++
		}
	}
	if len(placedIn) != count {
		t.Errorf("ORDERS holds placements of %d orders, want %d", len(placedIn), count)
	}
	for id, c := range placedIn {
		if _, ok := ids[id]; !ok || c != 1 {
			t.Errorf("ORDERS: order %s placed %d times (known to the clients: %v)", id, c, ok)
		}
	}

	// The read model counts every order once, per restaurant, in its
	// restaurant index and in its dashboard (orders move between statuses
	// as the saga goes on; the sum stays), once the projectors are idle.
	want := map[string]int{}
	for i := range count {
		want[restaurants[i%len(restaurants)]]++
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		var errs []error
		for _, r := range restaurants {
			n, err := w.rdb.ZCard(ctx, ordersapi.RestaurantOrdersKey(w.keyspace, r, "")).Result()
			if err != nil {
				return err
			}
			raw, err := w.rdb.Get(ctx, ordersapi.DashboardKey(w.keyspace, r)).Result()
			if errors.Is(err, redis.Nil) {
				raw = "{}"
			} else if err != nil {
				return err
			}
			var d ordersapi.DashboardOrders
			if err := json.Unmarshal([]byte(raw), &d); err != nil {
				return err
			}
			sum := 0
			for _, c := range d.OrdersByStatus {
				sum += c
			}
			if int(n) != want[r] || sum != want[r] {
				errs = append(errs, fmt.Errorf("%s: %d orders indexed, %d counted by the dashboard (%v), want %d", r, n, sum, d.OrdersByStatus, want[r]))
			}
		}
		return errors.Join(errs...)
	})

	// The partitioned inventory decides once per order: one reservation or
	// one rejection, never both, never twice.
	testkit.Eventually(t, 30*time.Second, func() error {
		invLog, err := w.readStream(ctx, events.Inventory.Stream)
		if err != nil {
			return err
		}
		decisions := map[string][]string{}
		for _, e := range invLog {
			if e.env.Type != "stock_reserved" && e.env.Type != "stock_reservation_rejected" {
				continue
			}
			var d struct {
				OrderID string `json:"orderId"`
			}
			if err := json.Unmarshal(e.env.Data, &d); err != nil {
				return err
			}
			decisions[d.OrderID] = append(decisions[d.OrderID], e.env.Type)
		}
		for id := range ids {
			if len(decisions[id]) != 1 {
				return fmt.Errorf("order %s: stock decisions %v, want one", id, decisions[id])
			}
		}
		if len(decisions) != count {
			return fmt.Errorf("stock decisions for %d orders, want %d", len(decisions), count)
		}
		return nil
	})
	handled := w.inventoryHandled()
	t.Logf("events handled per inventory instance: %v; partitions: %s", handled, w.partitionOwnership())
	if slices.Contains(handled, 0) {
		t.Errorf("an inventory instance handled nothing: %v", handled)
	}

	logs := w.logs.snapshot()
	t.Logf("projector restarts (lost checkpoint races, every read model) during the test: %d", logs[msgProjectorRestart])
	for msg, c := range logs {
		t.Logf("logged %d×: %s", c, msg)
	}
	if testing.Verbose() {
		for _, l := range w.logs.firstLines() {
			t.Log(l)
		}
	}
}
