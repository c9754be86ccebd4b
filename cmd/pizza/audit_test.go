package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
)

// The history of a delivered order lists every event of its life, across
// the four contexts, in the order they were stored; and the order "as of"
// each sequence of its life is exactly the snapshot the live read model
// streamed at that sequence.
func TestAuditHistoryAndTimeTravel(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end lifecycle")
	}
	_, keyspace := testkit.Redis(t)
	h := startPlatform(t, PlatformConfig{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), RedisURL: testkit.RedisURL(),
		Keyspace: keyspace, TimeScale: 3000, QCFailureRate: 0.5, Seed: 11})
	defer func() { h.stop() }()

	id := h.placePearl()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, _ := h.openTrack(ctx, id, "")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go driveDrivers(t, h, []string{"pearl"}, stop, &wg)
	snapshots := map[uint64]ordersapi.OrderView{}
	for {
		ev := next(t, stream, 30*time.Second)
		snapshots[ev.id] = ev.order
		if ev.order.Status == "Delivered" {
			break
		}
	}
	close(stop)
	wg.Wait()

	res, b := h.do("GET", "/api/orders/"+id+"/events", "", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("history: %d %s", res.StatusCode, b)
	}
	var hist ordersapi.HistoryReply
	if err := json.Unmarshal(b, &hist); err != nil {
		t.Fatal(err)
	}
	byStream := map[string][]string{}
	var last time.Time
	for _, e := range hist.Events {
		if e.StoredAt.Before(last) {
			t.Fatalf("history out of order at %s %d", e.Stream, e.Seq)
		}
		last = e.StoredAt
		byStream[e.Stream] = append(byStream[e.Stream], e.Type)
		if e.Version < 1 || e.EventID == "" || e.Seq == 0 {
			t.Fatalf("incomplete history entry %+v", e)
		}
	}
	if !slices.Equal(byStream["ORDERS"], h.orderLog(id)) {
		t.Fatalf("ORDERS part of the history %v differs from the log %v", byStream["ORDERS"], h.orderLog(id))
	}
	for stream, must := range map[string][]string{
		"KITCHEN":   {"ticket_queued", "ticket_preparation_started", "ticket_baking_started", "ticket_quality_check_started", "ticket_ready"},
		"INVENTORY": {"stock_reserved", "stock_consumed"},
		"DRIVERS":   {"delivery_requested", "driver_assigned", "delivery_request_closed", "delivery_picked_up", "delivery_completed"},
	} {
		for _, typ := range must {
			if !slices.Contains(byStream[stream], typ) {
				t.Errorf("history lacks %s %s: %v", stream, typ, byStream[stream])
			}
		}
	}

	// Time travel: every streamed snapshot is the order as of its sequence.
	if len(snapshots) < 5 {
		t.Fatalf("only %d snapshots streamed", len(snapshots))
	}
	for seq, want := range snapshots {
		res, b := h.do("GET", "/api/orders/"+id+"?asOf="+strconv.FormatUint(seq, 10), "", nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("asOf %d: %d %s", seq, res.StatusCode, b)
		}
		var got ordersapi.OrderView
		_ = json.Unmarshal(b, &got)
		if !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Errorf("asOf %d:\n got %+v\nwant %+v", seq, got, want)
		}
	}
	// ... and by time: just before placement there was no order.
	created := snapshots[minKey(snapshots)].CreatedAt
	res, _ = h.do("GET", "/api/orders/"+id+"?asOf="+created.Add(-time.Hour).Format(time.RFC3339Nano), "", nil)
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("asOf before placement: %d", res.StatusCode)
	}
	if res, _ := h.do("GET", "/api/orders/"+id+"?asOf=yesterday", "", nil); res.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("bad asOf: %d", res.StatusCode)
	}
}

// normalize drops what JSON cannot tell apart (time zones of equal instants).
func normalize(v ordersapi.OrderView) string {
	b, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return fmt.Sprint(m)
}

func minKey(m map[uint64]ordersapi.OrderView) uint64 {
	var k uint64 = 1<<64 - 1
	for s := range m {
		k = min(k, s)
	}
	return k
}

// `pizza replay` filters the log; --verify passes on a day of orders and
// reports a deliberately corrupted history with the sequence at fault.
func TestReplayAndVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end lifecycle")
	}
	_, keyspace := testkit.Redis(t)
	h := startPlatform(t, PlatformConfig{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), RedisURL: testkit.RedisURL(),
		Keyspace: keyspace, TimeScale: 3000, QCFailureRate: 0.2, Seed: 5})
	defer func() { h.stop() }()
	ids := []string{h.placePearl()}
	h.cancel(ids[0]) // long before a driver could have it
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go driveDrivers(t, h, []string{"pearl"}, stop, &wg)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}()
	for i := 0; i < 14; i++ {
		ids = append(ids, h.placePearl())
	}
	testkit.Eventually(t, 60*time.Second, func() error {
		for _, id := range ids[1:] {
			if s := h.order(id).Status; s != "Delivered" {
				return fmt.Errorf("%s is %s", id, s)
			}
		}
		return nil
	})
	close(stop)
	wg.Wait()

	replay := func(args ...string) (string, error) {
		var out, errOut strings.Builder
		err := run(context.Background(), append([]string{"replay", "--nats-url", h.p.NATSURL()}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	out, err := replay("--context", "orders", "--aggregate", ids[1], "--type", "order_placed,order_delivered")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"type":"order_placed"`) || !strings.Contains(lines[1], `"type":"order_delivered"`) {
		t.Fatalf("filtered replay:\n%s", out)
	}
	out, err = replay("--verify")
	if err != nil || !strings.Contains(out, ", 0 violations, 0 unreadable") {
		t.Fatalf("verify of a clean day: %v\n%s", err, out)
	}

	// Erasure: the customer's addresses go, the orders and totals stay,
	// and nothing personal is left for a replay to show.
	before := h.order(ids[1])
	res, b := h.do("DELETE", "/api/customers/cust-c/personal-data", "", nil)
	if res.StatusCode != http.StatusOK || strings.Count(string(b), "-") < 15*4 {
		t.Fatalf("erasure: %d %s", res.StatusCode, b)
	}
	after := h.order(ids[1])
	if after.TotalCents != before.TotalCents || after.Status != before.Status || !after.PersonalDataErased {
		t.Fatalf("order after erasure %+v", after)
	}
	out, err = replay()
	if err != nil || strings.Contains(out, "9 Side St") {
		t.Fatalf("replay after erasure: %v (personal data shown: %v)", err, strings.Contains(out, "9 Side St"))
	}
	kv, err := h.p.js.KeyValue(context.Background(), "PII")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(context.Background(), "address."+ids[1]); err == nil {
		t.Fatal("the address is still in the vault")
	}
	out, err = replay("--verify")
	if err != nil || !strings.Contains(out, "15 orders") {
		t.Fatalf("verify after erasure: %v\n%s", err, out)
	}

	// Corrupt the log behind the services' back: a delivery of an order
	// that was cancelled.
	env, _ := events.NewEnvelope(ids[0], events.OrderDelivered{DriverID: "pearl-driver-1"}, time.Now(), events.Meta{})
	body, _ := env.Marshal()
	ack, err := h.p.js.Publish(context.Background(), events.Orders.Subject(ids[0]), body)
	if err != nil {
		t.Fatal(err)
	}
	out, err = replay("--verify")
	if err == nil {
		t.Fatalf("verify accepted a corrupted history:\n%s", out)
	}
	want := fmt.Sprintf("ORDERS seq %d %s: transition-allowed", ack.Sequence, ids[0])
	if !strings.Contains(out, want) || !strings.Contains(out, "no-delivery-without-pickup") {
		t.Fatalf("verify output lacks %q:\n%s", want, out)
	}
}
