package fault_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// Projector crash and Redis loss: the orders service runs in process under
// a load of placements and cancellations. In the middle it is stopped (its
// projector with it), every key of its keyspace is deleted (the Redis is
// shared, so the test deletes its own prefix instead of FLUSHALL), and it
// is started again. The read model rebuilds by itself, ends equal, key for
// key, to a from-scratch rebuild into a second keyspace, and its
// checkpoint equals the stream's last sequence.
func TestProjectorCrashAndRedisLossRebuild(t *testing.T) {
	const (
		orderCount = 240
		workers    = 6
	)
	ctx := context.Background()
	ns := testkit.RunJetStream(t)
	nc := testkit.Connect(t, ns)
	js := testkit.JetStream(t, nc)
	rdb, keyspace := testkit.Redis(t)
	log, _ := captureLogs(t)
	first := startOrders(t, nc, js, rdb, keyspace, log, nil)

	ld := startOrderLoad(ctx, nc, orderCount, workers)
	testkit.Eventually(t, 60*time.Second, func() error {
		if n := ld.placed.Load(); n < orderCount/2 {
			return fmt.Errorf("%d of %d orders placed", n, orderCount)
		}
		return nil
	})

	// The crash: the projector stops wherever it is.
	first.Stop()
	lastAtStop := streamLastSeq(ctx, t, js, events.Orders.Stream)
	lagAtStop := lastAtStop - first.Projection().Checkpoint()
	// Redis loses the read model.
	testkit.DeletePrefix(ctx, rdb, keyspace)
	if n := countKeys(ctx, t, rdb, keyspace); n != 0 {
		t.Fatalf("%d keys left after wiping the keyspace", n)
	}
	restartedAt := time.Now()
	startOrders(t, nc, js, rdb, keyspace, log, nil)
	// Convergence: until the rebuilt model holds everything the log held
	// at the crash (the load goes on meanwhile).
	cpKey := projection.CheckpointKey(keyspace, ordersapi.ReadModel)
	testkit.Eventually(t, 60*time.Second, func() error {
		cp, err := redisCheckpoint(ctx, rdb, cpKey)
		if err != nil {
			return err
		}
		if cp < lastAtStop {
			return fmt.Errorf("rebuilt up to %d of %d", cp, lastAtStop)
		}
		return nil
	})
	converged := time.Since(restartedAt)
	if err := ld.wait(); err != nil {
		t.Fatal(err)
	}
	last := streamLastSeq(ctx, t, js, events.Orders.Stream)
	waitCheckpoint(t, rdb, cpKey, last)

	// A from-scratch rebuild into a second keyspace.
	_, fresh := testkit.Redis(t)
	rebuildStarted := time.Now()
	startOrders(t, nc, js, rdb, fresh, log, nil)
	waitCheckpoint(t, rdb, projection.CheckpointKey(fresh, ordersapi.ReadModel), last)
	rebuildTook := time.Since(rebuildStarted)

	healed := snapshotKeyspace(ctx, t, rdb, keyspace)
	rebuilt := snapshotKeyspace(ctx, t, rdb, fresh)
	if d := diffSnapshots(healed, rebuilt); d != "" {
		t.Errorf("the healed read model differs from a from-scratch rebuild:\n%s", d)
	}
	if cp, err := redisCheckpoint(ctx, rdb, cpKey); err != nil || cp != last {
		t.Errorf("checkpoint %d (%v), stream's last sequence %d", cp, err, last)
	}
	for _, id := range ld.orderIDs() {
		if _, ok := healed[strings.TrimPrefix(ordersapi.OrderKey(keyspace, id), keyspace)]; !ok {
			t.Errorf("order %s is missing from the healed read model", id)
		}
	}
	a := auditLog(scanStream(ctx, t, js, events.Orders.Stream))
	if a.Duplicates > 0 {
		t.Errorf("%d events stored twice", a.Duplicates)
	}

	summary{
		Test: "projector-crash-redis-loss", Faults: 2, Acked: int(ld.ackedEvents.Load()), Stored: a.Stored, Duplicates: a.Duplicates, Convergence: converged,
		Extra: []any{"orders", orderCount, "projector_lag_at_stop", lagAtStop, "keys_compared", len(healed), "from_scratch_rebuild", rebuildTook,
			"checkpoint", last, "command_retries", ld.retries.Load()},
	}.print(t)
}

// orderLoad places orders over NATS and cancels every third, retrying each
// command with its idempotency key until it is answered.
type orderLoad struct {
	placed      atomic.Int64
	ackedEvents atomic.Int64
	retries     atomic.Int64
	wg          sync.WaitGroup
	mu          sync.Mutex
	ids         []string
	err         error
}

func startOrderLoad(ctx context.Context, nc *nats.Conn, orderCount, workers int) *orderLoad {
	ld := &orderLoad{}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	work := make(chan int, orderCount)
	for i := 0; i < orderCount; i++ {
		work <- i
	}
	close(work)
	for w := 0; w < workers; w++ {
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			for i := range work {
				if err := ld.one(ctx, nc, i); err != nil {
					ld.mu.Lock()
					ld.err = errors.Join(ld.err, err)
					ld.mu.Unlock()
					return
				}
			}
		}()
	}
	go func() { ld.wg.Wait(); cancel() }()
	return ld
}

func (ld *orderLoad) one(ctx context.Context, nc *nats.Conn, i int) error {
	var reply ordersapi.CommandReply
	attempts, err := requestWithRetry(ctx, nc, ordersapi.SubjectPlace, placeCommand(i), &reply)
	ld.retries.Add(int64(attempts - 1))
	if err != nil {
		return fmt.Errorf("place order %d: %w", i, err)
	}
	ld.placed.Add(1)
	ld.ackedEvents.Add(1) // order_placed (v3: the placement validates the order too)
	ld.mu.Lock()
	ld.ids = append(ld.ids, reply.Order.OrderID)
	ld.mu.Unlock()
	if i%3 != 0 {
		return nil
	}
	cancel := ordersapi.CancelCommand{OrderID: reply.Order.OrderID, Reason: "changed my mind", CancelledBy: "customer", IdempotencyKey: fmt.Sprintf("fault-cancel-%d", i)}
	attempts, err = requestWithRetry(ctx, nc, ordersapi.SubjectCancel, cancel, &reply)
	ld.retries.Add(int64(attempts - 1))
	if err != nil {
		return fmt.Errorf("cancel order %d: %w", i, err)
	}
	ld.ackedEvents.Add(1)
	return nil
}

func (ld *orderLoad) wait() error {
	ld.wg.Wait()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.err
}

func (ld *orderLoad) orderIDs() []string {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return append([]string(nil), ld.ids...)
}

// waitCheckpoint polls until a read model's checkpoint reaches seq.
func waitCheckpoint(t *testing.T, rdb *redis.Client, key string, seq uint64) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, func() error {
		cp, err := redisCheckpoint(context.Background(), rdb, key)
		if err != nil {
			return err
		}
		if cp != seq {
			return fmt.Errorf("checkpoint %s is %d, want %d", key, cp, seq)
		}
		return nil
	})
}

func countKeys(ctx context.Context, t *testing.T, rdb *redis.Client, prefix string) int {
	t.Helper()
	n := 0
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
