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
)

func lagOf(stream, durable string) (eventstore.ConsumerLag, bool) {
	for _, l := range eventstore.ReadTelemetry().Lags {
		if l.Stream == stream && l.Consumer == durable {
			return l, true
		}
	}
	return eventstore.ConsumerLag{}, false
}

func consumed(stream, durable, outcome string) uint64 {
	for _, c := range eventstore.ReadTelemetry().Consumed {
		if c.Stream == stream && c.Consumer == durable && c.Outcome == outcome {
			return c.Count
		}
	}
	return 0
}

// Events appended while a durable consumer is stopped show as its lag when
// it comes back; the lag returns to zero once it has caught up; a retried
// message shows as redelivered while it is in the handler again; the
// counters count each outcome; Stop withdraws the lag.
func TestConsumerLagAndCounters(t *testing.T) {
	js, store := setup(t)
	ctx := context.Background()
	const durable = "lag-test"
	spec := eventstore.ConsumerSpec{Stream: events.Orders.Stream, Durable: durable, BackOff: []time.Duration{10 * time.Millisecond}}
	opts := eventstore.ConsumerOptions{LagInterval: 20 * time.Millisecond}

	c, err := eventstore.Consume(ctx, js, events.NewRegistry(), spec, func(context.Context, eventstore.Record) error { return nil }, opts)
	if err != nil {
		t.Fatal(err)
	}
	c.Stop()
	if _, ok := lagOf("ORDERS", durable); ok {
		t.Fatal("a stopped consumer still reports its lag")
	}

	const n = 5
	for i := 0; i < n; i++ {
		id := "lag" + strconv.Itoa(i)
		if _, err := store.Append(ctx, eventstore.Append{AggregateID: id, CommandID: id, Events: []events.Envelope{env(t, id, placed())}}); err != nil {
			t.Fatal(err)
		}
	}

	// The handler fails the first delivery of lag0, then holds every
	// message until released.
	release := make(chan struct{})
	var mu sync.Mutex
	failed := false
	c, err = eventstore.Consume(ctx, js, events.NewRegistry(), spec, func(ctx context.Context, rec eventstore.Record) error {
		mu.Lock()
		if rec.Envelope.AggregateID == "lag0" && !failed {
			failed = true
			mu.Unlock()
			return errors.New("transient")
		}
		mu.Unlock()
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	handledBefore := consumed("ORDERS", durable, eventstore.OutcomeHandled)

	testkit.Eventually(t, 10*time.Second, func() error {
		l, ok := lagOf("ORDERS", durable)
		if !ok {
			return errors.New("no lag reported")
		}
		if l.Pending+l.AckPending != n || l.AckPending == 0 || l.Redelivered != 1 {
			return fmt.Errorf("lag %+v, want %d behind with lag0 redelivered", l, n)
		}
		return nil
	})
	if got := consumed("ORDERS", durable, eventstore.OutcomeRetried); got != 1 {
		t.Fatalf("retried %d", got)
	}

	close(release)
	testkit.Eventually(t, 10*time.Second, func() error {
		l, ok := lagOf("ORDERS", durable)
		if !ok {
			return errors.New("no lag reported")
		}
		if l.Pending != 0 || l.AckPending != 0 || l.Redelivered != 0 {
			return fmt.Errorf("lag %+v after catching up", l)
		}
		return nil
	})
	if got := consumed("ORDERS", durable, eventstore.OutcomeHandled) - handledBefore; got != n {
		t.Fatalf("handled %d, want %d", got, n)
	}
	if got := consumed("ORDERS", durable, eventstore.OutcomeDeadLettered); got != 0 {
		t.Fatalf("dead-lettered %d", got)
	}
	c.Stop()
	if _, ok := lagOf("ORDERS", durable); ok {
		t.Fatal("lag still reported after Stop")
	}
}
