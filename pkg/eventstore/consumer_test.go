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

// A message the handler can never process is retried MaxDeliver times,
// then parked in DEADLETTER with its context, an alert is raised, and the
// messages behind it keep flowing.
func TestPoisonMessageIsDeadLetteredWhileOthersFlow(t *testing.T) {
	js, store := setup(t)
	ctx := context.Background()

	// A malformed event (not an envelope) straight onto an order subject.
	if _, err := js.Publish(ctx, "orders.bad", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		id := "ok" + strconv.Itoa(i)
		if _, err := store.Append(ctx, eventstore.Append{AggregateID: id, CommandID: id, Events: []events.Envelope{env(t, id, placed())}}); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu      sync.Mutex
		handled = map[string]int{}
		alerts  []eventstore.DeadLetter
	)
	c, err := eventstore.Consume(ctx, js, events.NewRegistry(), eventstore.ConsumerSpec{
		Stream:     events.Orders.Stream,
		Durable:    "test-projector",
		MaxDeliver: 3,
		BackOff:    []time.Duration{20 * time.Millisecond, 40 * time.Millisecond},
	}, func(_ context.Context, rec eventstore.Record) error {
		mu.Lock()
		defer mu.Unlock()
		handled[rec.Envelope.AggregateID]++
		return nil
	}, eventstore.ConsumerOptions{OnDeadLetter: func(dl eventstore.DeadLetter) {
		mu.Lock()
		defer mu.Unlock()
		alerts = append(alerts, dl)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	testkit.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(handled) != 20 {
			return fmt.Errorf("%d of 20 good events handled", len(handled))
		}
		if len(alerts) != 1 {
			return fmt.Errorf("%d alerts", len(alerts))
		}
		return nil
	})
	mu.Lock()
	dl := alerts[0]
	mu.Unlock()
	if dl.Seq != 1 || dl.Subject != "orders.bad" || dl.Deliveries != 3 {
		t.Fatalf("dead letter %+v", dl)
	}

	st, err := js.Stream(ctx, events.DeadLetter.Stream)
	if err != nil {
		t.Fatal(err)
	}
	parked, err := st.GetLastMsgForSubject(ctx, eventstore.DeadLetterSubject("ORDERS", "test-projector"))
	if err != nil {
		t.Fatal(err)
	}
	if string(parked.Data) != "{not json" || parked.Header.Get(eventstore.HeaderDLQSeq) != "1" || parked.Header.Get(eventstore.HeaderDLQError) == "" {
		t.Fatalf("parked copy: %q %v", parked.Data, parked.Header)
	}
	// The poison message is no longer pending on the consumer.
	testkit.Eventually(t, 5*time.Second, func() error {
		cons, err := js.Consumer(ctx, "ORDERS", "test-projector")
		if err != nil {
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Errorf("ack pending %d, pending %d", info.NumAckPending, info.NumPending)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for id, n := range handled {
		if n != 1 {
			t.Errorf("%s handled %d times", id, n)
		}
	}
}

// A handler that fails transiently gets the message again after its
// backoff and succeeds; nothing is dead-lettered.
func TestTransientFailureIsRetried(t *testing.T) {
	js, store := setup(t)
	ctx := context.Background()
	if _, err := store.Append(ctx, eventstore.Append{AggregateID: "o1", CommandID: "o1", Events: []events.Envelope{env(t, "o1", placed())}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	attempts, deadLetters := 0, 0
	c, err := eventstore.Consume(ctx, js, events.NewRegistry(), eventstore.ConsumerSpec{
		Stream: "ORDERS", Durable: "flaky", MaxDeliver: 5, BackOff: []time.Duration{10 * time.Millisecond},
	}, func(context.Context, eventstore.Record) error {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts < 3 {
			return errors.New("redis briefly down")
		}
		return nil
	}, eventstore.ConsumerOptions{OnDeadLetter: func(eventstore.DeadLetter) { mu.Lock(); deadLetters++; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	testkit.Eventually(t, 5*time.Second, func() error {
		cons, _ := js.Consumer(ctx, "ORDERS", "flaky")
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.AckFloor.Stream != 1 {
			return fmt.Errorf("ack floor %d", info.AckFloor.Stream)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if attempts != 3 || deadLetters != 0 {
		t.Fatalf("attempts %d, dead letters %d", attempts, deadLetters)
	}
}
