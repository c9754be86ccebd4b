package drivers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/drivers"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// The seeded catalogue's downtown restaurant and its drivers.
const (
	downtown = "downtown"
	d1       = "downtown-driver-1" // scooter
	d2       = "downtown-driver-2" // car
	d3       = "downtown-driver-3" // bike
)

var (
	t0           = time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)
	downtownLoc  = events.GeoPoint{Latitude: 45.5189, Longitude: -122.679}
	customerLoc  = events.GeoPoint{Latitude: 45.5289, Longitude: -122.679}
	waitTimeout  = 10 * time.Second
	testTimeScal = 60.0
)

// clock is the injected clock: fixed unless a test moves it.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// harness runs the drivers service against a real in-process JetStream
// and the real Redis, and produces other contexts' events by appending
// them to their streams.
type harness struct {
	t       *testing.T
	nc      *nats.Conn
	js      jetstream.JetStream
	rdb     *redis.Client
	ks      string
	clock   *clock
	cfg     drivers.Config
	svc     *drivers.Service
	store   *eventstore.Store // DRIVERS
	kitchen *eventstore.Store
	orders  *eventstore.Store
}

func newHarness(t *testing.T, cfg drivers.Config) *harness {
	t.Helper()
	ns := testkit.RunJetStream(t)
	nc := testkit.Connect(t, ns)
	js := testkit.JetStream(t, nc)
	if err := eventstore.Provision(context.Background(), js, eventstore.StreamOptions{}, events.DomainContexts()...); err != nil {
		t.Fatal(err)
	}
	rdb, ks := testkit.Redis(t)
	cfg.Keyspace = ks
	if cfg.TimeScale == 0 {
		cfg.TimeScale = testTimeScal
	}
	reg := events.NewRegistry()
	h := &harness{t: t, nc: nc, js: js, rdb: rdb, ks: ks, clock: &clock{now: t0}, cfg: cfg,
		store: eventstore.New(js, reg, events.Drivers), kitchen: eventstore.New(js, reg, events.Kitchen), orders: eventstore.New(js, reg, events.Orders)}
	h.start()
	return h
}

func testLogger() *slog.Logger {
	if os.Getenv("DRIVERS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start starts a new Service instance on the same log and Redis.
func (h *harness) start() {
	h.t.Helper()
	svc, err := drivers.New(h.cfg, drivers.Deps{NC: h.nc, JS: h.js, Redis: h.rdb, Catalog: catalog.Default(), Log: testLogger(), Clock: h.clock.Now})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(svc.Stop)
	h.svc = svc
	testkit.Eventually(h.t, waitTimeout, func() error { return svc.Ready(context.Background()) })
}

// call sends a command; a typed error reply comes back as its problem.
// It is safe from any goroutine.
func (h *harness) call(subject string, cmd, out any) (*problem.Problem, error) {
	data, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	msg, err := h.nc.Request(subject, data, waitTimeout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", subject, err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		var p problem.Problem
		if err := json.Unmarshal(msg.Data, &p); err != nil {
			return nil, fmt.Errorf("%s: error %s without a problem document: %q", subject, code, msg.Data)
		}
		if fmt.Sprint(p.Status) != code {
			return nil, fmt.Errorf("%s: error code %s but problem status %d", subject, code, p.Status)
		}
		return &p, nil
	}
	return nil, json.Unmarshal(msg.Data, out)
}

// ok sends a command that must succeed.
func (h *harness) ok(subject string, cmd any) driversapi.CommandReply {
	h.t.Helper()
	var r driversapi.CommandReply
	p, err := h.call(subject, cmd, &r)
	if err != nil {
		h.t.Fatal(err)
	}
	if p != nil {
		h.t.Fatalf("%s %+v: %s", subject, cmd, p.Error())
	}
	return r
}

// fails sends a command that must be refused with status.
func (h *harness) fails(status int, subject string, cmd any) *problem.Problem {
	h.t.Helper()
	var r json.RawMessage
	p, err := h.call(subject, cmd, &r)
	if err != nil {
		h.t.Fatal(err)
	}
	if p == nil || p.Status != status {
		h.t.Fatalf("%s %+v: got %v (reply %s), want status %d", subject, cmd, p, r, status)
	}
	return p
}

func (h *harness) setStatus(driverID, status string) driversapi.CommandReply {
	h.t.Helper()
	return h.ok(driversapi.SubjectStatus, driversapi.StatusCommand{DriverID: driverID, Status: status})
}

func (h *harness) locate(driverID string, p events.GeoPoint, speed *float64) driversapi.LocationReply {
	h.t.Helper()
	var r driversapi.LocationReply
	prob, err := h.call(driversapi.SubjectLocation, driversapi.LocationCommand{DriverID: driverID, Latitude: &p.Latitude, Longitude: &p.Longitude, SpeedKmh: speed}, &r)
	if err != nil || prob != nil {
		h.t.Fatalf("location of %s: %v %v", driverID, err, prob)
	}
	return r
}

// ready appends the kitchen's ticket_ready for an order.
func (h *harness) ready(orderID, restaurantID string, dropoff events.GeoPoint) error {
	return h.appendTo(h.kitchen, orderID, events.TicketReady{RestaurantID: restaurantID, DeliveryLocation: dropoff})
}

// end appends the orders process's order_cancelled or order_failed.
func (h *harness) end(orderID string, failed bool) {
	h.t.Helper()
	var e events.Event = events.OrderCancelled{Reason: "customer changed their mind", FromStatus: "ReadyForPickup"}
	if failed {
		e = events.OrderFailed{Reason: "oven broke", FromStatus: "DriverAssigned"}
	}
	if err := h.appendTo(h.orders, orderID, e); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) appendTo(s *eventstore.Store, id string, e events.Event) error {
	ctx := context.Background()
	seq, err := s.LastSeq(ctx, id)
	if err != nil {
		return err
	}
	env, err := events.NewEnvelope(id, e, h.clock.Now(), events.Meta{CorrelationID: id})
	if err != nil {
		return err
	}
	_, err = s.Append(ctx, eventstore.Append{AggregateID: id, ExpectedSeq: seq, CommandID: fmt.Sprintf("test:%s:%d", id, seq), Events: []events.Envelope{env}})
	return err
}

// getJSON reads a read-model key; false when it does not exist.
func (h *harness) getJSON(key string, v any) (bool, error) {
	raw, err := h.rdb.Get(context.Background(), key).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal([]byte(raw), v)
}

// waitDriver polls the driver's view in Redis until check passes.
func (h *harness) waitDriver(driverID string, check func(driversapi.DriverView) error) driversapi.DriverView {
	h.t.Helper()
	var v driversapi.DriverView
	testkit.Eventually(h.t, waitTimeout, func() error {
		ok, err := h.getJSON(driversapi.DriverKey(h.ks, driverID), &v)
		if err != nil || !ok {
			return fmt.Errorf("driver view %s: present %v, %v", driverID, ok, err)
		}
		return check(v)
	})
	return v
}

func holds(orderID string) func(driversapi.DriverView) error {
	return func(v driversapi.DriverView) error {
		if v.Status != driversapi.StatusBusy || v.CurrentOrderID == nil || *v.CurrentOrderID != orderID {
			return fmt.Errorf("driver %s is %s holding %v, want Busy holding %s", v.DriverID, v.Status, deref(v.CurrentOrderID), orderID)
		}
		return nil
	}
}

func hasStatus(status string) func(driversapi.DriverView) error {
	return func(v driversapi.DriverView) error {
		if v.Status != status {
			return fmt.Errorf("driver %s is %s (holding %v), want %s", v.DriverID, v.Status, deref(v.CurrentOrderID), status)
		}
		return nil
	}
}

// waitQueue polls a restaurant's queue view until it lists exactly want.
func (h *harness) waitQueue(restaurantID string, want ...string) {
	h.t.Helper()
	testkit.Eventually(h.t, waitTimeout, func() error {
		var v driversapi.QueueView
		if _, err := h.getJSON(driversapi.QueueKey(h.ks, restaurantID), &v); err != nil {
			return err
		}
		got := []string{}
		for _, w := range v.Waiting {
			got = append(got, w.OrderID)
		}
		if fmt.Sprint(got) != fmt.Sprint(append([]string{}, want...)) {
			return fmt.Errorf("queue of %s: %v, want %v", restaurantID, got, want)
		}
		return nil
	})
}

// waitQueueSet polls a restaurant's queue view until it holds exactly
// the orders of want, in any order.
func (h *harness) waitQueueSet(restaurantID string, want ...string) {
	h.t.Helper()
	want = slices.Sorted(slices.Values(want))
	testkit.Eventually(h.t, waitTimeout, func() error {
		var v driversapi.QueueView
		if _, err := h.getJSON(driversapi.QueueKey(h.ks, restaurantID), &v); err != nil {
			return err
		}
		var got []string
		for _, w := range v.Waiting {
			got = append(got, w.OrderID)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("queue of %s: %v, want %v in any order", restaurantID, got, want)
		}
		return nil
	})
}

// waitDelivery polls an order's delivery view until it has status.
func (h *harness) waitDelivery(orderID, status string) driversapi.DeliveryView {
	h.t.Helper()
	var v driversapi.DeliveryView
	testkit.Eventually(h.t, waitTimeout, func() error {
		ok, err := h.getJSON(driversapi.DeliveryKey(h.ks, orderID), &v)
		if err != nil || !ok {
			return fmt.Errorf("delivery view %s: present %v, %v", orderID, ok, err)
		}
		if v.Status != status {
			return fmt.Errorf("delivery %s is %s, want %s", orderID, v.Status, status)
		}
		return nil
	})
	return v
}

// driverLog is every DRIVERS event, in order.
func (h *harness) driverLog() []eventstore.Record {
	h.t.Helper()
	ctx := context.Background()
	st, err := h.js.Stream(ctx, events.Drivers.Stream)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var recs []eventstore.Record
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil {
			h.t.Fatal(err)
		}
		rec, err := eventstore.DecodeMessage(events.NewRegistry(), raw.Subject, raw.Header, raw.Data, events.Drivers.Stream, raw.Sequence, raw.Time)
		if err != nil {
			h.t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// checkLog asserts the log's invariants: a driver holds at most one order
// at a time, every order is assigned at most once, and every
// assignment was appended together with the queue's closing record.
func (h *harness) checkLog() (assignedTo map[string][]string) {
	h.t.Helper()
	holding := map[string]string{}
	assignedTo = map[string][]string{}
	recs := h.driverLog()
	for i, r := range recs {
		switch e := r.Event.(type) {
		case events.DriverAssigned:
			driverID := r.Envelope.AggregateID
			if cur := holding[driverID]; cur != "" {
				h.t.Fatalf("seq %d: %s assigned %s while holding %s", r.Seq, driverID, e.OrderID, cur)
			}
			holding[driverID] = e.OrderID
			assignedTo[e.OrderID] = append(assignedTo[e.OrderID], driverID)
			if i+1 >= len(recs) {
				h.t.Fatalf("seq %d: assignment without the queue's record", r.Seq)
			}
			next := recs[i+1]
			closed, ok := next.Event.(events.DeliveryRequestClosed)
			if !ok || closed.OrderID != e.OrderID || closed.DriverID != driverID || closed.Reason != "assigned" || next.CommandID != r.CommandID {
				h.t.Fatalf("seq %d: assignment of %s to %s not followed by its queue record in the same batch: %+v", r.Seq, e.OrderID, driverID, next)
			}
		case events.DriverUnassigned, events.DeliveryCompleted:
			holding[r.Envelope.AggregateID] = ""
		}
	}
	for orderID, ds := range assignedTo {
		if len(ds) > 1 {
			h.t.Fatalf("order %s was assigned %d times: %v", orderID, len(ds), ds)
		}
	}
	return assignedTo
}

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}

func ptr[T any](v T) *T { return &v }
