package inventory_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/inventory"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

var t0 = time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)

const wait = 15 * time.Second

// harness is one platform under test: a real nats-server with JetStream
// (every domain stream provisioned), a real Redis under a unique key
// prefix, and the stores tests use to play the other contexts.
type harness struct {
	t        *testing.T
	ns       *server.Server
	js       jetstream.JetStream
	rdb      *redis.Client
	keyspace string
	cat      *catalog.Catalog
	orders   *eventstore.Store
	kitchen  *eventstore.Store
	inv      *eventstore.Store
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ns := testkit.RunJetStream(t)
	js := testkit.JetStream(t, testkit.Connect(t, ns))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{}, events.DomainContexts()...); err != nil {
		t.Fatal(err)
	}
	rdb, prefix := testkit.Redis(t)
	reg := events.NewRegistry()
	return &harness{
		t: t, ns: ns, js: js, rdb: rdb, keyspace: prefix, cat: catalog.Default(),
		orders:  eventstore.New(js, reg, events.Orders),
		kitchen: eventstore.New(js, reg, events.Kitchen),
		inv:     eventstore.New(js, reg, events.Inventory),
	}
}

type instance struct {
	svc      *inventory.Service
	nc       *nats.Conn
	metrics  *prometheus.Registry
	keyspace string
}

type option func(*inventory.Config)

// start runs one inventory instance on its own connection. Instances of a
// harness share the durable consumers; each gets its own read-model
// keyspace so their projectors do not fight over one checkpoint.
func (h *harness) start(keyspace string, opts ...option) *instance {
	h.t.Helper()
	in := h.startUnready(keyspace, opts...)
	testkit.Eventually(h.t, wait, func() error { return in.svc.Ready(context.Background()) })
	return in
}

// startUnready starts an instance without waiting for it to be ready.
func (h *harness) startUnready(keyspace string, opts ...option) *instance {
	h.t.Helper()
	nc := testkit.Connect(h.t, h.ns)
	js := testkit.JetStream(h.t, nc)
	cfg := inventory.Config{Keyspace: keyspace, TimeScale: 1}
	for _, o := range opts {
		o(&cfg)
	}
	reg := prometheus.NewRegistry()
	svc, err := inventory.New(cfg, inventory.Deps{
		NC: nc, JS: js, Redis: h.rdb, Catalog: h.cat, Clock: func() time.Time { return t0 }, Metrics: reg,
		Log: slog.New(slog.NewTextHandler(h.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	// The context of Start is the service's lifetime, like Run's.
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	if err := svc.Start(ctx); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(svc.Stop)
	return &instance{svc: svc, nc: nc, metrics: reg, keyspace: keyspace}
}

// --- playing the other contexts ---

func line(pizza, size string, qty int, toppings ...string) events.OrderItem {
	return events.OrderItem{PizzaType: pizza, Size: size, Quantity: qty, Toppings: toppings}
}

var home = events.GeoPoint{Latitude: 45.52, Longitude: -122.68}

func (h *harness) place(orderID, restaurantID string, items ...events.OrderItem) {
	h.t.Helper()
	placed, _ := events.NewEnvelope(orderID, events.OrderPlaced{RestaurantID: restaurantID, CustomerID: "c1", Items: items, Currency: "USD", PaymentMethod: "Cash", DeliveryLocation: home}, t0, events.Meta{})
	validated, _ := events.NewEnvelope(orderID, events.OrderValidated{}, t0, events.Meta{})
	if _, err := h.orders.Append(context.Background(), eventstore.Append{AggregateID: orderID, CommandID: "place:" + orderID, Events: []events.Envelope{placed, validated}}); err != nil {
		h.t.Fatalf("place %s: %v", orderID, err)
	}
}

func (h *harness) appendTo(store *eventstore.Store, id string, e events.Event) {
	h.t.Helper()
	ctx := context.Background()
	last, err := store.LastSeq(ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	env, _ := events.NewEnvelope(id, e, t0, events.Meta{})
	if _, err := store.Append(ctx, eventstore.Append{AggregateID: id, ExpectedSeq: last, CommandID: env.ID, Events: []events.Envelope{env}}); err != nil {
		h.t.Fatalf("append %s to %s: %v", e.EventType(), id, err)
	}
}

func (h *harness) cancel(orderID string) {
	h.appendTo(h.orders, orderID, events.OrderCancelled{Reason: "changed my mind", CancelledBy: "customer", FromStatus: "Validated"})
}

func (h *harness) fail(orderID string) {
	h.appendTo(h.orders, orderID, events.OrderFailed{Reason: "oven broke", FromStatus: "Queued"})
}

func (h *harness) prepare(orderID, restaurantID string, attempt int) {
	h.appendTo(h.kitchen, orderID, events.TicketPreparationStarted{RestaurantID: restaurantID, ChefID: "chef-1", Attempt: attempt, DueAt: t0})
}

// --- reading the inventory ---

func (h *harness) log(restaurantID string) []eventstore.Record {
	h.t.Helper()
	recs, _, err := h.inv.Load(context.Background(), restaurantID)
	if err != nil {
		h.t.Fatal(err)
	}
	return recs
}

// forOrder returns the types of a restaurant's events about one order.
func forOrder(recs []eventstore.Record, orderID string) []string {
	var out []string
	for _, r := range recs {
		if orderOf(r.Event) == orderID {
			out = append(out, r.Envelope.Type)
		}
	}
	return out
}

func orderOf(e events.Event) string {
	switch e := e.(type) {
	case events.StockReserved:
		return e.OrderID
	case events.StockReservationRejected:
		return e.OrderID
	case events.StockConsumed:
		return e.OrderID
	case events.StockReleased:
		return e.OrderID
	case events.StockWasted:
		return e.OrderID
	}
	return ""
}

// waitOrder waits until the order's events on the restaurant's stock are want, and
// returns the restaurant's whole log.
func (h *harness) waitOrder(restaurantID, orderID string, want ...string) []eventstore.Record {
	h.t.Helper()
	var recs []eventstore.Record
	testkit.Eventually(h.t, wait, func() error {
		recs = h.log(restaurantID)
		if got := forOrder(recs, orderID); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("order %s: events %v, want %v", orderID, got, want)
		}
		return nil
	})
	return recs
}

// lastOf is the last of the order's events in recs.
func lastOf(recs []eventstore.Record, orderID string) eventstore.Record {
	for i := len(recs) - 1; i >= 0; i-- {
		if orderOf(recs[i].Event) == orderID {
			return recs[i]
		}
	}
	return eventstore.Record{}
}

func (h *harness) view(keyspace, restaurantID string) (inventoryapi.StockView, bool) {
	h.t.Helper()
	raw, err := h.rdb.Get(context.Background(), inventoryapi.StockKey(keyspace, restaurantID)).Result()
	if errors.Is(err, redis.Nil) {
		return inventoryapi.StockView{}, false
	}
	if err != nil {
		h.t.Fatal(err)
	}
	var v inventoryapi.StockView
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		h.t.Fatal(err)
	}
	return v, true
}

// caughtUpView waits until the restaurant's view reflects the last event
// of its stock, and returns it.
func (h *harness) caughtUpView(keyspace, restaurantID string) inventoryapi.StockView {
	h.t.Helper()
	var v inventoryapi.StockView
	testkit.Eventually(h.t, wait, func() error {
		last, err := h.inv.LastSeq(context.Background(), restaurantID)
		if err != nil {
			return err
		}
		var ok bool
		if v, ok = h.view(keyspace, restaurantID); !ok || v.Version < last {
			return fmt.Errorf("view of %s at %d, log at %d", restaurantID, v.Version, last)
		}
		return nil
	})
	return v
}

func item(v inventoryapi.StockView, ingredient string) inventoryapi.ItemView {
	for _, it := range v.Items {
		if it.Ingredient == ingredient {
			return it
		}
	}
	return inventoryapi.ItemView{}
}

// drained waits until a durable consumer has nothing pending or unacknowledged.
func (h *harness) drained(stream, durable string) {
	h.t.Helper()
	testkit.Eventually(h.t, wait, func() error {
		c, err := h.js.Consumer(context.Background(), stream, durable)
		if err != nil {
			return err
		}
		info, err := c.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 || info.NumRedelivered > 0 {
			return fmt.Errorf("%s: %d pending, %d unacknowledged, %d redelivered", durable, info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
		return nil
	})
}

// fold replays a restaurant's log independently of the service's code and
// fails the test if on-hand or available units are negative after any
// event. It returns the final on-hand and reserved units.
func fold(t *testing.T, recs []eventstore.Record) (onHand, reserved map[string]int64) {
	t.Helper()
	onHand, reserved = map[string]int64{}, map[string]int64{}
	open := map[string]map[string]int64{}
	for _, r := range recs {
		switch e := r.Event.(type) {
		case events.StockInitialized:
			maps.Copy(onHand, e.OnHand)
		case events.StockReserved:
			for ing, n := range e.Ingredients {
				reserved[ing] += n
			}
			open[e.OrderID] = e.Ingredients
		case events.StockReservationRejected:
			for _, m := range e.Missing {
				if avail := onHand[m.Ingredient] - reserved[m.Ingredient]; avail >= m.Required || avail != m.Available {
					t.Fatalf("seq %d: order %s rejected for %s (required %d, reported available %d) but %d were available",
						r.Seq, e.OrderID, m.Ingredient, m.Required, m.Available, avail)
				}
			}
		case events.StockConsumed:
			for ing, n := range e.Ingredients {
				onHand[ing] -= n
				reserved[ing] -= n
			}
			delete(open, e.OrderID)
		case events.StockReleased:
			for ing, n := range e.Ingredients {
				reserved[ing] -= n
			}
			delete(open, e.OrderID)
		case events.StockRestocked:
			for ing, n := range e.Quantities {
				onHand[ing] += n
			}
		case events.StockAdjusted:
			maps.Copy(onHand, e.OnHand)
		}
		for ing := range onHand {
			if onHand[ing] < 0 || onHand[ing]-reserved[ing] < 0 {
				t.Fatalf("seq %d (%s): %s on hand %d, reserved %d", r.Seq, r.Envelope.Type, ing, onHand[ing], reserved[ing])
			}
		}
	}
	return onHand, reserved
}

// --- commands over NATS ---

func request[R any](t *testing.T, nc *nats.Conn, subject string, cmd any) (R, *problem.Problem) {
	t.Helper()
	var body []byte
	switch c := cmd.(type) {
	case []byte:
		body = c
	default:
		body, _ = json.Marshal(cmd)
	}
	msg, err := nc.Request(subject, body, wait)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	var zero R
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		var p problem.Problem
		if err := json.Unmarshal(msg.Data, &p); err != nil {
			t.Fatalf("%s: error %s without a problem document: %q", subject, code, msg.Data)
		}
		if strconv.Itoa(p.Status) != code {
			t.Fatalf("%s: error code %s, problem status %d", subject, code, p.Status)
		}
		return zero, &p
	}
	var r R
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		t.Fatalf("%s: reply %q: %v", subject, msg.Data, err)
	}
	return r, nil
}

func mustCommand(t *testing.T, nc *nats.Conn, subject string, cmd any) inventoryapi.CommandReply {
	t.Helper()
	r, p := request[inventoryapi.CommandReply](t, nc, subject, cmd)
	if p != nil {
		t.Fatalf("%s: %v", subject, p)
	}
	return r
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// --- tests ---

func TestStockIsInitialisedOnceFromTheCatalogue(t *testing.T) {
	h := newHarness(t)
	a := h.start(h.keyspace)
	for _, r := range h.cat.Restaurants {
		v := h.caughtUpView(a.keyspace, r.ID)
		for ing, n := range r.Stock {
			it := item(v, ing)
			if it.OnHand != n || it.Available != n || it.Reserved != 0 || it.Threshold != (n*20+99)/100 || it.Low {
				t.Fatalf("%s %s: %+v, want %d on hand with a 20%% threshold", r.ID, ing, it, n)
			}
		}
		if len(v.LowStock) != 0 || !v.LastUpdated.Equal(t0) {
			t.Fatalf("%s: view %+v", r.ID, v)
		}
	}
	members, err := h.rdb.SMembers(context.Background(), inventoryapi.RestaurantsKey(a.keyspace)).Result()
	if err != nil || len(members) != len(h.cat.Restaurants) {
		t.Fatalf("restaurants set %v (%v)", members, err)
	}
	// A second instance and a restart append nothing more.
	h.start(h.keyspace + "b:")
	a.svc.Stop()
	h.start(h.keyspace + "c:")
	st, err := h.js.Stream(context.Background(), events.Inventory.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(context.Background())
	if info.State.Msgs != uint64(len(h.cat.Restaurants)) {
		t.Fatalf("INVENTORY holds %d events, want %d stock_initialized", info.State.Msgs, len(h.cat.Restaurants))
	}
}

func TestReserveConsumeRemakeAndWaste(t *testing.T) {
	h := newHarness(t)
	a := h.start(h.keyspace)
	h.place("o1", "downtown", line("Margherita", "Large", 2, "Basil"), line("Pepperoni", "Small", 1))
	recs := h.waitOrder("downtown", "o1", "stock_reserved")
	want := map[string]int64{}
	for _, it := range []events.OrderItem{line("Margherita", "Large", 2, "Basil"), line("Pepperoni", "Small", 1)} {
		ings, _ := h.cat.Ingredients(it.PizzaType, it.Size, it.Toppings, it.Quantity)
		for ing, n := range ings {
			want[ing] += n
		}
	}
	res := recs[len(recs)-1].Event.(events.StockReserved)
	if !maps.Equal(res.Ingredients, want) || res.RestaurantID != "downtown" || res.DeliveryLocation != home || len(res.Lines) != 2 {
		t.Fatalf("reservation %+v, want ingredients %v", res, want)
	}
	if l := res.Lines[0]; l.PizzaType != "Margherita" || l.Size != "Large" || l.Quantity != 2 || len(l.Toppings) != 1 {
		t.Fatalf("first line %+v", l)
	}
	if cid := recs[len(recs)-1].CommandID; cid != "inventory:ORDERS:1" {
		t.Fatalf("command id %q, want inventory:ORDERS:1 (derived from the order_placed)", cid)
	}
	v := h.caughtUpView(a.keyspace, "downtown")
	if it := item(v, "dough"); it.Reserved != want["dough"] || it.OnHand != 400 || it.Available != 400-want["dough"] {
		t.Fatalf("dough after reservation %+v", it)
	}

	h.prepare("o1", "downtown", 1)
	h.waitOrder("downtown", "o1", "stock_reserved", "stock_consumed")
	// A remake moves no stock. The kitchen consumer handles events in
	// order, so once o2's consumption is in, o1's remake was handled.
	h.prepare("o1", "downtown", 2)
	h.place("o2", "downtown", line("Veggie", "Medium", 1))
	h.waitOrder("downtown", "o2", "stock_reserved")
	h.prepare("o2", "downtown", 1)
	h.waitOrder("downtown", "o2", "stock_reserved", "stock_consumed")
	h.waitOrder("downtown", "o1", "stock_reserved", "stock_consumed")
	v = h.caughtUpView(a.keyspace, "downtown")
	if it := item(v, "dough"); it.OnHand != 400-want["dough"]-1 || it.Reserved != 0 {
		t.Fatalf("dough after consumption %+v", it)
	}

	// Cancelled after preparation started: the used stock is waste, no
	// stock comes back.
	h.cancel("o1")
	recs = h.waitOrder("downtown", "o1", "stock_reserved", "stock_consumed", "stock_wasted")
	wasted := lastOf(recs, "o1").Event.(events.StockWasted)
	if !maps.Equal(wasted.Ingredients, want) || wasted.Reason != "order cancelled: changed my mind" {
		t.Fatalf("waste %+v", wasted)
	}
	after := h.caughtUpView(a.keyspace, "downtown")
	if item(after, "dough") != item(v, "dough") {
		t.Fatalf("waste moved stock: %+v -> %+v", item(v, "dough"), item(after, "dough"))
	}
	fold(t, h.log("downtown"))
}

func TestCancelAndFailReleaseUnusedReservations(t *testing.T) {
	h := newHarness(t)
	a := h.start(h.keyspace)
	h.place("o1", "pearl", line("Hawaiian", "ExtraLarge", 3))
	h.place("o2", "pearl", line("FourCheese", "Medium", 2))
	h.waitOrder("pearl", "o1", "stock_reserved")
	h.waitOrder("pearl", "o2", "stock_reserved")
	h.cancel("o1")
	h.fail("o2")
	h.waitOrder("pearl", "o1", "stock_reserved", "stock_released")
	// The two releases may be stored in either order (two orders).
	recs := h.waitOrder("pearl", "o2", "stock_reserved", "stock_released")
	if rel := lastOf(recs, "o2").Event.(events.StockReleased); rel.Reason != "order failed: oven broke" {
		t.Fatalf("release %+v", rel)
	}
	v := h.caughtUpView(a.keyspace, "pearl")
	r, _ := h.cat.Restaurant("pearl")
	for ing, n := range r.Stock {
		if it := item(v, ing); it.OnHand != n || it.Reserved != 0 {
			t.Fatalf("%s after release %+v, want %d on hand and nothing reserved", ing, it, n)
		}
	}
	// A cancellation after the release, and one for an order that never
	// reserved anything, change nothing.
	h.fail("o1")
	h.place("o3", "pearl", line("Margherita", "Small", 1))
	h.cancel("o3")
	h.waitOrder("pearl", "o3", "stock_reserved", "stock_released")
	h.drained(events.Orders.Stream, inventoryapi.DurableOrders)
	if got := forOrder(h.log("pearl"), "o1"); fmt.Sprint(got) != "[stock_reserved stock_released]" {
		t.Fatalf("o1 events %v", got)
	}
	fold(t, h.log("pearl"))
}

func TestOutOfStockNamesTheMissingIngredientAndMovesNothing(t *testing.T) {
	h := newHarness(t)
	a := h.start(h.keyspace)
	mustCommand(t, a.nc, inventoryapi.SubjectAdjust, inventoryapi.AdjustCommand{RestaurantID: "hawthorne", Reason: "basil wilted",
		Items: []inventoryapi.AdjustItem{{Ingredient: "basil", OnHand: 1}}})
	before := h.caughtUpView(a.keyspace, "hawthorne")
	h.place("o1", "hawthorne", line("Margherita", "Medium", 2)) // needs 2 basil
	recs := h.waitOrder("hawthorne", "o1", "stock_reservation_rejected")
	rej := recs[len(recs)-1].Event.(events.StockReservationRejected)
	if len(rej.Missing) != 1 || rej.Missing[0] != (events.MissingIngredient{Ingredient: "basil", Required: 2, Available: 1}) || rej.RestaurantID != "hawthorne" {
		t.Fatalf("rejection %+v", rej)
	}
	after := h.caughtUpView(a.keyspace, "hawthorne")
	if fmt.Sprint(after.Items) != fmt.Sprint(before.Items) {
		t.Fatalf("a rejection moved stock:\n%+v\n%+v", before.Items, after.Items)
	}
	// The order that fits still goes through.
	h.place("o2", "hawthorne", line("Margherita", "Medium", 1))
	h.waitOrder("hawthorne", "o2", "stock_reserved")
	fold(t, h.log("hawthorne"))
}

// 50 orders placed at once against a stock that fits 20 of them, handled by
// two instances racing on the same restaurant: exactly 20 reservations,
// 30 rejections naming dough, and available never negative, in the read
// models and in a fold of the log.
func TestConcurrentOrdersNeverOversell(t *testing.T) {
	h := newHarness(t)
	a := h.start(h.keyspace)
	b := h.start(h.keyspace + "b:")
	const orders, fits = 50, 20
	mustCommand(t, a.nc, inventoryapi.SubjectAdjust, inventoryapi.AdjustCommand{RestaurantID: "downtown", Reason: "stock take",
		Items: []inventoryapi.AdjustItem{{Ingredient: "dough", OnHand: fits}}})

	var wg sync.WaitGroup
	errs := make(chan error, orders)
	for i := range orders {
		wg.Go(func() {
			id := fmt.Sprintf("o%02d", i)
			placed, _ := events.NewEnvelope(id, events.OrderPlaced{RestaurantID: "downtown", CustomerID: "c", Items: []events.OrderItem{line("Margherita", "Medium", 1)}, DeliveryLocation: home}, t0, events.Meta{})
			if _, err := h.orders.Append(context.Background(), eventstore.Append{AggregateID: id, CommandID: "place:" + id, Events: []events.Envelope{placed}}); err != nil {
				errs <- err
			}
		})
	}
	// Restocks of another ingredient race with the reservations too.
	for range 5 {
		wg.Go(func() {
			_, p := request[inventoryapi.CommandReply](t, b.nc, inventoryapi.SubjectRestock, inventoryapi.RestockCommand{RestaurantID: "downtown",
				Items: []inventoryapi.RestockItem{{Ingredient: "olives", Quantity: 1}}})
			if p != nil {
				errs <- p
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	var recs []eventstore.Record
	reserved, rejected := 0, 0
	testkit.Eventually(t, 30*time.Second, func() error {
		recs = h.log("downtown")
		reserved, rejected = 0, 0
		for _, r := range recs {
			switch e := r.Event.(type) {
			case events.StockReserved:
				reserved++
			case events.StockReservationRejected:
				rejected++
				if len(e.Missing) != 1 || e.Missing[0].Ingredient != "dough" || e.Missing[0].Available != 0 {
					return fmt.Errorf("rejection of %s: %+v", e.OrderID, e.Missing)
				}
			}
		}
		if reserved+rejected < orders {
			return fmt.Errorf("%d reserved, %d rejected of %d orders", reserved, rejected, orders)
		}
		return nil
	})
	if reserved != fits || rejected != orders-fits {
		t.Fatalf("%d reserved and %d rejected, want %d and %d", reserved, rejected, fits, orders-fits)
	}
	seen := map[string]int{}
	for _, r := range recs {
		if id := orderOf(r.Event); id != "" {
			seen[id]++
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("order %s has %d decisions", id, n)
		}
	}
	onHand, inReserve := fold(t, recs)
	if onHand["dough"] != fits || inReserve["dough"] != fits || onHand["olives"] != 305 {
		t.Fatalf("fold: dough %d on hand, %d reserved; olives %d", onHand["dough"], inReserve["dough"], onHand["olives"])
	}
	for _, keyspace := range []string{a.keyspace, b.keyspace} {
		v := h.caughtUpView(keyspace, "downtown")
		for _, it := range v.Items {
			if it.OnHand < 0 || it.Available < 0 || it.OnHand != onHand[it.Ingredient] || it.Reserved != inReserve[it.Ingredient] {
				t.Fatalf("view %s: %+v, fold says %d on hand, %d reserved", keyspace, it, onHand[it.Ingredient], inReserve[it.Ingredient])
			}
		}
		if d := item(v, "dough"); d.Available != 0 || !d.Low || !d.AlertOpen {
			t.Fatalf("view %s: dough %+v", keyspace, d)
		}
	}
	t.Logf("append conflicts retried: %v + %v", counter(t, a.metrics, "pizza_inventory_append_conflicts_total"), counter(t, b.metrics, "pizza_inventory_append_conflicts_total"))

	// A fresh instance loads the long log (ordered consumer) and knows
	// every reservation: counting less dough than is reserved is refused.
	a.svc.Stop()
	b.svc.Stop()
	c := h.start(h.keyspace + "c:")
	_, p := request[inventoryapi.CommandReply](t, c.nc, inventoryapi.SubjectAdjust, inventoryapi.AdjustCommand{RestaurantID: "downtown", Reason: "count",
		Items: []inventoryapi.AdjustItem{{Ingredient: "dough", OnHand: fits - 1}}})
	if p == nil || p.Status != 409 {
		t.Fatalf("adjusting below the reserved dough on a fresh instance: %+v, want 409", p)
	}
	r := mustCommand(t, c.nc, inventoryapi.SubjectRestock, inventoryapi.RestockCommand{RestaurantID: "downtown",
		Items: []inventoryapi.RestockItem{{Ingredient: "dough", Quantity: 5}}})
	if d := item(r.Stock, "dough"); d.OnHand != fits+5 || d.Reserved != fits || d.Available != 5 {
		t.Fatalf("dough on a fresh instance %+v", d)
	}
}

func TestRedeliveredOrderEventsChangeNothing(t *testing.T) {
	h := newHarness(t)
	a := h.start(h.keyspace)
	h.place("o1", "downtown", line("Supreme", "Large", 1))
	h.place("o2", "downtown", line("BBQChicken", "Medium", 2))
	h.waitOrder("downtown", "o1", "stock_reserved")
	h.cancel("o2")
	h.waitOrder("downtown", "o2", "stock_reserved", "stock_released")

	// The same order_placed stored again (a producer bug or a replay tool).
	h.appendTo(h.orders, "o1", events.OrderPlaced{RestaurantID: "downtown", CustomerID: "c1", Items: []events.OrderItem{line("Supreme", "Large", 1)}, DeliveryLocation: home})
	h.drained(events.Orders.Stream, inventoryapi.DurableOrders)
	before := h.log("downtown")

	// The consumer's state lost: it is recreated and the server delivers
	// the whole ORDERS stream again.
	a.svc.Stop()
	if err := h.js.DeleteConsumer(context.Background(), events.Orders.Stream, inventoryapi.DurableOrders); err != nil {
		t.Fatal(err)
	}
	h.start(h.keyspace + "b:")
	h.drained(events.Orders.Stream, inventoryapi.DurableOrders)
	after := h.log("downtown")
	if len(after) != len(before) {
		t.Fatalf("redelivery appended %d events: %v", len(after)-len(before), forOrder(after[len(before):], "o1"))
	}
	if got := forOrder(after, "o1"); fmt.Sprint(got) != "[stock_reserved]" {
		t.Fatalf("o1 events %v", got)
	}
	fold(t, after)
}

// A cancellation that overtakes its order's reservation (both already in
// the log when the service starts, or handled by another instance first)
// still returns the stock.
func TestCancellationOvertakingTheReservation(t *testing.T) {
	h := newHarness(t)
	h.place("o1", "pearl", line("Pepperoni", "Large", 2))
	h.cancel("o1")
	h.place("o2", "pearl", line("Pepperoni", "Large", 1))
	h.fail("o2")
	a := h.start(h.keyspace)
	h.drained(events.Orders.Stream, inventoryapi.DurableOrders)
	for _, id := range []string{"o1", "o2"} {
		if got := forOrder(h.log("pearl"), id); fmt.Sprint(got) != "[stock_reserved stock_released]" {
			t.Fatalf("%s events %v", id, got)
		}
	}
	v := h.caughtUpView(a.keyspace, "pearl")
	if it := item(v, "pepperoni"); it.Reserved != 0 || it.OnHand != 300 {
		t.Fatalf("pepperoni %+v", it)
	}
}

func TestRestockAndAdjustCommands(t *testing.T) {
	h := newHarness(t)
	a := h.start(h.keyspace)
	h.place("o1", "downtown", line("Margherita", "Medium", 3)) // reserves 3 dough
	h.waitOrder("downtown", "o1", "stock_reserved")

	problems := []struct {
		name    string
		subject string
		cmd     any
		status  int
		fields  []string
	}{
		{"restock negative", inventoryapi.SubjectRestock, inventoryapi.RestockCommand{RestaurantID: "downtown", Items: []inventoryapi.RestockItem{{Ingredient: "dough", Quantity: -5}}}, 422, []string{"items[0].quantity"}},
		{"restock zero", inventoryapi.SubjectRestock, inventoryapi.RestockCommand{RestaurantID: "downtown", Items: []inventoryapi.RestockItem{{Ingredient: "basil", Quantity: 2}, {Ingredient: "dough", Quantity: 0}}}, 422, []string{"items[1].quantity"}},
		{"restock unknown ingredient", inventoryapi.SubjectRestock, inventoryapi.RestockCommand{RestaurantID: "downtown", Items: []inventoryapi.RestockItem{{Ingredient: "caviar", Quantity: 5}}}, 422, []string{"items[0].ingredient"}},
		{"restock nothing", inventoryapi.SubjectRestock, inventoryapi.RestockCommand{RestaurantID: "downtown"}, 422, []string{"items"}},
		{"restock unknown restaurant", inventoryapi.SubjectRestock, inventoryapi.RestockCommand{RestaurantID: "atlantis", Items: []inventoryapi.RestockItem{{Ingredient: "dough", Quantity: 5}}}, 404, nil},
		{"adjust without reason", inventoryapi.SubjectAdjust, inventoryapi.AdjustCommand{RestaurantID: "downtown", Items: []inventoryapi.AdjustItem{{Ingredient: "dough", OnHand: 10}}}, 422, []string{"reason"}},
		{"adjust negative", inventoryapi.SubjectAdjust, inventoryapi.AdjustCommand{RestaurantID: "downtown", Reason: "count", Items: []inventoryapi.AdjustItem{{Ingredient: "dough", OnHand: -1}}}, 422, []string{"items[0].onHand"}},
		{"adjust unknown ingredient", inventoryapi.SubjectAdjust, inventoryapi.AdjustCommand{RestaurantID: "downtown", Reason: "count", Items: []inventoryapi.AdjustItem{{Ingredient: "caviar", OnHand: 1}}}, 422, []string{"items[0].ingredient"}},
		{"adjust below reserved", inventoryapi.SubjectAdjust, inventoryapi.AdjustCommand{RestaurantID: "downtown", Reason: "count", Items: []inventoryapi.AdjustItem{{Ingredient: "dough", OnHand: 2}}}, 409, nil},
		{"not JSON", inventoryapi.SubjectRestock, []byte(`{"restaurantId":`), 400, nil},
	}
	for _, tc := range problems {
		t.Run(tc.name, func(t *testing.T) {
			_, p := request[inventoryapi.CommandReply](t, a.nc, tc.subject, tc.cmd)
			if p == nil || p.Status != tc.status {
				t.Fatalf("problem %+v, want status %d", p, tc.status)
			}
			var fields []string
			for _, f := range p.Errors {
				fields = append(fields, f.Field)
			}
			if tc.fields != nil && fmt.Sprint(fields) != fmt.Sprint(tc.fields) {
				t.Fatalf("fields %v, want %v (%+v)", fields, tc.fields, p)
			}
			if p.Type == "" || p.Title == "" {
				t.Fatalf("incomplete problem %+v", p)
			}
		})
	}
	if got := forOrder(h.log("downtown"), ""); len(got) != 1 { // only stock_initialized
		t.Fatalf("refused commands appended events: %v", got)
	}

	sub := h.rdb.Subscribe(context.Background(), inventoryapi.Channel(a.keyspace))
	defer sub.Close()
	if _, err := sub.Receive(context.Background()); err != nil { // subscription confirmed
		t.Fatal(err)
	}
	restock := inventoryapi.RestockCommand{RestaurantID: "downtown", By: "manager-1", IdempotencyKey: "delivery-42",
		Items: []inventoryapi.RestockItem{{Ingredient: "dough", Quantity: 50}, {Ingredient: "mozzarella", Quantity: 7}}}
	r := mustCommand(t, a.nc, inventoryapi.SubjectRestock, restock)
	last, _ := h.inv.LastSeq(context.Background(), "downtown")
	if r.Seq != last || r.Stock.Version != last || r.Replayed || item(r.Stock, "dough").OnHand != 450 || item(r.Stock, "dough").Reserved != 3 {
		t.Fatalf("restock reply %+v (log at %d)", r, last)
	}
	again := mustCommand(t, a.nc, inventoryapi.SubjectRestock, restock)
	if !again.Replayed || item(again.Stock, "dough").OnHand != 450 {
		t.Fatalf("retried restock %+v", again)
	}
	// The same key for another delivery is refused, and stores nothing.
	other := restock
	other.Items = []inventoryapi.RestockItem{{Ingredient: "dough", Quantity: 60}}
	if _, p := request[inventoryapi.CommandReply](t, a.nc, inventoryapi.SubjectRestock, other); p == nil || p.Status != 422 || p.Type != problem.TypeIdempotencyKeyReused {
		t.Fatalf("restock reusing the key with other items: problem %+v, want 422 %s", p, problem.TypeIdempotencyKeyReused)
	}
	if now, _ := h.inv.LastSeq(context.Background(), "downtown"); now != last {
		t.Fatalf("the refused restock moved the log from %d to %d", last, now)
	}
	v := h.caughtUpView(a.keyspace, "downtown")
	if v.Version < r.Seq || fmt.Sprint(v.Items) != fmt.Sprint(r.Stock.Items) {
		t.Fatalf("read model %+v differs from the reply %+v", v.Items, r.Stock.Items)
	}
	select {
	case msg := <-sub.Channel():
		var note inventoryapi.Notification
		if err := json.Unmarshal([]byte(msg.Payload), &note); err != nil || note.RestaurantID != "downtown" || note.Seq != r.Seq || note.Stock.Version != r.Seq {
			t.Fatalf("notification %s (%v), want the restock at %d", msg.Payload, err, r.Seq)
		}
	case <-time.After(wait):
		t.Fatal("no notification of the restock")
	}

	adj := mustCommand(t, a.nc, inventoryapi.SubjectAdjust, inventoryapi.AdjustCommand{RestaurantID: "downtown", Reason: "stock take", By: "manager-1",
		Items: []inventoryapi.AdjustItem{{Ingredient: "dough", OnHand: 3}}}) // exactly what is reserved
	if d := item(adj.Stock, "dough"); d.OnHand != 3 || d.Available != 0 || !d.Low || !d.AlertOpen {
		t.Fatalf("dough after adjust %+v", d)
	}
	recs := h.log("downtown")
	if typ := recs[len(recs)-1].Envelope.Type; typ != "stock_running_low" {
		t.Fatalf("an adjustment to zero available raised no alert: last event %s", typ)
	}
	fold(t, recs)

	// A command of another kind may use the restock's key.
	sameKeyAdjust := mustCommand(t, a.nc, inventoryapi.SubjectAdjust, inventoryapi.AdjustCommand{RestaurantID: "downtown", Reason: "recount", By: "manager-1",
		IdempotencyKey: restock.IdempotencyKey, Items: []inventoryapi.AdjustItem{{Ingredient: "basil", OnHand: 100}}})
	if sameKeyAdjust.Replayed || item(sameKeyAdjust.Stock, "basil").OnHand != 100 {
		t.Fatalf("adjust with the restock's key: %+v", sameKeyAdjust)
	}
}

func lowAlerts(recs []eventstore.Record, ingredient string) int {
	n := 0
	for _, r := range recs {
		if e, ok := r.Event.(events.StockRunningLow); ok && e.Ingredient == ingredient {
			n++
		}
	}
	return n
}

// The alert is raised once, in the same append as the reservation that
// reaches the threshold, then never again while open (not by later orders,
// not by the periodic check), until a restock above the threshold closes it.
func TestLowStockAlertOnceUntilRestocked(t *testing.T) {
	h := newHarness(t)
	a := h.start(h.keyspace, func(c *inventory.Config) { c.TimeScale = 6000 }) // check every 10ms
	// mozzarella: threshold 60 (20% of 300).
	mustCommand(t, a.nc, inventoryapi.SubjectAdjust, inventoryapi.AdjustCommand{RestaurantID: "downtown", Reason: "count",
		Items: []inventoryapi.AdjustItem{{Ingredient: "mozzarella", OnHand: 65}}})
	h.place("o1", "downtown", line("Margherita", "Medium", 2)) // 4 mozzarella: 61 available
	h.waitOrder("downtown", "o1", "stock_reserved")
	h.place("o2", "downtown", line("Margherita", "Medium", 1)) // 2 more: 59
	recs := h.waitOrder("downtown", "o2", "stock_reserved")
	lastTwo := recs[len(recs)-2:]
	if low, ok := lastTwo[1].Event.(events.StockRunningLow); !ok || low.Ingredient != "mozzarella" || low.Available != 59 || low.Threshold != 60 ||
		lastTwo[1].CommandID != lastTwo[0].CommandID {
		t.Fatalf("the reservation reaching the threshold did not raise the alert in the same append: %s %+v", lastTwo[1].Envelope.Type, lastTwo[1].Event)
	}
	h.place("o3", "downtown", line("Margherita", "Medium", 1))
	h.waitOrder("downtown", "o3", "stock_reserved")
	checks := counter(t, a.metrics, "pizza_inventory_stock_checks_total")
	testkit.Eventually(t, wait, func() error {
		if n := counter(t, a.metrics, "pizza_inventory_stock_checks_total"); n < checks+3 {
			return fmt.Errorf("%v periodic checks so far", n)
		}
		return nil
	})
	if n := lowAlerts(h.log("downtown"), "mozzarella"); n != 1 {
		t.Fatalf("%d mozzarella alerts while open, want 1", n)
	}
	v := h.caughtUpView(a.keyspace, "downtown")
	if m := item(v, "mozzarella"); !m.AlertOpen || !m.Low || len(v.RecentAlerts) != 1 || v.RecentAlerts[0].Ingredient != "mozzarella" || v.LowStock[0] != "mozzarella" {
		t.Fatalf("view %+v", v)
	}

	r := mustCommand(t, a.nc, inventoryapi.SubjectRestock, inventoryapi.RestockCommand{RestaurantID: "downtown",
		Items: []inventoryapi.RestockItem{{Ingredient: "mozzarella", Quantity: 10}}}) // 67 available
	if m := item(r.Stock, "mozzarella"); m.AlertOpen || m.Low {
		t.Fatalf("restock above the threshold left %+v", m)
	}
	h.place("o4", "downtown", line("Margherita", "Large", 2)) // 6 mozzarella: 61, not yet low
	h.waitOrder("downtown", "o4", "stock_reserved")
	h.place("o5", "downtown", line("Margherita", "Small", 1)) // 2: 59
	h.waitOrder("downtown", "o5", "stock_reserved")
	if n := lowAlerts(h.log("downtown"), "mozzarella"); n != 2 {
		t.Fatalf("%d mozzarella alerts after the restock and the next drop, want 2", n)
	}
	v = h.caughtUpView(a.keyspace, "downtown")
	if len(v.RecentAlerts) != 2 || v.RecentAlerts[0].Available != 59 || v.RecentAlerts[0].Seq <= v.RecentAlerts[1].Seq {
		t.Fatalf("recent alerts %+v", v.RecentAlerts)
	}
	fold(t, h.log("downtown"))
}

// The periodic check raises the alert of an ingredient the menu uses but
// the restaurant opened without, exactly once.
func TestPeriodicCheckRaisesEachAlertOnce(t *testing.T) {
	h := newHarness(t)
	r, _ := h.cat.Restaurant("hawthorne")
	delete(r.Stock, "olives")
	a := h.start(h.keyspace, func(c *inventory.Config) { c.TimeScale = 60; c.CheckInterval = time.Second }) // every ~17ms
	testkit.Eventually(t, wait, func() error {
		if n := lowAlerts(h.log("hawthorne"), "olives"); n != 1 {
			return fmt.Errorf("%d olive alerts", n)
		}
		return nil
	})
	checks := counter(t, a.metrics, "pizza_inventory_stock_checks_total")
	testkit.Eventually(t, wait, func() error {
		if n := counter(t, a.metrics, "pizza_inventory_stock_checks_total"); n < checks+3 {
			return fmt.Errorf("%v periodic checks so far", n)
		}
		return nil
	})
	recs := h.log("hawthorne")
	if n := lowAlerts(recs, "olives"); n != 1 {
		t.Fatalf("%d olive alerts, want 1", n)
	}
	if n := len(recs); n != 2 {
		t.Fatalf("hawthorne has %d events, want stock_initialized and one alert", n)
	}
	v := h.caughtUpView(a.keyspace, "hawthorne")
	if o := item(v, "olives"); o.OnHand != 0 || o.Threshold != 0 || !o.AlertOpen || len(v.LowStock) != 1 {
		t.Fatalf("olives %+v, low stock %v", o, v.LowStock)
	}
}

// An order the stock cannot serve (unknown restaurant) is acknowledged
// without an event, and the consumer moves on.
func TestOrderForUnknownRestaurantIsSkipped(t *testing.T) {
	h := newHarness(t)
	h.start(h.keyspace)
	h.place("o1", "atlantis", line("Margherita", "Medium", 1))
	h.place("o2", "downtown", line("Margherita", "Medium", 1))
	h.waitOrder("downtown", "o2", "stock_reserved")
	h.drained(events.Orders.Stream, inventoryapi.DurableOrders)
	last, err := h.inv.LastSeq(context.Background(), "atlantis")
	if err != nil || last != 0 {
		t.Fatalf("atlantis has events (last %d, %v)", last, err)
	}
}

// The orders and kitchen services may deploy after the inventory: Start
// returns, Ready says what is missing, and the consumers start as soon as
// their streams exist.
func TestStartsBeforeUpstreamStreamsExist(t *testing.T) {
	ns := testkit.RunJetStream(t)
	js := testkit.JetStream(t, testkit.Connect(t, ns))
	rdb, prefix := testkit.Redis(t)
	reg := events.NewRegistry()
	h := &harness{t: t, ns: ns, js: js, rdb: rdb, keyspace: prefix, cat: catalog.Default(),
		orders: eventstore.New(js, reg, events.Orders), kitchen: eventstore.New(js, reg, events.Kitchen), inv: eventstore.New(js, reg, events.Inventory)}
	a := h.startUnready(h.keyspace)
	if err := a.svc.Ready(context.Background()); err == nil {
		t.Fatal("ready without its consumers")
	}
	if len(a.svc.Projections()) != 1 {
		t.Fatalf("projections %v", a.svc.Projections())
	}
	if err := eventstore.Provision(context.Background(), js, eventstore.StreamOptions{}, events.DomainContexts()...); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, func() error { return a.svc.Ready(context.Background()) })
	h.place("o1", "downtown", line("Margherita", "Small", 1))
	h.waitOrder("downtown", "o1", "stock_reserved")
}

// When the order's last event is an annotation (a stuck-order alert), the
// ending of the order is found in its full history.
func TestCancellationFoundBehindAnAnnotation(t *testing.T) {
	h := newHarness(t)
	h.place("o1", "pearl", line("Veggie", "Medium", 1))
	h.cancel("o1")
	h.appendTo(h.orders, "o1", events.OrderStuckDetected{Status: "Cancelled", Since: t0, Threshold: time.Minute})
	h.start(h.keyspace)
	h.drained(events.Orders.Stream, inventoryapi.DurableOrders)
	if got := forOrder(h.log("pearl"), "o1"); fmt.Sprint(got) != "[stock_reserved stock_released]" {
		t.Fatalf("o1 events %v", got)
	}
}
