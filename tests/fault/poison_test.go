package fault_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// projectorDeadLetters is the alert metric of the order projector.
const projectorDeadLetters = "pizza_orders_projection_dead_letters_total"

// Poison messages: bytes that are no event, and an event of a schema
// version newer than this build knows, are published raw onto order
// subjects between good orders. The order projector parks each in
// DEADLETTER with headers naming where it came from and why, raises the
// alert (metric and log), and keeps projecting the orders behind them.
func TestPoisonMessageIsParkedAndAlerted(t *testing.T) {
	ctx := context.Background()
	ns := testkit.RunJetStream(t)
	nc := testkit.Connect(t, ns)
	js := testkit.JetStream(t, nc)
	rdb, keyspace := testkit.Redis(t)
	log, logs := captureLogs(t)
	metrics := prometheus.NewRegistry()
	startOrders(t, nc, js, rdb, keyspace, log, metrics)

	var placed []string
	place := func(i int) {
		t.Helper()
		var reply ordersapi.CommandReply
		if _, err := requestWithRetry(ctx, nc, ordersapi.SubjectPlace, placeCommand(i), &reply); err != nil {
			t.Fatal(err)
		}
		placed = append(placed, reply.Order.OrderID)
	}
	place(0)

	// The poison.
	malformed, err := js.Publish(ctx, events.Orders.Subject("poison-malformed"), []byte("{this is not an event"))
	if err != nil {
		t.Fatal(err)
	}
	future := events.Envelope{ID: "0195c7f4-0000-7000-8000-00000000f00d", Type: "order_cancelled", Version: 99, AggregateID: "poison-future",
		OccurredAt: time.Now().UTC(), Data: []byte(`{"reason":"written by a newer release"}`)}
	body, err := future.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(events.Orders.Subject(future.AggregateID))
	m.Data = body
	m.Header.Set(events.HeaderType, future.Type)
	m.Header.Set(events.HeaderVersion, strconv.Itoa(future.Version))
	m.Header.Set(events.HeaderCommandID, "from-the-future")
	futureAck, err := js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	poisonedAt := time.Now()
	poison := map[uint64]string{malformed.Sequence: "poison-malformed", futureAck.Sequence: future.AggregateID}

	// The orders behind the poison keep flowing.
	for i := 1; i <= 5; i++ {
		place(i)
	}
	last := streamLastSeq(ctx, t, js, events.Orders.Stream)
	waitCheckpoint(t, rdb, projection.CheckpointKey(keyspace, ordersapi.ReadModel), last)
	converged := time.Since(poisonedAt)
	for _, id := range placed {
		if n, err := rdb.Exists(ctx, ordersapi.OrderKey(keyspace, id)).Result(); err != nil || n != 1 {
			t.Errorf("order %s is not in the read model (%v)", id, err)
		}
	}
	for _, id := range poison {
		if n, _ := rdb.Exists(ctx, ordersapi.OrderKey(keyspace, id)).Result(); n != 0 {
			t.Errorf("poison %s made it into the read model", id)
		}
	}

	// Parked, with where and why.
	parked := readDeadLetters(ctx, t, js, eventstore.DeadLetterSubject(events.Orders.Stream, "projector-"+ordersapi.ReadModel), len(poison))
	for _, p := range parked {
		seq, _ := strconv.ParseUint(p.Header.Get(eventstore.HeaderDLQSeq), 10, 64)
		id, ok := poison[seq]
		if !ok {
			t.Errorf("unexpected dead letter of seq %d: %v", seq, p.Header)
			continue
		}
		if got := p.Header.Get(eventstore.HeaderDLQStream); got != events.Orders.Stream {
			t.Errorf("seq %d: %s = %q", seq, eventstore.HeaderDLQStream, got)
		}
		if got := p.Header.Get(eventstore.HeaderDLQSubject); got != events.Orders.Subject(id) {
			t.Errorf("seq %d: %s = %q, want %q", seq, eventstore.HeaderDLQSubject, got, events.Orders.Subject(id))
		}
		if got := p.Header.Get(eventstore.HeaderDLQConsumer); got != "projector-"+ordersapi.ReadModel {
			t.Errorf("seq %d: %s = %q", seq, eventstore.HeaderDLQConsumer, got)
		}
		if p.Header.Get(eventstore.HeaderDLQDeliveries) == "" {
			t.Errorf("seq %d: no %s header", seq, eventstore.HeaderDLQDeliveries)
		}
		reason := p.Header.Get(eventstore.HeaderDLQError)
		switch id {
		case "poison-malformed":
			if string(p.Data) != "{this is not an event" || !strings.Contains(reason, "malformed") {
				t.Errorf("malformed poison parked as %q with reason %q", p.Data, reason)
			}
		default:
			if string(p.Data) != string(body) || !strings.Contains(reason, "version 99") {
				t.Errorf("future-version poison parked as %q with reason %q", p.Data, reason)
			}
		}
	}
	alerts := counterValue(t, metrics, projectorDeadLetters)
	if alerts != float64(len(poison)) {
		t.Errorf("%s = %v, want %d", projectorDeadLetters, alerts, len(poison))
	}
	if n := logs.count("ALERT"); n < len(poison) {
		t.Errorf("%d alert log lines, want at least %d", n, len(poison))
	}

	audit := auditLog(scanStream(ctx, t, js, events.Orders.Stream))
	summary{
		Test: "poison-message", Faults: len(poison), Acked: len(placed), Stored: audit.Stored - len(poison), Duplicates: audit.Duplicates, Convergence: converged,
		Extra: []any{"dead_lettered", len(parked), "alert_metric", alerts, "orders_after_poison", len(placed) - 1},
	}.print(t)
}

// readDeadLetters reads the parked messages of one consumer, waiting until
// there are want of them.
func readDeadLetters(ctx context.Context, t *testing.T, js jetstream.JetStream, subject string, want int) []*jetstream.RawStreamMsg {
	t.Helper()
	var out []*jetstream.RawStreamMsg
	testkit.Eventually(t, 30*time.Second, func() error {
		out = out[:0]
		st, err := js.Stream(ctx, events.DeadLetter.Stream)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			return err
		}
		if n := info.State.Subjects[subject]; n < uint64(want) {
			return fmt.Errorf("%d of %d messages parked on %s", n, want, subject)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			raw, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if raw.Subject == subject {
				out = append(out, raw)
			}
		}
		return nil
	})
	if len(out) != want {
		t.Fatalf("%d messages parked on %s, want %d", len(out), subject, want)
	}
	return out
}

// counterValue reads a counter from a Prometheus registry.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("metric %s is not registered", name)
	return 0
}
