package kitchen_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/kitchen"
	"github.com/awesome-pizza/pizza/services/kitchen/internal/domain"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/redis/go-redis/v9"
)

const restaurant = "downtown" // chefs downtown-chef-1..3, capacity 2 each

func chef(n int) string { return fmt.Sprintf("%s-chef-%d", restaurant, n) }

// harness is one platform for a test: a fresh JetStream server, a Redis
// keyspace, and stores to play the other contexts.
type harness struct {
	t         *testing.T
	nc        *nats.Conn
	js        jetstream.JetStream
	rdb       *redis.Client
	keyspace  string
	cat       *catalog.Catalog
	kitchen   *eventstore.Store
	inventory *eventstore.Store
	orders    *eventstore.Store
}

func newHarness(t *testing.T, provision bool) *harness {
	t.Helper()
	srv := testkit.RunJetStream(t)
	nc := testkit.Connect(t, srv)
	js := testkit.JetStream(t, nc)
	if provision {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{}, events.DomainContexts()...); err != nil {
			t.Fatal(err)
		}
	}
	rdb, keyspace := testkit.Redis(t)
	reg := events.NewRegistry()
	return &harness{t: t, nc: nc, js: js, rdb: rdb, keyspace: keyspace, cat: catalog.Default(),
		kitchen:   eventstore.New(js, reg, events.Kitchen),
		inventory: eventstore.New(js, reg, events.Inventory),
		orders:    eventstore.New(js, reg, events.Orders),
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("KITCHEN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start runs a kitchen service until the test ends (or Stop) and waits
// until it is ready.
func (h *harness) start(cfg kitchen.Config) *kitchen.Service {
	h.t.Helper()
	svc := h.startNoWait(cfg)
	testkit.Eventually(h.t, 10*time.Second, func() error { return svc.Ready(context.Background()) })
	return svc
}

func (h *harness) startNoWait(cfg kitchen.Config) *kitchen.Service {
	h.t.Helper()
	cfg.Keyspace = h.keyspace
	svc, err := kitchen.New(cfg, kitchen.Deps{NC: h.nc, JS: h.js, Redis: h.rdb, Catalog: h.cat, Log: testLogger(), Clock: time.Now})
	if err != nil {
		h.t.Fatal(err)
	}
	// The service lives as long as the context given to Start.
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	if err := svc.Start(ctx); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(svc.Stop)
	return svc
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// reserve plays the inventory service: stock reserved for an order.
func (h *harness) reserve(orderID string, lines ...events.OrderLine) uint64 {
	h.t.Helper()
	if len(lines) == 0 {
		lines = []events.OrderLine{{PizzaType: "Margherita", Size: "Small", Quantity: 1}}
	}
	e := events.StockReserved{OrderID: orderID, RestaurantID: restaurant, Ingredients: map[string]int64{"dough": 1}, Lines: lines,
		DeliveryLocation: events.GeoPoint{Latitude: 45.52, Longitude: -122.68}}
	return h.append(h.inventory, restaurant, e, "corr-"+orderID)
}

// end plays the orders service: the order was cancelled (or failed).
func (h *harness) end(orderID string, failed bool) uint64 {
	h.t.Helper()
	var e events.Event = events.OrderCancelled{Reason: "changed my mind", CancelledBy: "customer", FromStatus: "Preparing"}
	if failed {
		e = events.OrderFailed{Reason: "oven on fire", FromStatus: "Baking"}
	}
	return h.append(h.orders, orderID, e, "corr-"+orderID)
}

func (h *harness) append(store *eventstore.Store, aggregateID string, e events.Event, correlationID string) uint64 {
	h.t.Helper()
	c := ctx(h.t)
	last, err := store.LastSeq(c, aggregateID)
	if err != nil {
		h.t.Fatal(err)
	}
	env, err := events.NewEnvelope(aggregateID, e, time.Now(), events.Meta{CorrelationID: correlationID})
	if err != nil {
		h.t.Fatal(err)
	}
	res, err := store.Append(c, eventstore.Append{AggregateID: aggregateID, ExpectedSeq: last, CommandID: "test:" + uuid.NewString(), Events: []events.Envelope{env}})
	if err != nil {
		h.t.Fatal(err)
	}
	return res.LastSeq
}

// ticket returns the order's kitchen log.
func (h *harness) ticket(orderID string) []eventstore.Record {
	h.t.Helper()
	recs, _, err := h.kitchen.Load(ctx(h.t), orderID)
	if err != nil {
		h.t.Fatal(err)
	}
	return recs
}

func types(recs []eventstore.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Envelope.Type
	}
	return out
}

// waitFor waits until the order's kitchen log ends with an event of type typ.
func (h *harness) waitFor(orderID, typ string, timeout time.Duration) []eventstore.Record {
	h.t.Helper()
	var recs []eventstore.Record
	testkit.Eventually(h.t, timeout, func() error {
		recs = h.ticket(orderID)
		if len(recs) == 0 || recs[len(recs)-1].Envelope.Type != typ {
			return fmt.Errorf("ticket %s: %v, waiting for %s", orderID, types(recs), typ)
		}
		return nil
	})
	return recs
}

func (h *harness) display() (kitchenapi.KitchenDisplay, bool) {
	h.t.Helper()
	d, err := kitchenapi.LoadDisplay(ctx(h.t), h.rdb, h.keyspace, restaurant)
	if errors.Is(err, kitchenapi.ErrNoDisplay) {
		return kitchenapi.KitchenDisplay{}, false
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return d, true
}

// waitDisplay waits until the display satisfies check.
func (h *harness) waitDisplay(check func(kitchenapi.KitchenDisplay) error) kitchenapi.KitchenDisplay {
	h.t.Helper()
	var d kitchenapi.KitchenDisplay
	testkit.Eventually(h.t, 10*time.Second, func() error {
		var ok bool
		if d, ok = h.display(); !ok {
			return errors.New("no display yet")
		}
		return check(d)
	})
	return d
}

func ticketView(d kitchenapi.KitchenDisplay, orderID string) (kitchenapi.TicketView, bool) {
	i := slices.IndexFunc(d.Tickets, func(t kitchenapi.TicketView) bool { return t.OrderID == orderID })
	if i < 0 {
		return kitchenapi.TicketView{}, false
	}
	return d.Tickets[i], true
}

func chefView(d kitchenapi.KitchenDisplay, id string) kitchenapi.ChefView {
	i := slices.IndexFunc(d.Chefs, func(c kitchenapi.ChefView) bool { return c.ChefID == id })
	if i < 0 {
		return kitchenapi.ChefView{}
	}
	return d.Chefs[i]
}

// chefBreak sends the command as the gateway does and returns the reply
// or the problem of a typed error reply.
func (h *harness) chefBreak(cmd kitchenapi.ChefBreakCommand) (kitchenapi.ChefBreakReply, *problem.Problem) {
	h.t.Helper()
	b, _ := json.Marshal(cmd)
	return h.request(b)
}

func (h *harness) request(body []byte) (kitchenapi.ChefBreakReply, *problem.Problem) {
	h.t.Helper()
	msg, err := h.nc.Request(kitchenapi.SubjectChefBreak, body, 10*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		var p problem.Problem
		if err := json.Unmarshal(msg.Data, &p); err != nil {
			h.t.Fatalf("error reply %s without a problem: %q", code, msg.Data)
		}
		if fmt.Sprint(p.Status) != code {
			h.t.Fatalf("error code %s but problem status %d", code, p.Status)
		}
		return kitchenapi.ChefBreakReply{}, &p
	}
	var r kitchenapi.ChefBreakReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		h.t.Fatal(err)
	}
	return r, nil
}

func ptr[T any](v T) *T { return &v }

func due(t *testing.T, rec eventstore.Record) time.Time {
	t.Helper()
	switch e := rec.Event.(type) {
	case events.TicketPreparationStarted:
		return e.DueAt
	case events.TicketBakingStarted:
		return e.DueAt
	case events.TicketQualityCheckStarted:
		return e.DueAt
	}
	t.Fatalf("%s has no deadline", rec.Envelope.Type)
	return time.Time{}
}

var happyPath = []string{"ticket_queued", "ticket_preparation_started", "ticket_baking_started", "ticket_quality_check_started", "ticket_ready"}

func TestTicketFlowsToReady(t *testing.T) {
	h := newHarness(t, true)
	const scale = 1200
	h.start(kitchen.Config{TimeScale: scale, QCFailureRate: kitchen.NoQCFailures})
	sub := h.rdb.Subscribe(ctx(t), kitchenapi.Channel(h.keyspace))
	defer sub.Close()
	if _, err := sub.Receive(ctx(t)); err != nil { // subscription confirmed
		t.Fatal(err)
	}

	order := uuid.NewString()
	lines := []events.OrderLine{{PizzaType: "Margherita", Size: "Large", Quantity: 2, Toppings: []string{"Basil"}}}
	h.reserve(order, lines...)
	recs := h.waitFor(order, "ticket_ready", 15*time.Second)
	if got := types(recs); !slices.Equal(got, happyPath) {
		t.Fatalf("ticket log %v, want %v", got, happyPath)
	}
	scaled := func(d time.Duration) time.Duration { return time.Duration(float64(d) / scale) }
	wantStage := []time.Duration{scaled(7 * time.Minute), scaled(8 * time.Minute), scaled(time.Minute)} // 2 large: 6m+1m; bake large; check
	for i, rec := range recs[1:4] {
		if got := due(t, rec).Sub(rec.Envelope.OccurredAt); got != wantStage[i] {
			t.Errorf("%s lasts %v, want %v", rec.Envelope.Type, got, wantStage[i])
		}
		if next := recs[i+2]; next.Envelope.OccurredAt.Before(due(t, rec)) {
			t.Errorf("%s at %v, before the previous stage was due at %v", next.Envelope.Type, next.Envelope.OccurredAt, due(t, rec))
		}
	}
	prep := recs[1].Event.(events.TicketPreparationStarted)
	if prep.ChefID != chef(1) || prep.Attempt != 1 || prep.RestaurantID != restaurant {
		t.Errorf("preparation %+v", prep)
	}
	ready := recs[4].Event.(events.TicketReady)
	if ready.RestaurantID != restaurant || ready.DeliveryLocation.Latitude != 45.52 {
		t.Errorf("ready %+v", ready)
	}
	for _, rec := range recs {
		if rec.Envelope.CorrelationID != "corr-"+order {
			t.Errorf("%s correlation %q", rec.Envelope.Type, rec.Envelope.CorrelationID)
		}
	}

	d := h.waitDisplay(func(d kitchenapi.KitchenDisplay) error {
		if d.Version != recs[4].Seq {
			return fmt.Errorf("display at %d, want %d", d.Version, recs[4].Seq)
		}
		return nil
	})
	tv, ok := ticketView(d, order)
	if !ok || tv.Stage != kitchenapi.StageReady || tv.ChefID != chef(1) || tv.Attempt != 1 || tv.DueAt != nil || tv.QueuePosition != 0 ||
		len(tv.Lines) != 1 || tv.Lines[0].Size != "Large" || tv.Lines[0].Quantity != 2 || !tv.QueuedAt.Equal(recs[0].Envelope.OccurredAt) {
		t.Errorf("ticket view %+v", tv)
	}
	if d.Counts != (kitchenapi.StageCounts{Ready: 1}) {
		t.Errorf("counts %+v", d.Counts)
	}
	if len(d.Chefs) != 3 || d.Chefs[0].Name != "Ana" || d.Chefs[0].Capacity != 2 || d.Chefs[0].ActiveTickets != 0 {
		t.Errorf("chefs %+v", d.Chefs)
	}

	// The changes were announced once per batch of the projector, with
	// the display's version and counts after the batch, and without the
	// display: versions grow, and the last one is the Ready display's.
	var seen []uint64
	var last kitchenapi.Notification
	testkit.Eventually(t, 5*time.Second, func() error {
		for {
			msg, err := sub.ReceiveTimeout(ctx(t), 50*time.Millisecond)
			if err != nil {
				break
			}
			payload := msg.(*redis.Message).Payload
			if strings.Contains(payload, "tickets") {
				return fmt.Errorf("the notification carries the display: %s", payload)
			}
			var n kitchenapi.Notification
			if err := json.Unmarshal([]byte(payload), &n); err != nil {
				return err
			}
			if n.RestaurantID == restaurant {
				seen = append(seen, n.Seq)
				last = n
			}
		}
		if !slices.IsSorted(seen) || len(slices.Compact(slices.Clone(seen))) != len(seen) {
			return fmt.Errorf("notified versions %v do not grow", seen)
		}
		if len(seen) == 0 || last.Seq != d.Version || last.Counts != d.Counts {
			return fmt.Errorf("last notification %+v, want the Ready display's version %d and counts %+v", last, d.Version, d.Counts)
		}
		return nil
	})
}

func TestQualityCheckFailureRemakes(t *testing.T) {
	h := newHarness(t, true)
	policy := domain.Policy{QCFailureRate: 0.5, Seed: 42}
	order := ""
	for i := 0; order == ""; i++ {
		if id := fmt.Sprintf("qc-order-%d", i); !policy.Passes(id, 1) && policy.Passes(id, 2) {
			order = id
		}
	}
	h.start(kitchen.Config{TimeScale: 3000, QCFailureRate: policy.QCFailureRate, Seed: policy.Seed})
	h.reserve(order)
	recs := h.waitFor(order, "ticket_ready", 15*time.Second)
	want := []string{"ticket_queued", "ticket_preparation_started", "ticket_baking_started", "ticket_quality_check_started",
		"ticket_quality_check_failed", "ticket_preparation_started", "ticket_baking_started", "ticket_quality_check_started", "ticket_ready"}
	if got := types(recs); !slices.Equal(got, want) {
		t.Fatalf("ticket log %v, want %v", got, want)
	}
	if f := recs[4].Event.(events.TicketQualityCheckFailed); f.Attempt != 1 {
		t.Errorf("failed check %+v", f)
	}
	if p := recs[5].Event.(events.TicketPreparationStarted); p.Attempt != 2 {
		t.Errorf("remake %+v", p)
	}
	ids := map[string]bool{}
	for _, r := range recs {
		if ids[r.CommandID] {
			t.Errorf("command id %s used twice", r.CommandID)
		}
		ids[r.CommandID] = true
	}
	h.waitDisplay(func(d kitchenapi.KitchenDisplay) error {
		if tv, ok := ticketView(d, order); !ok || tv.Stage != "Ready" || tv.Attempt != 2 || !tv.Remake {
			return fmt.Errorf("ticket view %+v", tv)
		}
		return nil
	})
}

// Eight orders for six places (three chefs of capacity two): the first six
// are shared out in turn, the last two wait in order; a cancellation frees
// its chef for the head of the queue.
func TestFIFOFairAssignmentAndWithdrawal(t *testing.T) {
	h := newHarness(t, true)
	h.start(kitchen.Config{TimeScale: 1, QCFailureRate: kitchen.NoQCFailures}) // real time: nothing finishes during the test
	orders := make([]string, 8)
	for i := range orders {
		orders[i] = fmt.Sprintf("fifo-%d", i+1)
		h.reserve(orders[i])
	}
	wantChef := []string{chef(1), chef(2), chef(3), chef(1), chef(2), chef(3)}
	for i, o := range orders[:6] {
		recs := h.waitFor(o, "ticket_preparation_started", 10*time.Second)
		if got := recs[1].Event.(events.TicketPreparationStarted).ChefID; got != wantChef[i] {
			t.Errorf("%s went to %s, want %s", o, got, wantChef[i])
		}
	}
	d := h.waitDisplay(func(d kitchenapi.KitchenDisplay) error {
		if d.Counts != (kitchenapi.StageCounts{Preparing: 6, Queued: 2}) {
			return fmt.Errorf("counts %+v", d.Counts)
		}
		return nil
	})
	for i, o := range orders[6:] {
		if tv, _ := ticketView(d, o); tv.Stage != "Queued" || tv.QueuePosition != i+1 {
			t.Errorf("%s: %+v, want queued at %d", o, tv, i+1)
		}
		if got := types(h.ticket(o)); len(got) != 1 {
			t.Errorf("%s should wait: %v", o, got)
		}
	}
	for n := 1; n <= 3; n++ {
		if c := chefView(d, chef(n)); c.ActiveTickets != 2 {
			t.Errorf("chef %d: %+v", n, c)
		}
	}
	if got := slices.IndexFunc(d.Tickets, func(tv kitchenapi.TicketView) bool { return tv.OrderID == orders[7] }); got != 7 {
		t.Errorf("display not in queue order: %s at %d", orders[7], got)
	}

	// Cancel fifo-2 (chef 2 is preparing it): withdrawn, and chef 2 takes fifo-7.
	h.end(orders[1], false)
	recs := h.waitFor(orders[1], "ticket_withdrawn", 10*time.Second)
	w := recs[len(recs)-1].Event.(events.TicketWithdrawn)
	if w.FromStage != "Preparing" || w.RestaurantID != restaurant || !strings.Contains(w.Reason, "changed my mind") {
		t.Errorf("withdrawn %+v", w)
	}
	recs = h.waitFor(orders[6], "ticket_preparation_started", 10*time.Second)
	if got := recs[1].Event.(events.TicketPreparationStarted).ChefID; got != chef(2) {
		t.Errorf("fifo-7 went to %s, want the freed %s", got, chef(2))
	}
	// A failed order still queued is withdrawn too.
	h.end(orders[7], true)
	recs = h.waitFor(orders[7], "ticket_withdrawn", 10*time.Second)
	if w := recs[1].Event.(events.TicketWithdrawn); w.FromStage != "Queued" || !strings.HasPrefix(w.Reason, "order failed") {
		t.Errorf("withdrawn %+v", w)
	}
	h.waitDisplay(func(d kitchenapi.KitchenDisplay) error {
		if d.Counts != (kitchenapi.StageCounts{Preparing: 6}) {
			return fmt.Errorf("counts %+v", d.Counts)
		}
		if _, ok := ticketView(d, orders[1]); ok {
			return errors.New("withdrawn ticket still displayed")
		}
		if c := chefView(d, chef(2)); c.ActiveTickets != 2 {
			return fmt.Errorf("chef 2: %+v", c)
		}
		return nil
	})
}

// A cancellation that overtakes the stock reservation leaves a withdrawal
// on the ticket's subject, so the late reservation opens no ticket.
func TestCancellationBeforeReservation(t *testing.T) {
	h := newHarness(t, true)
	h.start(kitchen.Config{TimeScale: 1})
	order := uuid.NewString()
	h.end(order, false)
	recs := h.waitFor(order, "ticket_withdrawn", 10*time.Second)
	if w := recs[0].Event.(events.TicketWithdrawn); w.FromStage != "None" || w.RestaurantID != "" {
		t.Errorf("withdrawal %+v", w)
	}
	h.reserve(order)
	other := uuid.NewString()
	h.reserve(other) // processed after the first one: a marker
	h.waitFor(other, "ticket_preparation_started", 10*time.Second)
	if got := types(h.ticket(order)); !slices.Equal(got, []string{"ticket_withdrawn"}) {
		t.Fatalf("ticket of the cancelled order: %v", got)
	}
	h.waitDisplay(func(d kitchenapi.KitchenDisplay) error {
		if _, ok := ticketView(d, other); !ok {
			return errors.New("marker not displayed")
		}
		if _, ok := ticketView(d, order); ok {
			return errors.New("cancelled order displayed")
		}
		return nil
	})
}

func TestChefBreak(t *testing.T) {
	h := newHarness(t, true)
	h.start(kitchen.Config{TimeScale: 1})

	r, p := h.chefBreak(kitchenapi.ChefBreakCommand{ChefID: chef(1), RestaurantID: restaurant, OnBreak: ptr(true), By: "manager-1"})
	if p != nil || !r.OnBreak || r.RestaurantID != restaurant || r.Seq == 0 {
		t.Fatalf("start break: %+v %v", r, p)
	}
	errorCases := []struct {
		name   string
		body   string
		status int
		field  string
		state  string
	}{
		{"already on break", fmt.Sprintf(`{"chefId":%q,"onBreak":true}`, chef(1)), 409, "", kitchenapi.ChefOnBreak},
		{"not on break", fmt.Sprintf(`{"chefId":%q,"onBreak":false}`, chef(2)), 409, "", kitchenapi.ChefWorking},
		{"unknown chef", `{"chefId":"nobody","onBreak":true}`, 404, "", ""},
		{"chef of another restaurant", `{"chefId":"pearl-chef-1","restaurantId":"downtown","onBreak":true}`, 404, "", ""},
		{"chef id missing", `{"onBreak":true}`, 422, "chefId", ""},
		{"onBreak missing", fmt.Sprintf(`{"chefId":%q}`, chef(2)), 422, "onBreak", ""},
		{"not JSON", `{"chefId":`, 400, "", ""},
	}
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			_, p := h.request([]byte(tc.body))
			if p == nil || p.Status != tc.status || p.Type == "" || p.CurrentStatus != tc.state {
				t.Fatalf("got %+v, want status %d state %q", p, tc.status, tc.state)
			}
			if tc.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tc.field) {
				t.Fatalf("field errors %+v, want %s", p.Errors, tc.field)
			}
		})
	}

	// Chef 1 is on break: the others share the work.
	for i := 1; i <= 3; i++ {
		h.reserve(fmt.Sprintf("break-%d", i))
	}
	for i, want := range []string{chef(2), chef(3), chef(2)} {
		recs := h.waitFor(fmt.Sprintf("break-%d", i+1), "ticket_preparation_started", 10*time.Second)
		if got := recs[1].Event.(events.TicketPreparationStarted).ChefID; got != want {
			t.Errorf("break-%d went to %s, want %s", i+1, got, want)
		}
	}
	h.waitDisplay(func(d kitchenapi.KitchenDisplay) error {
		if c := chefView(d, chef(1)); !c.OnBreak || c.ActiveTickets != 0 {
			return fmt.Errorf("chef 1: %+v", c)
		}
		return nil
	})

	// Back from the break (retried with an idempotency key): chef 1 takes the next ticket.
	end := kitchenapi.ChefBreakCommand{ChefID: chef(1), OnBreak: ptr(false), IdempotencyKey: "back-1"}
	r, p = h.chefBreak(end)
	if p != nil || r.OnBreak || r.Replayed {
		t.Fatalf("end break: %+v %v", r, p)
	}
	again, p := h.chefBreak(end)
	if p != nil || !again.Replayed || again.Seq != r.Seq {
		t.Fatalf("retried end break: %+v %v", again, p)
	}
	h.reserve("break-4")
	recs := h.waitFor("break-4", "ticket_preparation_started", 10*time.Second)
	if got := recs[1].Event.(events.TicketPreparationStarted).ChefID; got != chef(1) {
		t.Errorf("break-4 went to %s, want %s", got, chef(1))
	}
	chefLog := types(h.ticket(chef(1)))
	if !slices.Equal(chefLog, []string{"chef_break_started", "chef_break_ended"}) {
		t.Errorf("chef log %v", chefLog)
	}
}

// The kitchen is stopped while a pizza bakes and a new instance takes over:
// the bake ends at its stored deadline and no step is recorded twice.
func TestRestartMidBake(t *testing.T) {
	h := newHarness(t, true)
	cfg := kitchen.Config{TimeScale: 300, QCFailureRate: kitchen.NoQCFailures} // prep 0.8s, bake 1.2s, check 0.2s
	first := h.start(cfg)
	order := uuid.NewString()
	h.reserve(order)
	recs := h.waitFor(order, "ticket_baking_started", 10*time.Second)
	bakeDue := due(t, recs[2])
	first.Stop()
	h.start(cfg)
	if left := time.Until(bakeDue); left > 0 {
		t.Logf("restarted %v before the bake is due", left)
	}

	recs = h.waitFor(order, "ticket_ready", 15*time.Second)
	if got := types(recs); !slices.Equal(got, happyPath) {
		t.Fatalf("ticket log %v, want %v", got, happyPath)
	}
	checkAt := recs[3].Envelope.OccurredAt
	if late := checkAt.Sub(bakeDue); late < 0 || late > time.Second {
		t.Fatalf("quality check started %v after the bake was due, want on time", late)
	}
	// Nothing else landed in the kitchen log.
	info, err := h.js.Stream(ctx(t), events.Kitchen.Stream)
	if err != nil {
		t.Fatal(err)
	}
	si, _ := info.Info(ctx(t))
	if si.State.Msgs != uint64(len(happyPath)) {
		t.Fatalf("kitchen stream holds %d events, want %d", si.State.Msgs, len(happyPath))
	}

	// The display rebuilds from the log to the same document.
	before := h.waitDisplay(func(d kitchenapi.KitchenDisplay) error {
		if d.Version != recs[4].Seq {
			return fmt.Errorf("display at %d", d.Version)
		}
		return nil
	})
	if err := projection.DeleteModel(ctx(t), h.rdb, h.keyspace, kitchenapi.ReadModel); err != nil {
		t.Fatal(err)
	}
	h.rdb.Del(ctx(t), kitchenapi.CheckpointKey(h.keyspace))
	h.start(cfg)
	after := h.waitDisplay(func(d kitchenapi.KitchenDisplay) error {
		if d.Version != recs[4].Seq {
			return fmt.Errorf("display at %d", d.Version)
		}
		return nil
	})
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if string(b1) != string(b2) {
		t.Fatalf("rebuilt display differs:\n%s\n%s", b1, b2)
	}
}

// A stock reservation delivered again (the durable consumer is recreated
// and replays INVENTORY) or a second reservation for the same order opens
// no second ticket.
func TestRedeliveredReservationOpensOneTicket(t *testing.T) {
	h := newHarness(t, true)
	cfg := kitchen.Config{TimeScale: 1}
	svc := h.start(cfg)
	order := uuid.NewString()
	h.reserve(order)
	h.waitFor(order, "ticket_preparation_started", 10*time.Second)
	h.reserve(order) // the same order reserved again
	svc.Stop()

	if err := h.js.DeleteConsumer(ctx(t), events.Inventory.Stream, kitchenapi.DurableInventory); err != nil {
		t.Fatal(err)
	}
	h.start(cfg)
	testkit.Eventually(t, 10*time.Second, func() error {
		c, err := h.js.Consumer(ctx(t), events.Inventory.Stream, kitchenapi.DurableInventory)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx(t))
		if err != nil {
			return err
		}
		if info.AckFloor.Stream < 2 || info.NumPending > 0 || info.NumAckPending > 0 {
			return fmt.Errorf("consumer at %d, %d pending, %d unacknowledged", info.AckFloor.Stream, info.NumPending, info.NumAckPending)
		}
		return nil
	})
	if got := types(h.ticket(order)); !slices.Equal(got, []string{"ticket_queued", "ticket_preparation_started"}) {
		t.Fatalf("ticket log %v", got)
	}
}

// The kitchen may start before the other services created their streams:
// it is not ready until its consumers run, then works as usual.
func TestStartsBeforeOtherStreams(t *testing.T) {
	h := newHarness(t, false)
	svc := h.startNoWait(kitchen.Config{TimeScale: 1})
	err := svc.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), kitchenapi.DurableOrders) || !strings.Contains(err.Error(), kitchenapi.DurableInventory) {
		t.Fatalf("ready before the streams exist: %v", err)
	}
	if err := eventstore.Provision(ctx(t), h.js, eventstore.StreamOptions{}, events.DomainContexts()...); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error { return svc.Ready(context.Background()) })
	order := uuid.NewString()
	h.reserve(order)
	h.waitFor(order, "ticket_preparation_started", 10*time.Second)
}

func TestConfigValidation(t *testing.T) {
	h := newHarness(t, false)
	deps := kitchen.Deps{NC: h.nc, JS: h.js, Redis: h.rdb, Catalog: h.cat}
	for _, cfg := range []kitchen.Config{{QCFailureRate: 1}, {TimeScale: -1}} {
		if _, err := kitchen.New(cfg, deps); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
	if _, err := kitchen.New(kitchen.Config{}, kitchen.Deps{}); err == nil {
		t.Error("missing dependencies accepted")
	}
}
