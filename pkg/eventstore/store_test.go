package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func setup(t *testing.T) (jetstream.JetStream, *eventstore.Store) {
	t.Helper()
	s := testkit.RunJetStream(t)
	js := testkit.JetStream(t, testkit.Connect(t, s))
	ctx := context.Background()
	if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{}, events.DomainContexts()...); err != nil {
		t.Fatal(err)
	}
	return js, eventstore.New(js, events.NewRegistry(), events.Orders)
}

func env(t testing.TB, id string, e events.Event) events.Envelope {
	t.Helper()
	en, err := events.NewEnvelope(id, e, time.Now(), events.Meta{CorrelationID: "c-" + id})
	if err != nil {
		t.Fatal(err)
	}
	return en
}

func placed() events.Event {
	return events.OrderPlaced{RestaurantID: "r1", CustomerID: "c1", TotalCents: 1000, Currency: "USD", PaymentMethod: "Cash"}
}

func subjectCount(t *testing.T, js jetstream.JetStream, subject string) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), events.Orders.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

func TestAppendAndLoad(t *testing.T) {
	js, store := setup(t)
	ctx := context.Background()
	res, err := store.Append(ctx, eventstore.Append{AggregateID: "o1", CommandID: "cmd-1", Events: []events.Envelope{env(t, "o1", placed())}})
	if err != nil {
		t.Fatal(err)
	}
	if res.FirstSeq != 1 || res.LastSeq != 1 || res.Duplicate {
		t.Fatalf("result %+v", res)
	}
	// Another aggregate does not disturb o1's sequence.
	if _, err := store.Append(ctx, eventstore.Append{AggregateID: "o2", CommandID: "cmd-2", Events: []events.Envelope{env(t, "o2", placed())}}); err != nil {
		t.Fatal(err)
	}
	res, err = store.Append(ctx, eventstore.Append{AggregateID: "o1", ExpectedSeq: 1, CommandID: "cmd-3", Events: []events.Envelope{env(t, "o1", events.OrderValidated{}), env(t, "o1", events.OrderQueued{TicketID: "t"})}})
	if err != nil {
		t.Fatal(err)
	}
	if res.FirstSeq != 3 || res.LastSeq != 4 {
		t.Fatalf("atomic append landed at %+v", res)
	}
	recs, last, err := store.Load(ctx, "o1")
	if err != nil {
		t.Fatal(err)
	}
	if last != 4 || len(recs) != 3 {
		t.Fatalf("load: last=%d records=%d", last, len(recs))
	}
	wantTypes := []string{"order_placed", "order_validated", "order_queued"}
	for i, r := range recs {
		if r.Envelope.Type != wantTypes[i] {
			t.Errorf("record %d is %s, want %s", i, r.Envelope.Type, wantTypes[i])
		}
	}
	if q, ok := recs[2].Event.(events.OrderQueued); !ok || q.TicketID != "t" {
		t.Errorf("decoded %#v", recs[2].Event)
	}
	if recs[1].CommandID != "cmd-3" {
		t.Errorf("command id %q", recs[1].CommandID)
	}
	if n := subjectCount(t, js, "orders.o1"); n != 3 {
		t.Fatalf("subject holds %d messages", n)
	}
	none, last, err := store.Load(ctx, "missing")
	if err != nil || last != 0 || len(none) != 0 {
		t.Fatalf("missing aggregate: %v %d %d", err, last, len(none))
	}
}

func TestAppendRejectsBadInput(t *testing.T) {
	_, store := setup(t)
	ctx := context.Background()
	cases := map[string]eventstore.Append{
		"unsafe id":  {AggregateID: "a.b", CommandID: "c", Events: []events.Envelope{env(t, "a.b", placed())}},
		"no command": {AggregateID: "a", Events: []events.Envelope{env(t, "a", placed())}},
		"no events":  {AggregateID: "a", CommandID: "c"},
		"other agg":  {AggregateID: "a", CommandID: "c", Events: []events.Envelope{env(t, "b", placed())}},
	}
	for name, a := range cases {
		if _, err := store.Append(ctx, a); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Fifty writers race on one aggregate, each expecting the same last
// sequence: the server lets exactly one win per expected sequence.
func TestConcurrentWritersExactlyOneWinsPerSequence(t *testing.T) {
	js, store := setup(t)
	ctx := context.Background()
	if _, err := store.Append(ctx, eventstore.Append{AggregateID: "hot", CommandID: "create", Events: []events.Envelope{env(t, "hot", placed())}}); err != nil {
		t.Fatal(err)
	}
	const writers, rounds = 50, 3
	expected := uint64(1)
	for round := 0; round < rounds; round++ {
		var (
			wg        sync.WaitGroup
			mu        sync.Mutex
			wins      int
			conflicts int
			winSeq    uint64
		)
		start := make(chan struct{})
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				<-start
				res, err := store.Append(ctx, eventstore.Append{AggregateID: "hot", ExpectedSeq: expected, CommandID: fmt.Sprintf("r%d-w%d", round, w), Events: []events.Envelope{env(t, "hot", events.OrderQueued{TicketID: strconv.Itoa(w)})}})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
					winSeq = res.LastSeq
				case errors.Is(err, eventstore.ErrConflict):
					conflicts++
				default:
					t.Errorf("writer %d: %v", w, err)
				}
			}(w)
		}
		close(start)
		wg.Wait()
		if wins != 1 || conflicts != writers-1 {
			t.Fatalf("round %d: %d wins, %d conflicts", round, wins, conflicts)
		}
		expected = winSeq
	}
	if n := subjectCount(t, js, "orders.hot"); n != 1+rounds {
		t.Fatalf("subject holds %d events, want %d", n, 1+rounds)
	}
}

// A client whose PubAck was lost retries the same command. On a single
// server the expected-sequence check rejects the retry before dedupe runs;
// the store must recognise its own command and report success.
func TestLostPubAckRetrySingleServer(t *testing.T) {
	js, store := setup(t)
	testLostPubAckRetry(t, js, store)
}

func TestLostPubAckRetryCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := testkit.RunCluster(t, 3)
	nc, err := nats.Connect(c.ClientURLs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js := testkit.JetStream(t, nc)
	ctx := context.Background()
	testkit.Eventually(t, 30*time.Second, func() error {
		return eventstore.Provision(ctx, js, eventstore.StreamOptions{Replicas: 3}, events.Orders)
	})
	testLostPubAckRetry(t, js, eventstore.New(js, events.NewRegistry(), events.Orders))
}

func testLostPubAckRetry(t *testing.T, js jetstream.JetStream, store *eventstore.Store) {
	t.Helper()
	ctx := context.Background()
	first := eventstore.Append{AggregateID: "o1", CommandID: "place-o1", Events: []events.Envelope{env(t, "o1", placed())}}
	if _, err := store.Append(ctx, first); err != nil {
		t.Fatal(err)
	}
	res, err := store.Append(ctx, first) // the retry
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !res.Duplicate || res.LastSeq != 1 {
		t.Fatalf("retry result %+v", res)
	}
	// Same for an atomic multi-event append.
	multi := eventstore.Append{AggregateID: "o1", ExpectedSeq: 1, CommandID: "advance-o1", Events: []events.Envelope{env(t, "o1", events.OrderValidated{}), env(t, "o1", events.OrderQueued{})}}
	if _, err := store.Append(ctx, multi); err != nil {
		t.Fatal(err)
	}
	res, err = store.Append(ctx, multi)
	if err != nil {
		t.Fatalf("batch retry: %v", err)
	}
	if !res.Duplicate || res.FirstSeq != 2 || res.LastSeq != 3 {
		t.Fatalf("batch retry result %+v", res)
	}
	// A different command at the stale sequence is a real conflict.
	_, err = store.Append(ctx, eventstore.Append{AggregateID: "o1", ExpectedSeq: 1, CommandID: "other", Events: []events.Envelope{env(t, "o1", events.OrderValidated{})}})
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stale append: %v", err)
	}
	if n := subjectCount(t, js, "orders.o1"); n != 3 {
		t.Fatalf("subject holds %d events, want exactly 3", n)
	}
}

// An atomic append whose expected sequence is stale stores none of its events.
func TestAtomicAppendAllOrNothing(t *testing.T) {
	js, store := setup(t)
	ctx := context.Background()
	if _, err := store.Append(ctx, eventstore.Append{AggregateID: "o1", CommandID: "a", Events: []events.Envelope{env(t, "o1", placed())}}); err != nil {
		t.Fatal(err)
	}
	_, err := store.Append(ctx, eventstore.Append{AggregateID: "o1", ExpectedSeq: 0, CommandID: "b", Events: []events.Envelope{env(t, "o1", events.OrderValidated{}), env(t, "o1", events.OrderQueued{}), env(t, "o1", events.OrderCancelled{})}})
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("want conflict, got %v", err)
	}
	if n := subjectCount(t, js, "orders.o1"); n != 1 {
		t.Fatalf("half a batch stored: %d events", n)
	}
}

// One command changing two aggregates lands atomically, each checked
// against its own expected sequence; a stale one rejects the whole batch.
func TestAppendAllAcrossAggregates(t *testing.T) {
	js, store := setup(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := store.Append(ctx, eventstore.Append{AggregateID: id, CommandID: "create-" + id, Events: []events.Envelope{env(t, id, placed())}}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := store.AppendAll(ctx,
		eventstore.Append{AggregateID: "a", ExpectedSeq: 1, CommandID: "both", Events: []events.Envelope{env(t, "a", events.OrderValidated{}), env(t, "a", events.OrderQueued{})}},
		eventstore.Append{AggregateID: "b", ExpectedSeq: 2, CommandID: "both", Events: []events.Envelope{env(t, "b", events.OrderValidated{})}},
	)
	if err != nil {
		t.Fatal(err)
	}
	if res.FirstSeq != 3 || res.LastSeq != 5 {
		t.Fatalf("result %+v", res)
	}
	// Retry of the same command: recognised as ours.
	res, err = store.AppendAll(ctx,
		eventstore.Append{AggregateID: "a", ExpectedSeq: 1, CommandID: "both", Events: []events.Envelope{env(t, "a", events.OrderValidated{}), env(t, "a", events.OrderQueued{})}},
		eventstore.Append{AggregateID: "b", ExpectedSeq: 2, CommandID: "both", Events: []events.Envelope{env(t, "b", events.OrderValidated{})}},
	)
	if err != nil || !res.Duplicate {
		t.Fatalf("retry: %+v %v", res, err)
	}
	// b is stale now: nothing of the batch is stored, a included.
	_, err = store.AppendAll(ctx,
		eventstore.Append{AggregateID: "a", ExpectedSeq: 4, CommandID: "stale", Events: []events.Envelope{env(t, "a", events.OrderCancelled{})}},
		eventstore.Append{AggregateID: "b", ExpectedSeq: 2, CommandID: "stale", Events: []events.Envelope{env(t, "b", events.OrderCancelled{})}},
	)
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stale batch: %v", err)
	}
	if subjectCount(t, js, "orders.a") != 3 || subjectCount(t, js, "orders.b") != 2 {
		t.Fatal("a stale batch stored part of itself")
	}
}

// Provisioning without the production switch neither fails on nor weakens
// a stream that production already protected.
func TestProvisionKeepsProductionProtection(t *testing.T) {
	js, _ := setup(t)
	ctx := context.Background()
	if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{Production: true}, events.Orders); err != nil {
		t.Fatal(err)
	}
	if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{}, events.Orders); err != nil {
		t.Fatalf("re-provisioning a protected stream: %v", err)
	}
	st, err := js.Stream(ctx, events.Orders.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := st.CachedInfo().Config; !cfg.DenyDelete || !cfg.DenyPurge {
		t.Fatalf("protection lifted: %+v", cfg)
	}
}
