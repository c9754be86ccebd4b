package projection

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// BenchmarkRebuild measures a read model rebuilt from sequence 1: events
// replayed from JetStream into Redis per second (reported as events/s),
// next to the raw engine underneath: pipelined SETs of the same number of
// documents into the same Redis.
func BenchmarkRebuild(b *testing.B) {
	const n = 20_000
	s := testkit.RunJetStream(b)
	nc := testkit.Connect(b, s)
	js := testkit.JetStream(b, nc)
	ctx := context.Background()
	if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{}, events.Orders); err != nil {
		b.Fatal(err)
	}
	// Load the log fast: async publishes of ready envelopes.
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("o%d", i%2000)
		en, _ := events.NewEnvelope(id, events.OrderQueued{TicketID: "t"}, time.Now(), events.Meta{})
		body, _ := en.Marshal()
		m := nats.NewMsg(events.Orders.Subject(id))
		m.Data = body
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	rdb, ks := testkit.Redis(b)
	b.Run("projection", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			space := fmt.Sprintf("%sb%d:", ks, i)
			r := New(js, rdb, events.NewRegistry(), countingProjector{}, Options{Keyspace: space, BatchSize: 512})
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			start := time.Now()
			go func() { defer close(done); _ = r.Run(rctx) }()
			if err := r.WaitCaughtUp(ctx); err != nil || r.Checkpoint() != n {
				b.Fatalf("caught up at %d: %v", r.Checkpoint(), err)
			}
			elapsed := time.Since(start)
			cancel()
			<-done
			b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
			_ = DeleteModel(ctx, rdb, space, "counts")
		}
	})
	b.Run("raw-pipelined-set", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			start := time.Now()
			pipe := rdb.Pipeline()
			for j := 0; j < n; j++ {
				pipe.Set(ctx, fmt.Sprintf("%sraw:%d", ks, j%2000), `{"count":1,"lastType":"order_queued","seq":1}`, 0)
				if j%512 == 511 {
					if _, err := pipe.Exec(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
		}
	})
}
