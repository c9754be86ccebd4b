package eventstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/nats-io/nats.go"
)

// A consumer process that dies during a message's last allowed delivery
// never gets to park it. The server gives up on the message after AckWait
// and says so in an advisory; another instance of the same durable
// consumer parks it from there, raises the alert, and the messages behind
// it keep flowing to the survivor.
func TestFaultConsumerCrashDuringLastDelivery(t *testing.T) {
	s := testkit.RunJetStream(t)
	ctx := context.Background()
	js := testkit.JetStream(t, testkit.Connect(t, s))
	if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{}, events.DomainContexts()...); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(js, events.NewRegistry(), events.Orders)
	if _, err := store.Append(ctx, eventstore.Append{AggregateID: "doomed", CommandID: "doomed", Events: []events.Envelope{env(t, "doomed", placed())}}); err != nil {
		t.Fatal(err)
	}

	spec := eventstore.ConsumerSpec{Stream: events.Orders.Stream, Durable: "fault-crash", MaxDeliver: 2,
		BackOff: []time.Duration{20 * time.Millisecond}, AckWait: 500 * time.Millisecond}
	var (
		mu       sync.Mutex
		calls    int
		crashed  = -1
		handled  = map[string]int{}
		alerts   []eventstore.DeadLetter
		release  = make(chan struct{})
		conns    [2]*nats.Conn
		released sync.Once
	)
	defer released.Do(func() { close(release) })
	handler := func(instance int) eventstore.Handler {
		return func(_ context.Context, rec eventstore.Record) error {
			if rec.Envelope.AggregateID != "doomed" {
				mu.Lock()
				handled[rec.Envelope.AggregateID]++
				mu.Unlock()
				return nil
			}
			mu.Lock()
			calls++
			n := calls
			if n == spec.MaxDeliver {
				crashed = instance
			}
			mu.Unlock()
			if n < spec.MaxDeliver {
				return fmt.Errorf("delivery %d fails", n)
			}
			// The last delivery: the process dies. Its connection goes,
			// nothing is acknowledged or parked.
			conns[instance].Close()
			<-release
			return nil
		}
	}
	for i := range conns {
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = nc
		t.Cleanup(nc.Close)
		cjs := testkit.JetStream(t, nc)
		_, err = eventstore.Consume(ctx, cjs, events.NewRegistry(), spec, handler(i), eventstore.ConsumerOptions{
			OnDeadLetter: func(dl eventstore.DeadLetter) {
				mu.Lock()
				defer mu.Unlock()
				alerts = append(alerts, dl)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	testkit.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if crashed < 0 {
			return fmt.Errorf("%d deliveries so far", calls)
		}
		if len(alerts) != 1 {
			return fmt.Errorf("%d alerts", len(alerts))
		}
		return nil
	})
	mu.Lock()
	dl := alerts[0]
	mu.Unlock()
	if dl.Seq != 1 || dl.Subject != "orders.doomed" || dl.Consumer != "fault-crash" {
		t.Fatalf("dead letter %+v", dl)
	}
	st, err := js.Stream(ctx, events.DeadLetter.Stream)
	if err != nil {
		t.Fatal(err)
	}
	parked, err := st.GetLastMsgForSubject(ctx, eventstore.DeadLetterSubject(events.Orders.Stream, "fault-crash"))
	if err != nil {
		t.Fatal(err)
	}
	if parked.Header.Get(eventstore.HeaderDLQSeq) != "1" || parked.Header.Get(eventstore.HeaderDLQError) == "" {
		t.Fatalf("parked copy headers %v", parked.Header)
	}

	// The survivor keeps handling what follows.
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("after-%d", i)
		if _, err := store.Append(ctx, eventstore.Append{AggregateID: id, CommandID: id, Events: []events.Envelope{env(t, id, placed())}}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(handled) != 5 {
			return fmt.Errorf("%d of 5 later events handled", len(handled))
		}
		return nil
	})
}
