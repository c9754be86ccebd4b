package eventstore

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The process's durable consumers keep their measurements here, free of
// any metrics library: how many deliveries they handled, retried and
// dead-lettered, and their backlog as the server reports it
// (ConsumerInfo, read every LagInterval). A collector (pkg/service
// exports them to Prometheus) reads them with ReadTelemetry, like the
// process collector reads the process's own figures.

// Outcomes of a delivery, as counted in ConsumedCount.
const (
	// OutcomeHandled: the handler succeeded and the message was acknowledged.
	OutcomeHandled = "handled"
	// OutcomeRetried: the handler failed; the message comes back after its backoff.
	OutcomeRetried = "retried"
	// OutcomeDeadLettered: the message was parked in the dead-letter stream.
	OutcomeDeadLettered = "dead_lettered"
)

// DefaultLagInterval is how often a consumer reads its backlog.
const DefaultLagInterval = 10 * time.Second

// ConsumedCount is the number of deliveries of one outcome since the
// process started.
type ConsumedCount struct {
	Stream, Consumer, Outcome string
	Count                     uint64
}

// ConsumerLag is a durable consumer's backlog as last read from the server.
type ConsumerLag struct {
	Stream, Consumer string
	// Pending: messages of the stream (matching the filter) not yet delivered.
	Pending uint64
	// AckPending: delivered and not yet acknowledged (in a handler, or
	// waiting for a redelivery after a failure or a crash).
	AckPending uint64
	// Redelivered: messages delivered more than once and not yet acknowledged.
	Redelivered uint64
	// At is when the server reported these figures.
	At time.Time
}

// Telemetry is a snapshot of the process's durable consumers.
type Telemetry struct {
	// Consumed lists every counter, sorted; counters outlive their consumer.
	Consumed []ConsumedCount
	// Lags has one entry per running durable (several consumers of one
	// durable in a process report the same server figures: the latest read
	// is kept), sorted by stream and consumer.
	Lags []ConsumerLag
}

type counterKey struct{ stream, consumer, outcome string }

var telemetry struct {
	mu       sync.Mutex
	counters map[counterKey]*atomic.Uint64
	lags     map[*consumerMeters]ConsumerLag
}

func counter(stream, consumer, outcome string) *atomic.Uint64 {
	telemetry.mu.Lock()
	defer telemetry.mu.Unlock()
	if telemetry.counters == nil {
		telemetry.counters = map[counterKey]*atomic.Uint64{}
	}
	k := counterKey{stream, consumer, outcome}
	c := telemetry.counters[k]
	if c == nil {
		c = new(atomic.Uint64)
		telemetry.counters[k] = c
	}
	return c
}

// ReadTelemetry returns the current figures of the process's consumers.
func ReadTelemetry() Telemetry {
	telemetry.mu.Lock()
	defer telemetry.mu.Unlock()
	var t Telemetry
	for k, c := range telemetry.counters {
		t.Consumed = append(t.Consumed, ConsumedCount{Stream: k.stream, Consumer: k.consumer, Outcome: k.outcome, Count: c.Load()})
	}
	sort.Slice(t.Consumed, func(i, j int) bool {
		a, b := t.Consumed[i], t.Consumed[j]
		if a.Stream != b.Stream {
			return a.Stream < b.Stream
		}
		if a.Consumer != b.Consumer {
			return a.Consumer < b.Consumer
		}
		return a.Outcome < b.Outcome
	})
	latest := map[[2]string]ConsumerLag{}
	for _, l := range telemetry.lags {
		k := [2]string{l.Stream, l.Consumer}
		if prev, ok := latest[k]; !ok || l.At.After(prev.At) {
			latest[k] = l
		}
	}
	for _, l := range latest {
		t.Lags = append(t.Lags, l)
	}
	sort.Slice(t.Lags, func(i, j int) bool {
		if t.Lags[i].Stream != t.Lags[j].Stream {
			return t.Lags[i].Stream < t.Lags[j].Stream
		}
		return t.Lags[i].Consumer < t.Lags[j].Consumer
	})
	return t
}

// consumerMeters are one Consumer's counters and lag poller.
type consumerMeters struct {
	stream, consumer string
	handled          *atomic.Uint64
	retried          *atomic.Uint64
	deadLettered     *atomic.Uint64

	done chan struct{}
	wg   sync.WaitGroup
}

func newConsumerMeters(stream, consumer string) *consumerMeters {
	return &consumerMeters{
		stream: stream, consumer: consumer,
		handled:      counter(stream, consumer, OutcomeHandled),
		retried:      counter(stream, consumer, OutcomeRetried),
		deadLettered: counter(stream, consumer, OutcomeDeadLettered),
		done:         make(chan struct{}),
	}
}

func (m *consumerMeters) report(info *jetstream.ConsumerInfo) {
	if info == nil {
		return
	}
	at := info.TimeStamp
	if at.IsZero() {
		at = time.Now()
	}
	l := ConsumerLag{Stream: m.stream, Consumer: m.consumer, Pending: info.NumPending, AckPending: uint64(max(info.NumAckPending, 0)),
		Redelivered: uint64(max(info.NumRedelivered, 0)), At: at}
	telemetry.mu.Lock()
	defer telemetry.mu.Unlock()
	if telemetry.lags == nil {
		telemetry.lags = map[*consumerMeters]ConsumerLag{}
	}
	select {
	case <-m.done:
		return // stopped: a late read must not bring the entry back
	default:
	}
	telemetry.lags[m] = l
}

// watchLag reports the backlog the consumer was created with, then reads
// it from the server every interval until stop.
func (m *consumerMeters) watchLag(cons jetstream.Consumer, every time.Duration, log *slog.Logger) {
	if every < 0 {
		return
	}
	if every == 0 {
		every = DefaultLagInterval
	}
	m.report(cons.CachedInfo())
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-m.done:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), min(every, 5*time.Second))
			info, err := cons.Info(ctx)
			cancel()
			if err != nil {
				// The last figures stay; a lasting failure shows as an old
				// timestamp and in the log, once.
				if !failing {
					log.Warn("consumer lag not readable", "err", err)
				}
				failing = true
				continue
			}
			failing = false
			m.report(info)
		}
	}()
}

// stop ends the polling and withdraws the consumer's lag (its counters stay).
func (m *consumerMeters) stop() {
	telemetry.mu.Lock()
	select {
	case <-m.done:
	default:
		close(m.done)
	}
	delete(telemetry.lags, m)
	telemetry.mu.Unlock()
	m.wg.Wait()
}
