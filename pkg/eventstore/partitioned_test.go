package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestPartitionAssignmentIsBalancedAndMovesLittle(t *testing.T) {
	for _, n := range []int{8, 16, 32} {
		for size := 1; size <= 6; size++ {
			members := make([]string, size)
			for i := range members {
				members[i] = fmt.Sprintf("inventory-%d", i)
			}
			owners := eventstore.AssignPartitions(members, n)
			load := map[string]int{}
			for p, o := range owners {
				if o == "" {
					t.Fatalf("n=%d members=%d: partition %d unassigned", n, size, p)
				}
				load[o]++
			}
			lo, hi := n, 0
			for _, m := range members {
				lo, hi = min(lo, load[m]), max(hi, load[m])
			}
			if hi-lo > 1 && !(size > n) {
				t.Errorf("n=%d members=%d: loads between %d and %d: %v", n, size, lo, hi, load)
			}
			// Order of the member list does not matter.
			rev := slices.Clone(members)
			slices.Reverse(rev)
			if !slices.Equal(owners, eventstore.AssignPartitions(rev, n)) {
				t.Errorf("n=%d members=%d: assignment depends on the order of members", n, size)
			}
			if size == 1 {
				continue
			}
			// One member leaves: its partitions move, and only a few others.
			gone := members[size/2]
			after := eventstore.AssignPartitions(slices.DeleteFunc(slices.Clone(members), func(m string) bool { return m == gone }), n)
			extra := 0
			for p := range owners {
				if owners[p] != gone && owners[p] != after[p] {
					extra++
				}
			}
			if limit := (n + size - 1) / size; extra > limit {
				t.Errorf("n=%d members=%d: %d partitions of surviving members moved when %s left (limit %d)", n, size, extra, gone, limit)
			}
		}
	}
}

func TestPartitionOfIsStable(t *testing.T) {
	// The mapping is a contract between members (and between releases):
	// FNV-1a 32 of the key, modulo the partition count.
	for key, want := range map[string]int{"": 5, "a": 4, "order-1": 5, "0192f1d2-7c1e-7c3a-9b5e-2f6a1c0d3e4f": 4} {
		if got := eventstore.PartitionOf(key, 8); got != want {
			t.Errorf("PartitionOf(%q, 8) = %d, want %d", key, got, want)
		}
	}
	if got := eventstore.AggregateKey("orders.o-17", nil); got != "o-17" {
		t.Errorf("AggregateKey = %q", got)
	}
	if got := eventstore.PartitionDurable("inventory-orders", 3, 8); got != "inventory-orders-p3of8" {
		t.Errorf("PartitionDurable = %q", got)
	}
}

// --- integration: members on an embedded JetStream server ---

// handling is what the handlers of every member record.
type handling struct {
	mu        sync.Mutex
	byKey     map[string][]uint64      // stream sequences handled, in handling order
	by        map[uint64][]string      // members that handled each sequence
	member    map[string]int           // handled per member
	inFlight  map[int]string           // partition → member handling one of its messages now
	overlaps  []string                 // concurrent handling of one partition
	failFirst map[uint64]bool          // sequences whose first attempt fails
	attempts  map[uint64]int           // attempts per sequence
	partOf    func(string) int         // partition of a key
	gate      map[string]chan struct{} // per member: when set, handlers wait on it
	onHandle  func(member string, seq uint64)
}

func newHandling(partitions int) *handling {
	return &handling{
		byKey: map[string][]uint64{}, by: map[uint64][]string{}, member: map[string]int{},
		inFlight: map[int]string{}, failFirst: map[uint64]bool{}, attempts: map[uint64]int{},
		partOf: func(k string) int { return eventstore.PartitionOf(k, partitions) },
		gate:   map[string]chan struct{}{},
	}
}

func (h *handling) handler(member string) eventstore.Handler {
	return func(ctx context.Context, rec eventstore.Record) error {
		key := rec.Envelope.AggregateID
		p := h.partOf(key)
		h.mu.Lock()
		if other, busy := h.inFlight[p]; busy {
			h.overlaps = append(h.overlaps, fmt.Sprintf("partition %d: %s handles seq %d while %s is busy", p, member, rec.Seq, other))
		}
		h.inFlight[p] = member
		h.attempts[rec.Seq]++
		fail := h.failFirst[rec.Seq] && h.attempts[rec.Seq] == 1
		gate := h.gate[member]
		h.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
			}
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.inFlight, p)
		if fail {
			return errors.New("transient failure")
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.byKey[key] = append(h.byKey[key], rec.Seq)
		h.by[rec.Seq] = append(h.by[rec.Seq], member)
		h.member[member]++
		return nil
	}
}

func (h *handling) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.by)
}

type member struct {
	name string
	nc   *nats.Conn
	c    *eventstore.PartitionedConsumer
}

func startMember(t *testing.T, s *server.Server, name string, spec eventstore.PartitionSpec, h *handling) *member {
	t.Helper()
	nc := testkit.Connect(t, s)
	js := testkit.JetStream(t, nc)
	c, err := eventstore.ConsumePartitioned(context.Background(), js, events.NewRegistry(), spec, h.handler(name), eventstore.PartitionOptions{
		ConsumerOptions: eventstore.ConsumerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Member:          name,
	})
	if err != nil {
		t.Fatalf("member %s: %v", name, err)
	}
	t.Cleanup(c.Stop)
	return &member{name: name, nc: nc, c: c}
}

func partitionSpec(durable string, partitions int) eventstore.PartitionSpec {
	return eventstore.PartitionSpec{
		ConsumerSpec: eventstore.ConsumerSpec{Stream: "ORDERS", Durable: durable, FilterSubjects: []string{"orders.>"},
			MaxDeliver: 5, BackOff: []time.Duration{5 * time.Millisecond}, MaxAckPending: 64},
		Partitions: partitions,
		LeaseTTL:   1500 * time.Millisecond,
	}
}

// publish appends events i in [from, to) to aggregate k<i mod keys>, one
// at a time: stream sequence i+1.
func publish(t *testing.T, store *eventstore.Store, from, to, keys int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < to; i++ {
		id := "k" + strconv.Itoa(i%keys)
		var last uint64
		if i >= keys {
			last = uint64(i - keys + 1)
		}
		e := env(t, id, placed())
		if _, err := store.Append(ctx, eventstore.Append{AggregateID: id, ExpectedSeq: last, CommandID: "c" + strconv.Itoa(i), Events: []events.Envelope{e}}); err != nil {
			t.Fatal(err)
		}
	}
}

// owners waits until the live members own every partition exactly once
// and returns what each owns.
func owners(t *testing.T, partitions int, ms ...*member) map[string][]int {
	t.Helper()
	var got map[string][]int
	testkit.Eventually(t, 15*time.Second, func() error {
		got = map[string][]int{}
		seen := map[int]string{}
		for _, m := range ms {
			for _, p := range m.c.Owned() {
				if o, dup := seen[p]; dup {
					return fmt.Errorf("partition %d owned by %s and %s", p, o, m.name)
				}
				seen[p] = m.name
				got[m.name] = append(got[m.name], p)
			}
		}
		if len(seen) != partitions {
			return fmt.Errorf("%d of %d partitions owned: %v", len(seen), partitions, got)
		}
		want := (partitions + len(ms) - 1) / len(ms)
		for _, m := range ms {
			if n := len(got[m.name]); n == 0 || n > want {
				return fmt.Errorf("%s owns %d partitions: %v", m.name, n, got)
			}
		}
		return nil
	})
	return got
}

// checkOrder fails the test if a key's events were handled out of stream
// order. A sequence handled again (after a crashed owner's partition moved)
// must come from a different member and may only repeat a suffix.
func checkOrder(t *testing.T, h *handling) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for key, seqs := range h.byKey {
		max := uint64(0)
		for _, s := range seqs {
			if s <= max {
				by := h.by[s]
				if len(by) < 2 || by[0] == by[len(by)-1] {
					t.Errorf("key %s: seq %d handled after %d (by %v): %v", key, s, max, by, seqs)
				}
			}
			max = s
		}
	}
	for _, o := range h.overlaps {
		t.Error(o)
	}
}

// Three members split the partitions evenly and each handles its share;
// every event is handled once, in order per key, and no partition is ever
// handled by two members at once. One member's connection is then closed
// (a crash: no release): after its leases expire the survivors take its
// partitions over from their ack floor, and the rest of the load is
// handled with nothing lost.
func TestPartitionedMembersShareLoadAndTakeOverFromACrash(t *testing.T) {
	s, _, store := setupServer(t)
	const partitions, keys = 6, 40
	spec := partitionSpec("share", partitions)
	h := newHandling(partitions)
	a := startMember(t, s, "a", spec, h)
	b := startMember(t, s, "b", spec, h)
	c := startMember(t, s, "c", spec, h)
	before := owners(t, partitions, a, b, c)
	t.Logf("assignment: %v", before)

	publish(t, store, 0, 300, keys)
	testkit.Eventually(t, 20*time.Second, func() error {
		if n := h.count(); n < 300 {
			return fmt.Errorf("%d of 300 handled", n)
		}
		return nil
	})
	h.mu.Lock()
	for _, m := range []string{"a", "b", "c"} {
		if h.member[m] == 0 {
			t.Errorf("member %s handled nothing: %v", m, h.member)
		}
	}
	for seq, by := range h.by {
		if len(by) != 1 {
			t.Errorf("seq %d handled by %v", seq, by)
		}
	}
	h.mu.Unlock()

	// Crash b mid-load: its handler holds the message in hand when the
	// connection goes.
	h.mu.Lock()
	h.gate["b"] = make(chan struct{})
	h.mu.Unlock()
	publish(t, store, 300, 450, keys)
	b.nc.Close()
	h.mu.Lock()
	close(h.gate["b"])
	h.mu.Unlock()
	publish(t, store, 450, 600, keys)

	crashed := time.Now()
	after := owners(t, partitions, a, c)
	t.Logf("after the crash: %v, %v after closing b's connection", after, time.Since(crashed).Round(time.Millisecond))
	testkit.Eventually(t, 30*time.Second, func() error {
		if n := h.count(); n < 600 {
			return fmt.Errorf("%d of 600 handled", n)
		}
		return nil
	})
	checkOrder(t, h)
	h.mu.Lock()
	defer h.mu.Unlock()
	again := 0
	for seq, by := range h.by {
		if len(by) > 1 {
			again++
		}
		if len(by) > 1 && by[0] != "b" {
			t.Errorf("seq %d handled by %v: only the crashed member's unacknowledged work may be handled again", seq, by)
		}
	}
	t.Logf("handled per member %v; %d events handled again after the crash; all handled %v after it", h.member, again, time.Since(crashed).Round(time.Millisecond))
}

// Handlers that fail are retried in place: the key's later events wait,
// so the order holds. Members joining one by one take partitions over from
// a member that releases them gracefully, without any event handled twice.
func TestPartitionOrderHoldsThroughRetriesAndRebalancing(t *testing.T) {
	s, js, store := setupServer(t)
	const partitions, keys = 4, 10
	spec := partitionSpec("rebalance", partitions)
	h := newHandling(partitions)
	for seq := uint64(1); seq <= 400; seq += 7 {
		h.failFirst[seq] = true
	}
	a := startMember(t, s, "a", spec, h)
	owners(t, partitions, a)
	publish(t, store, 0, 150, keys)
	b := startMember(t, s, "b", spec, h)
	publish(t, store, 150, 300, keys)
	c := startMember(t, s, "c", spec, h)
	publish(t, store, 300, 400, keys)
	owners(t, partitions, a, b, c)
	testkit.Eventually(t, 20*time.Second, func() error {
		if n := h.count(); n < 400 {
			return fmt.Errorf("%d of 400 handled", n)
		}
		return nil
	})
	// A graceful leave hands the partitions over at once.
	c.c.Stop()
	publish(t, store, 400, 450, keys)
	owners(t, partitions, a, b)
	testkit.Eventually(t, 20*time.Second, func() error {
		if n := h.count(); n < 450 {
			return fmt.Errorf("%d of 450 handled", n)
		}
		return nil
	})
	checkOrder(t, h)
	h.mu.Lock()
	defer h.mu.Unlock()
	for seq, by := range h.by {
		if len(by) != 1 {
			t.Errorf("seq %d handled by %v", seq, by)
		}
	}
	for seq := range h.failFirst {
		if seq <= 450 && h.attempts[seq] < 2 {
			t.Errorf("seq %d: %d attempts, want a retry", seq, h.attempts[seq])
		}
	}
	// Each partition consumer acknowledged everything.
	for p := range partitions {
		cons, err := js.Consumer(context.Background(), "ORDERS", eventstore.PartitionDurable("rebalance", p, partitions))
		if err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 5*time.Second, func() error {
			info, err := cons.Info(context.Background())
			if err != nil {
				return err
			}
			if info.NumPending > 0 || info.NumAckPending > 0 {
				return fmt.Errorf("partition %d: %d pending, %d unacknowledged", p, info.NumPending, info.NumAckPending)
			}
			return nil
		})
	}
}

// A member with another partition count cannot join a live group.
func TestPartitionCountMismatchIsRefused(t *testing.T) {
	s, _, _ := setupServer(t)
	h := newHandling(4)
	startMember(t, s, "a", partitionSpec("mismatch", 4), h)
	nc := testkit.Connect(t, s)
	_, err := eventstore.ConsumePartitioned(context.Background(), testkit.JetStream(t, nc), events.NewRegistry(), partitionSpec("mismatch", 8), h.handler("b"),
		eventstore.PartitionOptions{Member: "b"})
	if err == nil {
		t.Fatal("a member with 8 partitions joined a group of 4")
	}
}

// setupServer is setup that also returns the server, for members on
// their own connections.
func setupServer(t *testing.T) (*server.Server, jetstream.JetStream, *eventstore.Store) {
	t.Helper()
	s := testkit.RunJetStream(t)
	js := testkit.JetStream(t, testkit.Connect(t, s))
	if err := eventstore.Provision(context.Background(), js, eventstore.StreamOptions{}, events.Orders); err != nil {
		t.Fatal(err)
	}
	return s, js, eventstore.New(js, events.NewRegistry(), events.Orders)
}
