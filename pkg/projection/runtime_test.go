package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// countingProjector keeps, per order, how many events it saw and the last
// type: not idempotent by itself, so any double application shows.
type countingProjector struct{}

type countDoc struct {
	Count    int    `json:"count"`
	LastType string `json:"lastType"`
	Seq      uint64 `json:"seq"`
}

func (countingProjector) Name() string     { return "counts" }
func (countingProjector) Stream() string   { return events.Orders.Stream }
func (countingProjector) Filter() []string { return []string{events.Orders.Wildcard()} }
func (countingProjector) Apply(ctx context.Context, tx *Tx, rec eventstore.Record) error {
	key := tx.Key("order", rec.Envelope.AggregateID)
	var doc countDoc
	if raw, ok, err := tx.Get(ctx, key); err != nil {
		return err
	} else if ok {
		if err := json.Unmarshal([]byte(raw), &doc); err != nil {
			return err
		}
	}
	doc.Count++
	doc.LastType = rec.Envelope.Type
	doc.Seq = tx.Seq()
	b, _ := json.Marshal(doc)
	tx.Set(key, string(b))
	tx.ZAdd(tx.Key("by-count"), float64(doc.Count), rec.Envelope.AggregateID)
	tx.Notify(rec.Envelope.AggregateID)
	return nil
}

func fixture(t *testing.T, orders, eventsPerOrder int) (jetstream.JetStream, *redis.Client, string) {
	t.Helper()
	s := testkit.RunJetStream(t)
	js := testkit.JetStream(t, testkit.Connect(t, s))
	ctx := context.Background()
	if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{}, events.Orders); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(js, events.NewRegistry(), events.Orders)
	seqs := map[string]uint64{}
	for e := 0; e < eventsPerOrder; e++ {
		for o := 0; o < orders; o++ {
			id := fmt.Sprintf("o%d", o)
			var ev events.Event = events.OrderQueued{TicketID: fmt.Sprint(e)}
			if e == 0 {
				ev = events.OrderPlaced{RestaurantID: "r1"}
			}
			en, _ := events.NewEnvelope(id, ev, time.Now(), events.Meta{})
			res, err := store.Append(ctx, eventstore.Append{AggregateID: id, ExpectedSeq: seqs[id], CommandID: fmt.Sprintf("%s-%d", id, e), Events: []events.Envelope{en}})
			if err != nil {
				t.Fatal(err)
			}
			seqs[id] = res.LastSeq
		}
	}
	rdb, ks := testkit.Redis(t)
	return js, rdb, ks
}

// dump returns every key of a model (without the keyspace) and its value.
func dump(t *testing.T, rdb *redis.Client, keyspace, model string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	keys, err := rdb.Keys(ctx, KeyBase(keyspace, model)+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		short := strings.TrimPrefix(k, keyspace)
		switch rdb.Type(ctx, k).Val() {
		case "string":
			out[short] = rdb.Get(ctx, k).Val()
		case "zset":
			z := rdb.ZRangeWithScores(ctx, k, 0, -1).Val()
			out[short] = fmt.Sprint(z)
		default:
			t.Fatalf("unexpected type of %s", k)
		}
	}
	return out
}

func runUntilCaughtUp(t *testing.T, js jetstream.JetStream, rdb *redis.Client, keyspace string) (*Runtime, context.CancelFunc) {
	t.Helper()
	r := New(js, rdb, events.NewRegistry(), countingProjector{}, Options{Keyspace: keyspace, BatchSize: 7})
	return r, runCaughtUp(t, r)
}

// runCaughtUp runs r until it has caught up with its stream and returns
// the function that stops it.
func runCaughtUp(t *testing.T, r *Runtime) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	stop := func() { cancel(); <-done }
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := r.WaitCaughtUp(wctx); err != nil {
		stop()
		t.Fatal(err)
	}
	return stop
}

func TestProjectionAppliesEveryEventOnce(t *testing.T) {
	js, rdb, ks := fixture(t, 10, 4)
	r, stop := runUntilCaughtUp(t, js, rdb, ks)
	defer stop()
	if r.Checkpoint() != 40 {
		t.Fatalf("checkpoint %d", r.Checkpoint())
	}
	m := dump(t, rdb, ks, "counts")
	for o := 0; o < 10; o++ {
		var d countDoc
		if err := json.Unmarshal([]byte(m[fmt.Sprintf("rm:counts:order:o%d", o)]), &d); err != nil {
			t.Fatal(err)
		}
		if d.Count != 4 || d.LastType != "order_queued" {
			t.Fatalf("o%d: %+v", o, d)
		}
	}
	if m["rm:counts:_checkpoint"] != "40" {
		t.Fatalf("stored checkpoint %q", m["rm:counts:_checkpoint"])
	}
}

// Catching up, a batch's commit runs while the next batch is applied; the
// next batch reads the keys the committing one wrote (every order has an
// event in every batch here), so a read that missed them would lose counts.
func TestCatchUpOverlapsCommitsWithoutLosingWrites(t *testing.T) {
	const orders, perOrder = 3, 300
	js, rdb, ks := fixture(t, orders, perOrder)
	r := New(js, rdb, events.NewRegistry(), countingProjector{}, Options{Keyspace: ks, BatchSize: 7})
	// Hold each background commit until the next batch has been applied,
	// so that batch's reads of the keys being committed cannot find them
	// in Redis yet: only Tx.prev has them.
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	prepared := 0
	r.hookPrepared = func() {
		mu.Lock()
		prepared++
		cond.Broadcast()
		mu.Unlock()
	}
	r.hookOverlapCommit = func() func() {
		mu.Lock()
		next := prepared + 1
		mu.Unlock()
		return func() {
			mu.Lock()
			for prepared < next {
				cond.Wait()
			}
			mu.Unlock()
		}
	}
	defer runCaughtUp(t, r)()
	if r.Checkpoint() != orders*perOrder {
		t.Fatalf("checkpoint %d, want %d", r.Checkpoint(), orders*perOrder)
	}
	if r.overlapped.Load() == 0 {
		t.Fatal("no commit overlapped the next batch: the catch-up path was not exercised")
	}
	m := dump(t, rdb, ks, "counts")
	for o := 0; o < orders; o++ {
		var d countDoc
		if err := json.Unmarshal([]byte(m[fmt.Sprintf("rm:counts:order:o%d", o)]), &d); err != nil {
			t.Fatal(err)
		}
		if d.Count != perOrder {
			t.Fatalf("o%d: counted %d events, want %d (%d commits overlapped)", o, d.Count, perOrder, r.overlapped.Load())
		}
	}
	t.Logf("%d commits overlapped the next batch (%d events, batches of at most 7)", r.overlapped.Load(), orders*perOrder)
}

// Every event delivered twice, and batches replayed out of order, leave the
// model exactly as one clean pass does.
func TestRedeliveryLeavesModelUnchanged(t *testing.T) {
	js, rdb, ks := fixture(t, 5, 3)
	ctx := context.Background()
	_, stop := runUntilCaughtUp(t, js, rdb, ks+"clean:")
	stop()
	want := dump(t, rdb, ks+"clean:", "counts")

	cons, err := js.OrderedConsumer(ctx, events.Orders.Stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(15, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != 15 {
		t.Fatalf("fetched %d", len(msgs))
	}
	r := New(js, rdb, events.NewRegistry(), countingProjector{}, Options{Keyspace: ks})
	cpKey := CheckpointKey(ks, "counts")
	deliveries := [][]jetstream.Msg{msgs[:6], msgs[:6], msgs[3:10], msgs[0:2], msgs[6:], msgs, msgs[14:]}
	for i, d := range deliveries {
		if _, err := r.apply(ctx, cpKey, d); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	got := dump(t, rdb, ks, "counts")
	if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(want)) {
		t.Fatalf("model after redelivery differs:\n got %v\nwant %v", got, want)
	}
	// Two runtimes racing on one keyspace also converge on the same model.
	_, stop1 := runUntilCaughtUp(t, js, rdb, ks+"race:")
	_, stop2 := runUntilCaughtUp(t, js, rdb, ks+"race:")
	stop1()
	stop2()
	if fmt.Sprint(sorted(dump(t, rdb, ks+"race:", "counts"))) != fmt.Sprint(sorted(want)) {
		t.Fatal("racing runtimes produced a different model")
	}
}

// Wiping the model (or starting on an empty Redis) rebuilds it from
// sequence 1, equal to the live model.
func TestRebuildEqualsLiveModel(t *testing.T) {
	js, rdb, ks := fixture(t, 8, 3)
	_, stop := runUntilCaughtUp(t, js, rdb, ks)
	stop()
	live := dump(t, rdb, ks, "counts")
	ctx := context.Background()
	if err := DeleteModel(ctx, rdb, ks, "counts"); err != nil {
		t.Fatal(err)
	}
	if n := len(dump(t, rdb, ks, "counts")); n != 0 {
		t.Fatalf("%d keys left after delete", n)
	}
	r, stop := runUntilCaughtUp(t, js, rdb, ks)
	defer stop()
	if r.Checkpoint() != 24 {
		t.Fatalf("rebuilt checkpoint %d", r.Checkpoint())
	}
	if fmt.Sprint(sorted(dump(t, rdb, ks, "counts"))) != fmt.Sprint(sorted(live)) {
		t.Fatal("rebuilt model differs from the live one")
	}
}

// An event the projector cannot decode is parked and skipped; the model
// keeps up with the rest.
func TestUndecodableEventIsParked(t *testing.T) {
	js, rdb, ks := fixture(t, 2, 1)
	ctx := context.Background()
	if _, err := js.Publish(ctx, "orders.o0", []byte(`{"type":"order_placed","version":99,"aggregateId":"o0","data":{}}`)); err != nil {
		t.Fatal(err)
	}
	en, _ := events.NewEnvelope("o1", events.OrderValidated{}, time.Now(), events.Meta{})
	b, _ := en.Marshal()
	if _, err := js.Publish(ctx, "orders.o1", b); err != nil {
		t.Fatal(err)
	}
	var parked []eventstore.DeadLetter
	r := New(js, rdb, events.NewRegistry(), countingProjector{}, Options{Keyspace: ks, OnDeadLetter: func(dl eventstore.DeadLetter) { parked = append(parked, dl) }})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(rctx) }()
	testkit.Eventually(t, 10*time.Second, func() error {
		if r.Checkpoint() != 4 {
			return fmt.Errorf("checkpoint %d", r.Checkpoint())
		}
		return nil
	})
	cancel()
	<-done
	if len(parked) != 1 || parked[0].Seq != 3 || !strings.Contains(parked[0].Error, "newer than the latest") {
		t.Fatalf("parked %+v", parked)
	}
	var d countDoc
	_ = json.Unmarshal([]byte(dump(t, rdb, ks, "counts")["rm:counts:order:o1"]), &d)
	if d.Count != 2 || d.LastType != "order_validated" {
		t.Fatalf("o1 %+v", d)
	}
}

func sorted(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Redis losing the model under a running projector (FLUSHALL, a restart of
// an unpersisted Redis) makes the next commit fail its checkpoint check;
// the runtime rebuilds from sequence 1 by itself.
func TestModelWipedWhileRunningRebuildsItself(t *testing.T) {
	js, rdb, ks := fixture(t, 4, 2)
	_, stop := runUntilCaughtUp(t, js, rdb, ks+"ref:")
	defer stop()
	r, stop2 := runUntilCaughtUp(t, js, rdb, ks)
	defer stop2()
	ctx := context.Background()
	if err := DeleteModel(ctx, rdb, ks, "counts"); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(js, events.NewRegistry(), events.Orders)
	en, _ := events.NewEnvelope("late", events.OrderPlaced{RestaurantID: "r1"}, time.Now(), events.Meta{})
	if _, err := store.Append(ctx, eventstore.Append{AggregateID: "late", CommandID: "late", Events: []events.Envelope{en}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, func() error {
		want := sorted(dump(t, rdb, ks+"ref:", "counts"))
		got := sorted(dump(t, rdb, ks, "counts"))
		if fmt.Sprint(got) != fmt.Sprint(want) || r.Checkpoint() != 9 {
			return fmt.Errorf("model has %d keys (want %d), checkpoint %d", len(got), len(want), r.Checkpoint())
		}
		return nil
	})
}

// Switching a rebuilt model in replaces the live one in one step, and the
// live projector carries on from the rebuilt checkpoint.
func TestSwitchModelReplacesTheLiveModel(t *testing.T) {
	js, rdb, ks := fixture(t, 5, 2)
	r, stop := runUntilCaughtUp(t, js, rdb, ks)
	defer stop()
	want := sorted(dump(t, rdb, ks, "counts"))
	ctx := context.Background()
	// A stray live key that the rebuild does not produce must go.
	rdb.Set(ctx, KeyBase(ks, "counts")+"stray", "x", 0)
	_, stopRebuild := runUntilCaughtUp(t, js, rdb, ks+"rebuild:")
	stopRebuild()
	n, err := SwitchModel(ctx, rdb, "counts", ks, ks+"rebuild:")
	if err != nil || n == 0 {
		t.Fatalf("switch moved %d keys: %v", n, err)
	}
	if got := sorted(dump(t, rdb, ks, "counts")); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the switch:\n got %v\nwant %v", got, want)
	}
	if left := dump(t, rdb, ks+"rebuild:", "counts"); len(left) != 0 {
		t.Fatalf("rebuilt keys left behind: %v", left)
	}
	store := eventstore.New(js, events.NewRegistry(), events.Orders)
	en, _ := events.NewEnvelope("after", events.OrderPlaced{RestaurantID: "r1"}, time.Now(), events.Meta{})
	if _, err := store.Append(ctx, eventstore.Append{AggregateID: "after", CommandID: "after", Events: []events.Envelope{en}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if _, ok := dump(t, rdb, ks, "counts")["rm:counts:order:after"]; !ok || r.Checkpoint() != 11 {
			return fmt.Errorf("live projector at %d has not applied the next event", r.Checkpoint())
		}
		return nil
	})
}

// docCounter is a per-order document whose decodes are counted.
type docCounter struct {
	N int `json:"n"`
}

var docDecodes atomic.Int64

func (d *docCounter) UnmarshalJSON(b []byte) error {
	docDecodes.Add(1)
	type plain docCounter
	return json.Unmarshal(b, (*plain)(d))
}

// docProjector counts each order's events in a document.
type docProjector struct{}

func (docProjector) Name() string     { return "doccounts" }
func (docProjector) Stream() string   { return events.Orders.Stream }
func (docProjector) Filter() []string { return []string{events.Orders.Wildcard()} }
func (docProjector) Apply(ctx context.Context, tx *Tx, rec eventstore.Record) error {
	key := tx.Key("order", rec.Envelope.AggregateID)
	d, _, err := GetDoc[docCounter](ctx, tx, key)
	if err != nil {
		return err
	}
	d.N++
	tx.PutDoc(key, d)
	return nil
}

// A document every batch changes is decoded once per run, not once per
// batch: each batch hands its decoded documents to the next.
func TestDocumentsCarryOverBetweenBatches(t *testing.T) {
	const orders, perOrder = 3, 300
	js, rdb, ks := fixture(t, orders, perOrder)
	docDecodes.Store(0)
	r := New(js, rdb, events.NewRegistry(), docProjector{}, Options{Keyspace: ks, BatchSize: 7})
	defer runCaughtUp(t, r)()
	for o := 0; o < orders; o++ {
		raw, err := rdb.Get(context.Background(), KeyBase(ks, "doccounts")+fmt.Sprintf("order:o%d", o)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if raw != fmt.Sprintf(`{"n":%d}`, perOrder) {
			t.Fatalf("o%d: %s, want %d events counted", o, raw, perOrder)
		}
	}
	batches := orders * perOrder / 7
	if n := docDecodes.Load(); n > int64(batches/4) {
		t.Fatalf("%d documents decoded over about %d batches: they are not carried from batch to batch", n, batches)
	}
	t.Logf("%d decodes for %d events in batches of at most 7", docDecodes.Load(), orders*perOrder)
}
