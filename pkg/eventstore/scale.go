package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Scale says how the instances of a service share its durable consumers
// (ADR 0015, docs/scaling.md). The zero value is one shared durable per
// reaction: any instance may take any message, and two events of one
// aggregate can be handled at the same time by two instances.
type Scale struct {
	// Partitions > 0 runs every durable consumer of the service as a
	// partitioned consumer group of that many partitions, this instance a
	// member: each aggregate's events are handled by one instance at a
	// time, in stream order. Every instance must use the same count.
	Partitions int
	// InstanceID names this instance among the members (and as the owner
	// of its projectors' leases). Unique among live instances: the pod name.
	InstanceID string
	// LeaseTTL is how long a crashed instance keeps its partitions.
	LeaseTTL time.Duration
	// Replicas of the lease buckets (the streams' replicas).
	Replicas int
	// OnOwnership, if set, is called with a durable's partitions this
	// instance owns whenever they change.
	OnOwnership func(durable string, owned []int)
}

// Partitioned reports whether the consumers run as partitioned groups.
func (s Scale) Partitioned() bool { return s.Partitions > 0 }

// Running is a consumer started by ConsumeScaled, of either kind.
type Running interface {
	// Stop stops consuming; a message being handled completes.
	Stop()
}

// ConsumeScaled starts the consumer spec the way sc asks: the shared
// durable (Consume) or this instance's member of the partitioned group
// (ConsumePartitioned, keyed by aggregate id).
func ConsumeScaled(ctx context.Context, js jetstream.JetStream, reg *events.Registry, sc Scale, spec ConsumerSpec, h Handler, opts ConsumerOptions) (Running, error) {
	if !sc.Partitioned() {
		c, err := Consume(ctx, js, reg, spec, h, opts)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	popts := PartitionOptions{ConsumerOptions: opts, Member: sc.InstanceID}
	if sc.OnOwnership != nil {
		durable := spec.Durable
		popts.OnOwnership = func(owned []int) { sc.OnOwnership(durable, owned) }
	}
	pc, err := ConsumePartitioned(ctx, js, reg, PartitionSpec{ConsumerSpec: spec, Partitions: sc.Partitions, LeaseTTL: sc.LeaseTTL, Replicas: sc.Replicas}, h, popts)
	if err != nil {
		return nil, err
	}
	return pc, nil
}

// Consumers is the set of durable consumers one service instance runs, all
// started the way its Scale asks. The zero value is ready to use.
type Consumers struct {
	mu      sync.Mutex
	list    []Running
	waiting map[string]bool // durables whose stream does not exist yet
	stopped bool
	quit    chan struct{} // closed by Stop
	wg      sync.WaitGroup
}

// Start starts spec (ConsumeScaled) and keeps it, unless ctx ended or Stop
// was called meanwhile: then the consumer is stopped at once.
func (g *Consumers) Start(ctx context.Context, js jetstream.JetStream, reg *events.Registry, sc Scale, spec ConsumerSpec, h Handler, opts ConsumerOptions) error {
	c, err := ConsumeScaled(ctx, js, reg, sc, spec, h, opts)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.waiting, spec.Durable)
	if ctx.Err() != nil || g.stopped {
		c.Stop()
		return nil
	}
	g.list = append(g.list, c)
	return nil
}

// StartWhenAvailable starts spec like Start; if its stream does not exist
// yet (its owner has not provisioned it), it keeps trying in the
// background, backing off up to 5 s, until it starts, ctx ends or Stop is
// called. Waiting lists the consumers still waiting.
func (g *Consumers) StartWhenAvailable(ctx context.Context, js jetstream.JetStream, reg *events.Registry, sc Scale, spec ConsumerSpec, h Handler, opts ConsumerOptions) error {
	err := g.Start(ctx, js, reg, sc, spec, h, opts)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("consumer", spec.Durable, "stream", spec.Stream)
	log.Warn("stream does not exist yet; the consumer starts when it does")
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return nil
	}
	if g.waiting == nil {
		g.waiting = map[string]bool{}
	}
	if g.quit == nil {
		g.quit = make(chan struct{})
	}
	g.waiting[spec.Durable] = true
	quit := g.quit
	g.wg.Go(func() {
		wait := 100 * time.Millisecond
		for {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-quit:
				t.Stop()
				return
			case <-t.C:
			}
			err := g.Start(ctx, js, reg, sc, spec, h, opts)
			if err == nil {
				log.Info("stream appeared; consumer started")
				return
			}
			if !errors.Is(err, jetstream.ErrStreamNotFound) && ctx.Err() == nil {
				log.Warn("consumer not started; retrying", "retry_in", wait, "err", err)
			}
			wait = min(wait*2, 5*time.Second)
		}
	})
	return nil
}

// Waiting returns the durables waiting for their stream, sorted.
func (g *Consumers) Waiting() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.waiting))
	for d := range g.waiting {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// Len is the number of running consumers.
func (g *Consumers) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.list)
}

// Stop stops every consumer, all at once: partitioned members each release
// their partitions after the message in hand, so that the other instances
// take them over together rather than one consumer after another.
func (g *Consumers) Stop() {
	g.mu.Lock()
	list := g.list
	g.list, g.stopped = nil, true
	if g.quit != nil {
		close(g.quit)
		g.quit = nil
	}
	g.mu.Unlock()
	g.wg.Wait()
	var wg sync.WaitGroup
	for _, c := range list {
		wg.Go(c.Stop)
	}
	wg.Wait()
}

// Partitions returns, per partitioned durable, the partitions this
// instance owns (nil when none is partitioned).
func (g *Consumers) Partitions() map[string][]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out map[string][]int
	for _, c := range g.list {
		if pc, ok := c.(*PartitionedConsumer); ok {
			if out == nil {
				out = map[string][]int{}
			}
			out[pc.Durable()] = pc.Owned()
		}
	}
	return out
}

// Validate refuses settings no instance can run with.
func (s Scale) Validate() error {
	if s.Partitions < 0 {
		return fmt.Errorf("partitions %d must not be negative", s.Partitions)
	}
	if s.LeaseTTL < 0 {
		return fmt.Errorf("partition lease TTL %v must not be negative", s.LeaseTTL)
	}
	return nil
}
