package orders_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

type fixture struct {
	t        *testing.T
	nc       *nats.Conn
	js       jetstream.JetStream
	rdb      *redis.Client
	keyspace string
	now      atomic.Int64 // unix nanos of the injected clock
	svc      *orders.Service
}

func start(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t}
	f.now.Store(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).UnixNano())
	s := testkit.RunJetStream(t)
	f.nc = testkit.Connect(t, s)
	f.js = testkit.JetStream(t, f.nc)
	f.rdb, f.keyspace = testkit.Redis(t)
	svc, err := orders.New(orders.Config{Keyspace: f.keyspace, StuckCheckInterval: 20 * time.Millisecond}, orders.Deps{
		NC: f.nc, JS: f.js, Redis: f.rdb, Catalog: catalog.Default(),
		Clock: func() time.Time { return time.Unix(0, f.now.Load()).UTC() },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Stop)
	f.svc = svc
	return f
}

func (f *fixture) advance(d time.Duration) { f.now.Add(int64(d)) }

func (f *fixture) place(restaurant string) ordersapi.OrderView {
	f.t.Helper()
	lat, lon := 45.5, -122.6
	cmd := ordersapi.PlaceCommand{Request: ordersapi.PlaceOrderRequest{
		CustomerID: "c1", RestaurantID: restaurant, PaymentMethod: "Cash",
		Items:   []ordersapi.ItemRequest{{PizzaType: "Margherita", Size: "Medium", Quantity: 1}},
		Address: &ordersapi.Address{Street: "1 Main St", City: "Portland", Coordinates: &ordersapi.Coordinates{Latitude: &lat, Longitude: &lon}},
	}}
	var reply ordersapi.CommandReply
	f.request(ordersapi.SubjectPlace, cmd, &reply)
	return reply.Order
}

func (f *fixture) request(subject string, cmd, reply any) {
	f.t.Helper()
	b, _ := json.Marshal(cmd)
	msg, err := f.nc.Request(subject, b, 5*time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		f.t.Fatalf("%s: error %s %s", subject, code, msg.Data)
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		f.t.Fatal(err)
	}
}

// emit appends another context's event, as its service would.
func (f *fixture) emit(bc events.Context, aggregateID string, e events.Event) {
	f.t.Helper()
	store := eventstore.New(f.js, events.NewRegistry(), bc)
	ctx := context.Background()
	last, err := store.LastSeq(ctx, aggregateID)
	if err != nil {
		f.t.Fatal(err)
	}
	env, _ := events.NewEnvelope(aggregateID, e, time.Now(), events.Meta{CorrelationID: aggregateID})
	if _, err := store.Append(ctx, eventstore.Append{AggregateID: aggregateID, ExpectedSeq: last, CommandID: fmt.Sprintf("test-%s-%d", aggregateID, time.Now().UnixNano()), Events: []events.Envelope{env}}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) view(id string) ordersapi.OrderView {
	f.t.Helper()
	var v ordersapi.OrderView
	raw, err := f.rdb.Get(context.Background(), ordersapi.OrderKey(f.keyspace, id)).Bytes()
	if err == nil {
		_ = json.Unmarshal(raw, &v)
	}
	return v
}

func (f *fixture) waitStatus(id, status string) ordersapi.OrderView {
	f.t.Helper()
	var v ordersapi.OrderView
	testkit.Eventually(f.t, 10*time.Second, func() error {
		v = f.view(id)
		if v.Status != status {
			return fmt.Errorf("order %s is %q, want %q", id, v.Status, status)
		}
		return nil
	})
	return v
}

func (f *fixture) orderLog(id string) []string {
	f.t.Helper()
	recs, _, err := eventstore.New(f.js, events.NewRegistry(), events.Orders).Load(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	var types []string
	for _, r := range recs {
		types = append(types, r.Envelope.Type)
	}
	return types
}

// The saga follows the kitchen's and the drivers' events to Delivered. A
// driver assignment that overtakes the kitchen's "ready" waits for it; a
// repeated event changes nothing; the log is exactly the valid sequence.
func TestSagaDrivesOrderToDelivered(t *testing.T) {
	f := start(t)
	sub := f.rdb.Subscribe(context.Background(), ordersapi.Channel(f.keyspace))
	defer sub.Close()
	if _, err := sub.Receive(context.Background()); err != nil { // subscription confirmed
		t.Fatal(err)
	}
	o := f.place("downtown")
	id := o.OrderID
	pt := events.GeoPoint{Latitude: 45.5, Longitude: -122.6}
	f.emit(events.Inventory, "downtown", events.StockReserved{OrderID: id, RestaurantID: "downtown"})
	f.emit(events.Kitchen, id, events.TicketQueued{RestaurantID: "downtown"})
	f.waitStatus(id, "Queued")
	f.emit(events.Kitchen, id, events.TicketPreparationStarted{RestaurantID: "downtown", ChefID: "downtown-chef-1", Attempt: 1})
	f.emit(events.Kitchen, id, events.TicketBakingStarted{RestaurantID: "downtown"})
	f.emit(events.Kitchen, id, events.TicketQualityCheckStarted{RestaurantID: "downtown"})
	f.emit(events.Kitchen, id, events.TicketQualityCheckFailed{RestaurantID: "downtown", Attempt: 1})
	f.emit(events.Kitchen, id, events.TicketPreparationStarted{RestaurantID: "downtown", ChefID: "downtown-chef-2", Attempt: 2})
	f.emit(events.Kitchen, id, events.TicketBakingStarted{RestaurantID: "downtown"})
	f.emit(events.Kitchen, id, events.TicketQualityCheckStarted{RestaurantID: "downtown"})
	f.waitStatus(id, "QualityCheck")
	// The assignment overtakes "ready": it must wait, not be lost.
	f.emit(events.Drivers, "downtown-driver-1", events.DriverAssigned{OrderID: id, RestaurantID: "downtown", Pickup: pt, Dropoff: pt})
	f.emit(events.Kitchen, id, events.TicketReady{RestaurantID: "downtown"})
	v := f.waitStatus(id, "DriverAssigned")
	if v.AssignedDriverID == nil || *v.AssignedDriverID != "downtown-driver-1" || v.AssignedChefID == nil || *v.AssignedChefID != "downtown-chef-2" {
		t.Fatalf("view %+v", v)
	}
	f.emit(events.Kitchen, id, events.TicketReady{RestaurantID: "downtown"}) // a duplicate fact
	eta := time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC)
	f.emit(events.Drivers, "downtown-driver-1", events.DeliveryPickedUp{OrderID: id, EstimatedDeliveryAt: eta})
	v = f.waitStatus(id, "OutForDelivery")
	if v.EstimatedDeliveryTime == nil || !v.EstimatedDeliveryTime.Equal(eta) {
		t.Fatalf("eta %v", v.EstimatedDeliveryTime)
	}
	f.emit(events.Drivers, "downtown-driver-1", events.DeliveryCompleted{OrderID: id})
	f.waitStatus(id, "Delivered")

	want := []string{"order_placed", "order_queued", "order_preparation_started", "order_baking_started",
		"order_quality_check_started", "order_preparation_started", "order_baking_started", "order_quality_check_started",
		"order_ready_for_pickup", "order_driver_assigned", "order_picked_up", "order_out_for_delivery", "order_delivered"}
	if got := f.orderLog(id); !slices.Equal(got, want) {
		t.Fatalf("order log\n got %v\nwant %v", got, want)
	}
	// Notifications: in order of sequence, each with the whole order as
	// stored at that sequence, the last one the delivered order as stored.
	stored := f.view(id)
	var last ordersapi.Notification
	testkit.Eventually(t, 5*time.Second, func() error {
		for {
			select {
			case m := <-sub.Channel():
				var n ordersapi.Notification
				if err := json.Unmarshal([]byte(m.Payload), &n); err != nil {
					return fmt.Errorf("notification %s: %w", m.Payload, err)
				}
				if n.OrderID != id || n.Seq <= last.Seq || n.Order.Version != n.Seq {
					return fmt.Errorf("notification %s after seq %d", m.Payload, last.Seq)
				}
				last = n
				continue
			default:
			}
			break
		}
		if last.Seq != stored.Version {
			return fmt.Errorf("last notification at seq %d, the stored order at %d", last.Seq, stored.Version)
		}
		return nil
	})
	if a, b := mustJSON(t, last.Order), mustJSON(t, stored); a != b {
		t.Fatalf("last notification's order\n%s\ndiffers from the stored one\n%s", a, b)
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		var d ordersapi.DashboardOrders
		raw, err := f.rdb.Get(context.Background(), ordersapi.DashboardKey(f.keyspace, "downtown")).Bytes()
		if err != nil {
			return err
		}
		_ = json.Unmarshal(raw, &d)
		if d.OrdersByStatus["Delivered"] != 1 || d.ActiveOrders != 0 || d.PrepSamples != 1 || d.DeliverySamples != 1 {
			return fmt.Errorf("dashboard %+v", d)
		}
		return nil
	})
}

func TestOutOfStockFailsTheOrderNamingTheIngredient(t *testing.T) {
	f := start(t)
	o := f.place("pearl")
	f.emit(events.Inventory, "pearl", events.StockReservationRejected{OrderID: o.OrderID, RestaurantID: "pearl",
		Missing: []events.MissingIngredient{{Ingredient: "mozzarella", Required: 2, Available: 0}}})
	v := f.waitStatus(o.OrderID, "Failed")
	if v.FailureReason != "out of stock: mozzarella (need 2, have 0)" {
		t.Fatalf("reason %q", v.FailureReason)
	}
	// A late kitchen event for the failed order is dropped, not retried forever.
	f.emit(events.Kitchen, o.OrderID, events.TicketQueued{RestaurantID: "pearl"})
	marker := f.place("pearl")
	f.emit(events.Kitchen, marker.OrderID, events.TicketQueued{RestaurantID: "pearl"})
	f.waitStatus(marker.OrderID, "Queued")
	if got := f.orderLog(o.OrderID); !slices.Equal(got, []string{"order_placed", "order_failed"}) {
		t.Fatalf("log %v", got)
	}
}

func TestStuckOrderRaisesOneAlertUntilItMoves(t *testing.T) {
	f := start(t)
	o := f.place("downtown")
	f.waitStatus(o.OrderID, "Validated")
	f.advance(4 * time.Minute) // below the 5 minute threshold of Validated
	f.advance(2 * time.Minute)
	testkit.Eventually(t, 10*time.Second, func() error {
		if v := f.view(o.OrderID); !v.Stuck {
			return fmt.Errorf("order not flagged stuck")
		}
		return nil
	})
	f.advance(10 * time.Minute)
	// Let a few more checks run; the alert stays single.
	marker := f.place("downtown")
	f.waitStatus(marker.OrderID, "Validated")
	f.advance(6 * time.Minute)
	testkit.Eventually(t, 10*time.Second, func() error {
		if v := f.view(marker.OrderID); !v.Stuck {
			return fmt.Errorf("marker not flagged yet")
		}
		return nil
	})
	n := 0
	for _, typ := range f.orderLog(o.OrderID) {
		if typ == "order_stuck_detected" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d stuck alerts", n)
	}
	var d ordersapi.DashboardOrders
	raw, _ := f.rdb.Get(context.Background(), ordersapi.DashboardKey(f.keyspace, "downtown")).Bytes()
	_ = json.Unmarshal(raw, &d)
	if !slices.Contains(d.StuckOrders, o.OrderID) {
		t.Fatalf("dashboard stuck list %v", d.StuckOrders)
	}
	f.emit(events.Kitchen, o.OrderID, events.TicketQueued{RestaurantID: "downtown"})
	testkit.Eventually(t, 10*time.Second, func() error {
		if v := f.view(o.OrderID); v.Stuck || v.Status != "Queued" {
			return fmt.Errorf("view %s stuck=%v", v.Status, v.Stuck)
		}
		return nil
	})
}

func TestStaffOverrideIsValidatedAndRecorded(t *testing.T) {
	f := start(t)
	o := f.place("downtown")
	var reply ordersapi.CommandReply
	f.request(ordersapi.SubjectTransition, ordersapi.TransitionCommand{OrderID: o.OrderID, Status: "Queued", By: "manager-1", Reason: "phoned in", Override: true}, &reply)
	if reply.Order.Status != "Queued" {
		t.Fatalf("override gave %s", reply.Order.Status)
	}
	b, _ := json.Marshal(ordersapi.TransitionCommand{OrderID: o.OrderID, Status: "Delivered", By: "manager-1", Override: true})
	msg, err := f.nc.Request(ordersapi.SubjectTransition, b, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var p ordersapi.Problem
	_ = json.Unmarshal(msg.Data, &p)
	if msg.Header.Get("Nats-Service-Error-Code") != "409" || p.CurrentStatus != "Queued" {
		t.Fatalf("forbidden override: %s %s", msg.Header.Get("Nats-Service-Error-Code"), msg.Data)
	}
	if got := f.orderLog(o.OrderID); !slices.Equal(got, []string{"order_placed", "order_queued", "order_status_overridden"}) {
		t.Fatalf("log %v", got)
	}
}

// A command retried with its Idempotency-Key after the order moved on is
// recognised as already done, not decided again (which would be a 409).
func TestLateRetryOfACommandIsReplayed(t *testing.T) {
	f := start(t)
	o := f.place("downtown")
	cmd := ordersapi.TransitionCommand{OrderID: o.OrderID, Status: "Queued", By: "manager-1", Override: true, IdempotencyKey: "queue-it"}
	var first ordersapi.CommandReply
	f.request(ordersapi.SubjectTransition, cmd, &first)
	f.emit(events.Kitchen, o.OrderID, events.TicketPreparationStarted{RestaurantID: "downtown", ChefID: "downtown-chef-1", Attempt: 1})
	f.waitStatus(o.OrderID, "Preparing")
	var again ordersapi.CommandReply
	f.request(ordersapi.SubjectTransition, cmd, &again)
	if !again.Replayed || again.Order.Status != "Preparing" {
		t.Fatalf("late retry: %+v", again)
	}
	if n := len(f.orderLog(o.OrderID)); n != 4 {
		t.Fatalf("log has %d events, want 4: %v", n, f.orderLog(o.OrderID))
	}
}

// An order_placed.v1 stored by an older build (the committed fixture) is
// upcast and projected like a new one, and its order can still be changed.
func TestStoredV1OrderIsProjectedAndUsable(t *testing.T) {
	f := start(t)
	raw, err := os.ReadFile("../../pkg/events/testdata/v1/order_placed.json")
	if err != nil {
		t.Fatal(err)
	}
	env, err := events.UnmarshalEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(events.Orders.Subject(env.AggregateID))
	msg.Data = raw
	msg.Header.Set(events.HeaderType, env.Type)
	msg.Header.Set(events.HeaderVersion, "1")
	if _, err := f.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	v := f.waitStatus(env.AggregateID, "Created")
	if v.TotalCents != 3498 || v.Items[0].UnitPriceCents != 1749 {
		t.Fatalf("projected %+v", v)
	}
	var reply ordersapi.CommandReply
	f.request(ordersapi.SubjectCancel, ordersapi.CancelCommand{OrderID: env.AggregateID, Reason: "old order"}, &reply)
	if reply.Order.Status != "Cancelled" || reply.Order.TotalCents != 3498 {
		t.Fatalf("cancel of a v1 order: %+v", reply.Order)
	}
}

// Erasing a customer's personal data purges their addresses from the
// vault (history included), records the erasure on each order, leaves
// orders and totals as they were, and touches nobody else's data.
func TestErasureRemovesPersonalDataKeepsOrders(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	placeFor := func(customer, street string) ordersapi.OrderView {
		lat, lon := 45.5, -122.6
		var reply ordersapi.CommandReply
		f.request(ordersapi.SubjectPlace, ordersapi.PlaceCommand{Request: ordersapi.PlaceOrderRequest{
			CustomerID: customer, RestaurantID: "downtown", PaymentMethod: "Cash",
			Items:   []ordersapi.ItemRequest{{PizzaType: "Margherita", Size: "Medium", Quantity: 1}},
			Address: &ordersapi.Address{Street: street, City: "Portland", Coordinates: &ordersapi.Coordinates{Latitude: &lat, Longitude: &lon}},
		}}, &reply)
		return reply.Order
	}
	a1, a2 := placeFor("erin", "12 Secret Lane"), placeFor("erin", "99 Hidden Road")
	other := placeFor("frank", "1 Open Street")
	kv, err := f.js.KeyValue(ctx, "PII")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "address."+a1.OrderID); err != nil {
		t.Fatalf("address not stored: %v", err)
	}
	var reply ordersapi.EraseReply
	f.request(ordersapi.SubjectErase, ordersapi.EraseCommand{CustomerID: "erin", By: "privacy-officer"}, &reply)
	slices.Sort(reply.Orders)
	want := []string{a1.OrderID, a2.OrderID}
	slices.Sort(want)
	if !slices.Equal(reply.Orders, want) {
		t.Fatalf("erased %v, want %v", reply.Orders, want)
	}
	for _, id := range want {
		if _, err := kv.Get(ctx, "address."+id); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("address of %s still readable: %v", id, err)
		}
	}
	// Nothing of erin's addresses remains anywhere in the bucket's stream.
	cons, err := f.js.OrderedConsumer(ctx, "KV_PII", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if n := cons.CachedInfo().NumPending; n > 0 {
		batch, err := cons.Fetch(int(n), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if strings.Contains(string(m.Data()), "Secret Lane") || strings.Contains(string(m.Data()), "Hidden Road") {
				t.Fatalf("erased address still in the vault's stream: %s", m.Data())
			}
		}
	}
	if _, err := kv.Get(ctx, "address."+other.OrderID); err != nil {
		t.Fatalf("another customer's address was erased: %v", err)
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		v := f.view(a1.OrderID)
		if !v.PersonalDataErased || v.TotalCents != a1.TotalCents || v.Status != a1.Status {
			return fmt.Errorf("view after erasure %+v", v)
		}
		return nil
	})
	f.request(ordersapi.SubjectErase, ordersapi.EraseCommand{CustomerID: "erin"}, &reply)
	if len(reply.Orders) != 0 {
		t.Fatalf("second erasure found %v", reply.Orders)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
