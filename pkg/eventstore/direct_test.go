package eventstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
)

// TestLoadLongHistoryAndNoServerState loads an aggregate whose history spans
// several direct-get batches, interleaved with another aggregate's events,
// and checks that loading leaves nothing behind on the server: loads used to
// create an ordered consumer each, which piled up to the stream's limit.
func TestLoadLongHistoryAndNoServerState(t *testing.T) {
	js, store := setup(t)
	ctx := context.Background()
	const n = 1300 // more than two batches
	var last uint64
	for i := range n {
		ev := events.Event(events.OrderValidated{})
		if i == 0 {
			ev = placed()
		}
		res, err := store.Append(ctx, eventstore.Append{AggregateID: "long", ExpectedSeq: last, CommandID: fmt.Sprintf("c-%d", i), Events: []events.Envelope{env(t, "long", ev)}})
		if err != nil {
			t.Fatal(err)
		}
		last = res.LastSeq
		if i%100 == 0 { // another aggregate's events between long's
			if _, err := store.Append(ctx, eventstore.Append{AggregateID: fmt.Sprintf("other-%d", i), CommandID: fmt.Sprintf("o-%d", i), Events: []events.Envelope{env(t, fmt.Sprintf("other-%d", i), placed())}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 20 {
		recs, got, err := store.Load(ctx, "long")
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != n || got != last {
			t.Fatalf("loaded %d records up to %d, want %d up to %d", len(recs), got, n, last)
		}
		for i := 1; i < len(recs); i++ {
			if recs[i].Seq <= recs[i-1].Seq || recs[i].Subject != "orders.long" {
				t.Fatalf("record %d: seq %d after %d on %s", i, recs[i].Seq, recs[i-1].Seq, recs[i].Subject)
			}
		}
		if recs[0].Envelope.Type != "order_placed" || recs[0].CommandID != "c-0" || recs[0].Stored.IsZero() || recs[0].Stream != events.Orders.Stream {
			t.Fatalf("first record %+v", recs[0])
		}
	}
	seq, err := store.LastSeq(ctx, "long")
	if err != nil || seq != last {
		t.Fatalf("LastSeq = %d, %v; want %d", seq, err, last)
	}
	st, err := js.Stream(ctx, events.Orders.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("loads left %d consumers on the stream", info.State.Consumers)
	}
}

// TestLoadFromStreamWithoutDirectGets reports the log as unavailable, not
// as an empty aggregate, when the stream does not answer direct gets.
func TestLoadFromStreamWithoutDirectGets(t *testing.T) {
	js, _ := setup(t)
	ctx := context.Background()
	st, err := js.Stream(ctx, events.Kitchen.Stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(js, events.NewRegistry(), events.Kitchen)
	if _, _, err := store.Load(ctx, "t1"); err == nil {
		t.Fatal("load from a stream without direct gets succeeded")
	}
	if _, err := store.LastSeq(ctx, "t1"); err == nil {
		t.Fatal("LastSeq from a stream without direct gets succeeded")
	}
}

// TestBurstOfAtomicAppendsAllLand sends more concurrent multi-event appends
// than the server keeps atomic batches open per stream (50): the store
// queues them, so none fails as an incomplete batch.
func TestBurstOfAtomicAppendsAllLand(t *testing.T) {
	js, store := setup(t)
	ctx := context.Background()
	const n = 200
	errs := make(chan error, n)
	for i := range n {
		go func() {
			id := fmt.Sprintf("burst-%d", i)
			_, err := store.Append(ctx, eventstore.Append{AggregateID: id, CommandID: "cmd-" + id, Events: []events.Envelope{env(t, id, placed()), env(t, id, events.OrderValidated{})}})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(ctx, events.Orders.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2*n {
		t.Fatalf("stream holds %d messages, want %d", info.State.Msgs, 2*n)
	}
}

func TestLastSeqFromLeader(t *testing.T) {
	_, store := setup(t)
	ctx := context.Background()
	if seq, err := store.LastSeqFromLeader(ctx, "nobody"); err != nil || seq != 0 {
		t.Fatalf("missing aggregate: %d, %v", seq, err)
	}
	res, err := store.Append(ctx, eventstore.Append{AggregateID: "o9", CommandID: "c9", Events: []events.Envelope{env(t, "o9", placed())}})
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := store.LastSeqFromLeader(ctx, "o9"); err != nil || seq != res.LastSeq {
		t.Fatalf("LastSeqFromLeader = %d, %v; want %d", seq, err, res.LastSeq)
	}
	if _, err := store.LastSeqFromLeader(ctx, "bad.id"); err == nil {
		t.Fatal("an invalid id was accepted")
	}
}
