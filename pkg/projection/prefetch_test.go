package projection

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/redis/go-redis/v9"
)

// commandCounter counts the commands a Redis client sends, by name, and
// the GETs by key.
type commandCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func countCommands(rdb *redis.Client) *commandCounter {
	c := &commandCounter{n: map[string]int{}}
	rdb.AddHook(c)
	return c
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.mu.Lock()
		c.add(cmd)
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.mu.Lock()
		for _, cmd := range cmds {
			c.add(cmd)
		}
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (c *commandCounter) add(cmd redis.Cmder) {
	name := strings.ToUpper(cmd.Name())
	c.n[name]++
	if args := cmd.Args(); name == "GET" && len(args) > 1 {
		c.n["GET "+fmt.Sprint(args[1])]++
	}
}

// get returns the count of a command ("MGET") or of GETs of a key ("GET k").
func (c *commandCounter) get(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}

// prefetchingCounter is countingProjector naming the key it reads.
type prefetchingCounter struct{ countingProjector }

func (prefetchingCounter) Prefetch(tx *Tx, subject string, key func(string)) {
	if id, ok := events.Orders.AggregateID(subject); ok {
		key(tx.Key("order", id))
	}
}

// subjectKeys names one key per subject: the subject under the key base.
type subjectKeys struct{ countingProjector }

func (subjectKeys) Prefetch(tx *Tx, subject string, key func(string)) { key(tx.Key(subject)) }

func TestPrefetchReadsTheBatchInOneRoundTrip(t *testing.T) {
	rdb, ks := testkit.Redis(t)
	ctx := context.Background()
	for k, v := range map[string]string{"a": `{"n":1}`, "b": `{"n":2}`, "staged": "old"} {
		if err := rdb.Set(ctx, ks+k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	calls := countCommands(rdb)
	tx := &Tx{rdb: rdb, base: ks, staged: map[string]*string{}}
	if err := tx.prefetchSubjects(ctx, subjectKeys{}, []string{"a", "b", "a", "missing", "staged", "b"}); err != nil {
		t.Fatal(err)
	}
	if calls.get("MGET") != 1 || len(tx.read) != 4 {
		t.Fatalf("%d MGETs for %d distinct keys", calls.get("MGET"), len(tx.read))
	}
	// Change Redis behind the batch: its reads come from the prefetch,
	// the missing key included.
	for _, k := range []string{"a", "b", "missing"} {
		if err := rdb.Set(ctx, ks+k, "changed", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	gets := calls.get("GET")
	if v, ok, err := tx.Get(ctx, ks+"a"); err != nil || !ok || v != `{"n":1}` {
		t.Fatalf("Get a = %q, %v, %v", v, ok, err)
	}
	if v, ok, err := tx.Get(ctx, ks+"missing"); err != nil || ok {
		t.Fatalf("Get missing = %q, %v, %v", v, ok, err)
	}
	d, ok, err := GetDoc[counterDoc](ctx, tx, ks+"b")
	if err != nil || !ok || d.N != 2 {
		t.Fatalf("GetDoc b = %+v, %v, %v", d, ok, err)
	}
	if calls.get("GET") != gets {
		t.Fatalf("%d GETs for prefetched keys", calls.get("GET")-gets)
	}
	// Staged writes come before the prefetched values.
	tx.Set(ks+"staged", "new")
	if v, _, _ := tx.Get(ctx, ks+"staged"); v != "new" {
		t.Fatalf("Get staged = %q", v)
	}
	tx.Del(ks + "a")
	if _, ok, _ := tx.Get(ctx, ks+"a"); ok {
		t.Fatal("a deleted key is read from the prefetch")
	}
	d.N = 7
	tx.PutDoc(ks+"b", d)
	if v, _, _ := tx.Get(ctx, ks+"b"); v != `{"n":7}` {
		t.Fatalf("Get b after PutDoc = %q", v)
	}
	// A key not prefetched is read from Redis, as before.
	if v, ok, err := tx.Get(ctx, ks+"other"); err != nil || ok {
		t.Fatalf("Get other = %q, %v, %v", v, ok, err)
	}
	if calls.get("GET") != gets+1 {
		t.Fatalf("%d GETs, want 1", calls.get("GET")-gets)
	}
	// Keys already read ahead are not read again.
	if err := tx.prefetchSubjects(ctx, subjectKeys{}, []string{"a", "missing"}); err != nil || calls.get("MGET") != 1 {
		t.Fatalf("second prefetch: %d MGETs, %v", calls.get("MGET"), err)
	}
	// A failing Redis fails the batch as a failing read does.
	broken := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer broken.Close()
	btx := &Tx{rdb: broken, base: ks, staged: map[string]*string{}}
	if err := btx.prefetchSubjects(ctx, subjectKeys{}, []string{"x"}); err == nil || btx.readErr == nil {
		t.Fatalf("prefetch from an unreachable Redis: %v (read error %v)", err, btx.readErr)
	}
}

// A projector that prefetches builds, batch after batch, the model one
// that reads key by key builds, without a GET of its own.
func TestPrefetchingProjectorBuildsTheSameModel(t *testing.T) {
	js, rdb, ks := fixture(t, 9, 5)
	ctx := context.Background()
	_, stop := runUntilCaughtUp(t, js, rdb, ks+"plain:")
	stop()
	want := sorted(dump(t, rdb, ks+"plain:", "counts"))

	calls := countCommands(rdb)
	r := New(js, rdb, events.NewRegistry(), prefetchingCounter{}, Options{Keyspace: ks, BatchSize: 7})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(rctx) }()
	defer func() { cancel(); <-done }()
	if err := r.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if r.Checkpoint() != 45 {
			return fmt.Errorf("checkpoint %d", r.Checkpoint())
		}
		return nil
	})
	// The documents came from one MGET per batch, never from a GET.
	mgets := calls.get("MGET")
	docGets := 0
	for o := 0; o < 9; o++ {
		docGets += calls.get(fmt.Sprintf("GET %sorder:o%d", KeyBase(ks, "counts"), o))
	}
	if mgets == 0 || docGets != 0 {
		t.Fatalf("%d MGETs, %d GETs of documents", mgets, docGets)
	}
	if got := sorted(dump(t, rdb, ks, "counts")); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("prefetching model differs:\n got %v\nwant %v", got, want)
	}
}
