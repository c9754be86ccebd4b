package projection

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The process's projectors keep their measurements here, free of any
// metrics library (pkg/service exports them to Prometheus): the events
// each applied, and how far each is behind its stream, read every
// LagInterval while it runs.

// DefaultLagInterval is how often a running projector measures its lag.
const DefaultLagInterval = 10 * time.Second

// Lag is how far a read model is behind the log.
type Lag struct {
	Projector, Stream string
	// Checkpoint is the last stream sequence applied, as stored in Redis.
	Checkpoint uint64
	// Behind is the last sequence of the projector's subjects in the
	// stream minus the checkpoint: 0 when every event is applied. It counts
	// stream sequences, which equal events for a projector that reads the
	// whole stream.
	Behind uint64
	// Seconds is how long the oldest event not yet applied has been in
	// the stream; 0 when caught up.
	Seconds float64
	// StreamLastSeq is the stream's last sequence: the number of events
	// ever appended to it.
	StreamLastSeq uint64
	// At is when this was measured.
	At time.Time
}

// AppliedCount is the number of events a projector applied (parked ones
// included) since the process started, and of those it parked in the
// dead-letter stream.
type AppliedCount struct {
	Projector, Stream string
	Count             uint64
	Parked            uint64
}

// Telemetry is a snapshot of the process's projectors.
type Telemetry struct {
	// Applied lists every counter, sorted; counters outlive their runtime.
	Applied []AppliedCount
	// Lags has one entry per running projector (the largest lag when
	// several runtimes of one projector run in the process), sorted.
	Lags []Lag
}

type appliedKey struct{ projector, stream string }

// projectorCounters count one projector's events in the process.
type projectorCounters struct {
	applied, parked atomic.Uint64
}

var telemetry struct {
	mu      sync.Mutex
	applied map[appliedKey]*projectorCounters
	lags    map[*Runtime]Lag
}

func countersOf(projector, stream string) *projectorCounters {
	telemetry.mu.Lock()
	defer telemetry.mu.Unlock()
	if telemetry.applied == nil {
		telemetry.applied = map[appliedKey]*projectorCounters{}
	}
	k := appliedKey{projector, stream}
	c := telemetry.applied[k]
	if c == nil {
		c = new(projectorCounters)
		telemetry.applied[k] = c
	}
	return c
}

// ReadTelemetry returns the current figures of the process's projectors.
func ReadTelemetry() Telemetry {
	telemetry.mu.Lock()
	defer telemetry.mu.Unlock()
	var t Telemetry
	for k, c := range telemetry.applied {
		t.Applied = append(t.Applied, AppliedCount{Projector: k.projector, Stream: k.stream, Count: c.applied.Load(), Parked: c.parked.Load()})
	}
	sort.Slice(t.Applied, func(i, j int) bool {
		if t.Applied[i].Projector != t.Applied[j].Projector {
			return t.Applied[i].Projector < t.Applied[j].Projector
		}
		return t.Applied[i].Stream < t.Applied[j].Stream
	})
	worst := map[appliedKey]Lag{}
	for _, l := range telemetry.lags {
		k := appliedKey{l.Projector, l.Stream}
		if prev, ok := worst[k]; !ok || l.Behind > prev.Behind || (l.Behind == prev.Behind && l.Seconds > prev.Seconds) {
			worst[k] = l
		}
	}
	for _, l := range worst {
		t.Lags = append(t.Lags, l)
	}
	sort.Slice(t.Lags, func(i, j int) bool {
		if t.Lags[i].Projector != t.Lags[j].Projector {
			return t.Lags[i].Projector < t.Lags[j].Projector
		}
		return t.Lags[i].Stream < t.Lags[j].Stream
	})
	return t
}

// Lag measures how far the read model is behind its stream: the
// checkpoint in Redis against the last event of the projector's subjects.
func (r *Runtime) Lag(ctx context.Context) (Lag, error) {
	l := Lag{Projector: r.p.Name(), Stream: r.p.Stream()}
	cp, err := r.readCheckpoint(ctx, CheckpointKey(r.opts.Keyspace, r.p.Name()))
	if err != nil {
		return l, err
	}
	st, err := r.js.Stream(ctx, r.p.Stream())
	if err != nil {
		return l, err
	}
	info := st.CachedInfo()
	l.Checkpoint, l.StreamLastSeq = cp, info.State.LastSeq
	filters := r.p.Filter()
	whole := len(filters) == 0 || sameSubjects(filters, info.Config.Subjects)
	last := info.State.LastSeq
	if !whole {
		last = 0
		for _, f := range filters {
			m, err := st.GetLastMsgForSubject(ctx, f)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return l, err
			}
			last = max(last, m.Sequence)
		}
	}
	l.At = time.Now()
	if last <= cp {
		return l, nil
	}
	l.Behind = last - cp
	// The oldest event not yet applied: the first of the projector's
	// subjects after the checkpoint.
	if whole {
		filters = []string{">"}
	}
	var oldest time.Time
	for _, f := range filters {
		m, err := st.GetMsg(ctx, cp+1, jetstream.WithGetMsgSubject(f))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return l, err
		}
		if oldest.IsZero() || m.Time.Before(oldest) {
			oldest = m.Time
		}
	}
	if !oldest.IsZero() {
		l.Seconds = max(l.At.Sub(oldest).Seconds(), 0)
	}
	return l, nil
}

func sameSubjects(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// watchLag measures the lag every interval until ctx ends, then withdraws it.
func (r *Runtime) watchLag(ctx context.Context) (stop func()) {
	every := r.opts.LagInterval
	if every < 0 {
		return func() {}
	}
	if every == 0 {
		every = DefaultLagInterval
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		failing := false
		t := time.NewTimer(0) // a first measurement at start
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			mctx, mcancel := context.WithTimeout(ctx, min(every, 5*time.Second))
			l, err := r.Lag(mctx)
			mcancel()
			switch {
			case err != nil && ctx.Err() == nil:
				// The last figures stay; the failure is logged once.
				if !failing {
					r.log.Warn("projection lag not measurable", "err", err)
				}
				failing = true
			case err == nil:
				failing = false
				telemetry.mu.Lock()
				if ctx.Err() == nil {
					if telemetry.lags == nil {
						telemetry.lags = map[*Runtime]Lag{}
					}
					telemetry.lags[r] = l
				}
				telemetry.mu.Unlock()
			}
			t.Reset(every)
		}
	}()
	return func() {
		telemetry.mu.Lock()
		cancel()
		delete(telemetry.lags, r)
		telemetry.mu.Unlock()
		<-done
		// A measurement that finished between cancel and the goroutine's
		// exit checked ctx under the lock: nothing can be left behind.
	}
}
