package projection

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// leasedRuntime starts a runtime of the counting projector with a lease
// owned by owner; stop cancels it and waits for Run to return.
func leasedRuntime(t *testing.T, js jetstream.JetStream, rdb *redis.Client, keyspace, owner string, ttl time.Duration) (*Runtime, func()) {
	t.Helper()
	r := New(js, rdb, events.NewRegistry(), countingProjector{}, Options{Keyspace: keyspace, BatchSize: 7, LeaseOwner: owner, LeaseTTL: ttl})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return r, stop
}

func appendPlaced(t *testing.T, js jetstream.JetStream, id string) {
	t.Helper()
	store := eventstore.New(js, events.NewRegistry(), events.Orders)
	en, _ := events.NewEnvelope(id, events.OrderPlaced{RestaurantID: "r1"}, time.Now(), events.Meta{})
	if _, err := store.Append(context.Background(), eventstore.Append{AggregateID: id, CommandID: "place-" + id, Events: []events.Envelope{en}}); err != nil {
		t.Fatal(err)
	}
}

func writers(rs ...*Runtime) (n int, who int) {
	for i, r := range rs {
		if r.Writing() {
			n++
			who = i
		}
	}
	return n, who
}

// Three runtimes of one model in one keyspace: one writes, the others
// stand by (and still report the model caught up); the model equals a
// single writer's. When the writer stops, a standby takes over at once
// and projects what comes next; when a writer's lease is taken from it,
// it stops committing.
func TestLeaseMakesOneWriterPerModel(t *testing.T) {
	js, rdb, ks := fixture(t, 6, 3)
	ctx := context.Background()
	_, stopRef := runUntilCaughtUp(t, js, rdb, ks+"ref:")
	stopRef()
	want := sorted(dump(t, rdb, ks+"ref:", "counts"))

	const ttl = 900 * time.Millisecond
	var rs []*Runtime
	var stops []func()
	for i := range 3 {
		r, stop := leasedRuntime(t, js, rdb, ks, fmt.Sprintf("instance-%d", i), ttl)
		rs, stops = append(rs, r), append(stops, stop)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for i, r := range rs {
		if err := r.WaitCaughtUp(wctx); err != nil {
			t.Fatalf("runtime %d never caught up (standbys follow the writer's checkpoint): %v", i, err)
		}
	}
	if n, _ := writers(rs...); n != 1 {
		t.Fatalf("%d writers, want 1", n)
	}
	if got := sorted(dump(t, rdb, ks, "counts")); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("model differs from a single writer's:\n got %v\nwant %v", got, want)
	}
	if holder := rdb.Get(ctx, LeaseKey(ks, "counts")).Val(); holder == "" {
		t.Fatal("no lease in Redis")
	}

	// The writer stops: it releases the lease and a standby writes on.
	_, first := writers(rs...)
	stops[first]()
	appendPlaced(t, js, "after-stop")
	testkit.Eventually(t, 10*time.Second, func() error {
		n, who := writers(rs...)
		if n != 1 || who == first {
			return fmt.Errorf("%d writers (the stopped one was %d, now %d)", n, first, who)
		}
		if cp := rdb.Get(ctx, CheckpointKey(ks, "counts")).Val(); cp != "19" {
			return fmt.Errorf("checkpoint %s, want 19", cp)
		}
		return nil
	})
	_, second := writers(rs...)
	t.Logf("writer %d stopped, writer %d took over", first, second)

	// Someone else takes the lease (as after the writer stalled past the
	// TTL): the writer notices, stops committing, and nobody projects
	// until the lease is free again.
	if err := rdb.Set(ctx, LeaseKey(ks, "counts"), "intruder", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if n, _ := writers(rs...); n != 0 {
			return fmt.Errorf("%d writers while the lease is another's", n)
		}
		return nil
	})
	appendPlaced(t, js, "during-intrusion")
	// The fence: a batch committed by a runtime that believes it writes
	// is refused while the lease is another's.
	rs[second].leased.Store(true)
	cons, err := js.OrderedConsumer(ctx, events.Orders.Stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverLastPolicy})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	rs[second].checkpoint.Store(19)
	if _, err := rs[second].apply(ctx, CheckpointKey(ks, "counts"), []jetstream.Msg{m}); err == nil {
		t.Fatal("a batch was committed without the lease")
	}
	rs[second].leased.Store(false)
	if cp := rdb.Get(ctx, CheckpointKey(ks, "counts")).Val(); cp != "19" {
		t.Fatalf("checkpoint moved to %s while nobody held the lease", cp)
	}

	// The lease is free again: one of the two left takes it and catches up.
	if err := rdb.Del(ctx, LeaseKey(ks, "counts")).Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if n, _ := writers(rs...); n != 1 {
			return fmt.Errorf("%d writers", n)
		}
		if cp := rdb.Get(ctx, CheckpointKey(ks, "counts")).Val(); cp != "20" {
			return fmt.Errorf("checkpoint %s, want 20", cp)
		}
		return nil
	})
}

// A writer that dies without releasing (its process killed) leaves the
// lease to expire: a standby takes over within about the TTL.
func TestLeaseOfADeadWriterExpires(t *testing.T) {
	js, rdb, ks := fixture(t, 2, 1)
	ctx := context.Background()
	const ttl = 600 * time.Millisecond
	// The dead writer's lease, as a killed process leaves it.
	if err := rdb.Set(ctx, LeaseKey(ks, "counts"), "killed-instance", ttl).Err(); err != nil {
		t.Fatal(err)
	}
	r, _ := leasedRuntime(t, js, rdb, ks, "survivor", ttl)
	testkit.Eventually(t, 10*time.Second, func() error {
		if !r.Writing() {
			return fmt.Errorf("survivor not writing yet")
		}
		if cp := rdb.Get(ctx, CheckpointKey(ks, "counts")).Val(); cp != "2" {
			return fmt.Errorf("checkpoint %q, want 2", cp)
		}
		return nil
	})
}

// A model deleted while its writer has nothing to commit is rebuilt by the
// writer by itself (it notices at its next lease renewal), so a standby
// waiting for the model sees it come back without a new event.
func TestLeasedWriterRebuildsAModelDeletedWhileIdle(t *testing.T) {
	js, rdb, ks := fixture(t, 3, 2)
	ctx := context.Background()
	const ttl = 600 * time.Millisecond
	w, _ := leasedRuntime(t, js, rdb, ks, "writer", ttl)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := w.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	want := sorted(dump(t, rdb, ks, "counts"))
	if err := DeleteModel(ctx, rdb, ks, "counts"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		got := sorted(dump(t, rdb, ks, "counts"))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("model has %d keys, want %d", len(got), len(want))
		}
		return nil
	})
}
