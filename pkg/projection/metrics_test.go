package projection

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
)

// gatedProjector is countingProjector under another name, whose Apply waits
// for a gate, and whose filter can be narrowed.
type gatedProjector struct {
	countingProjector
	name   string
	filter []string
	gate   chan struct{}
}

func (p gatedProjector) Name() string { return p.name }
func (p gatedProjector) Filter() []string {
	if p.filter != nil {
		return p.filter
	}
	return p.countingProjector.Filter()
}
func (p gatedProjector) Apply(ctx context.Context, tx *Tx, rec eventstore.Record) error {
	if p.gate != nil {
		select {
		case <-p.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.countingProjector.Apply(ctx, tx, rec)
}

func lagOf(projector string) (Lag, bool) {
	for _, l := range ReadTelemetry().Lags {
		if l.Projector == projector {
			return l, true
		}
	}
	return Lag{}, false
}

func appliedOf(projector string) uint64 {
	for _, a := range ReadTelemetry().Applied {
		if a.Projector == projector {
			return a.Count
		}
	}
	return 0
}

// Events in the stream that the projector has not applied are its lag, in
// sequences and in seconds; once it has caught up both are zero; the
// applied counter counts each event once; a stopped projector withdraws
// its lag.
func TestProjectionLag(t *testing.T) {
	js, rdb, ks := fixture(t, 10, 2) // 20 events
	gate := make(chan struct{})
	p := gatedProjector{name: "lag-gated", gate: gate}
	rt := New(js, rdb, events.NewRegistry(), p, Options{Keyspace: ks, LagInterval: 20 * time.Millisecond})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	testkit.Eventually(t, 10*time.Second, func() error {
		l, ok := lagOf("lag-gated")
		if !ok {
			return errors.New("no lag reported")
		}
		if l.Behind != 20 || l.StreamLastSeq != 20 || l.Checkpoint != 0 || l.Seconds <= 0 || l.Stream != "ORDERS" {
			return fmt.Errorf("lag %+v while the projector is held", l)
		}
		return nil
	})
	close(gate)
	testkit.Eventually(t, 10*time.Second, func() error {
		l, ok := lagOf("lag-gated")
		if !ok {
			return errors.New("no lag reported")
		}
		if l.Behind != 0 || l.Seconds != 0 || l.Checkpoint != 20 {
			return fmt.Errorf("lag %+v after catching up", l)
		}
		return nil
	})
	if n := appliedOf("lag-gated"); n != 20 {
		t.Fatalf("applied %d, want 20", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := lagOf("lag-gated"); ok {
		t.Fatal("a stopped projector still reports its lag")
	}
}

// A projector of part of a stream is behind only by its own subjects'
// events, wildcards included.
func TestProjectionLagOfAFilteredProjector(t *testing.T) {
	js, rdb, ks := fixture(t, 10, 2) // o1 at sequences 2 and 12, o9 at 10 and 20
	ctx := context.Background()
	for _, tc := range []struct {
		filter []string
		behind uint64
	}{
		{[]string{"orders.o1"}, 12},
		{[]string{"orders.o1", "orders.o9"}, 20},
		{[]string{"orders.*"}, 20},
		{[]string{"orders.nobody"}, 0},
	} {
		rt := New(js, rdb, events.NewRegistry(), gatedProjector{name: "lag-filtered", filter: tc.filter}, Options{Keyspace: ks})
		l, err := rt.Lag(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if l.Behind != tc.behind || l.StreamLastSeq != 20 || (tc.behind > 0) != (l.Seconds > 0) {
			t.Fatalf("%v: lag %+v, want %d behind", tc.filter, l, tc.behind)
		}
	}
	// With the checkpoint at o1's last event, the o1 projector is current.
	if err := rdb.Set(ctx, CheckpointKey(ks, "lag-filtered"), 12, 0).Err(); err != nil {
		t.Fatal(err)
	}
	rt := New(js, rdb, events.NewRegistry(), gatedProjector{name: "lag-filtered", filter: []string{"orders.o1"}}, Options{Keyspace: ks})
	if l, err := rt.Lag(ctx); err != nil || l.Behind != 0 || l.Seconds != 0 || l.Checkpoint != 12 {
		t.Fatalf("lag %+v, %v", l, err)
	}
}
