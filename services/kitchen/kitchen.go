// Package kitchen is the kitchen service: it opens a ticket for every order
// whose stock is reserved, moves tickets through preparation, baking and
// quality check with a fair, FIFO assignment of chefs, withdraws tickets of
// cancelled or failed orders, serves chefs' breaks over NATS micro, and
// projects the kitchen display into Redis. The same Service runs as its own
// binary (cmd/kitchen) and inside `pizza dev`.
package kitchen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/services/kitchen/internal/app"
	"github.com/awesome-pizza/pizza/services/kitchen/internal/domain"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Quality-check failure rates.
const (
	// DefaultQCFailureRate is used when Config.QCFailureRate is zero.
	DefaultQCFailureRate = 0.05
	// NoQCFailures as Config.QCFailureRate makes every check pass.
	NoQCFailures = -1.0
)

// Config holds the service's settings.
type Config struct {
	Keyspace string // Redis key prefix of read models; default "pizza:"
	Streams  eventstore.StreamOptions
	// TimeScale divides every kitchen duration (default 1: real time; 60
	// turns a six-minute bake into six seconds).
	TimeScale float64
	// QCFailureRate is the share of quality checks that fail, in [0, 1).
	// Zero means DefaultQCFailureRate; NoQCFailures (any negative value)
	// means none fails.
	QCFailureRate float64
	// Seed makes the quality checks' outcomes reproducible: pass or fail is
	// a function of (Seed, order, attempt).
	Seed int64
	// Concurrency bounds commands handled at once (default 64).
	Concurrency int
	// Scale says how several instances share the reactions' consumers and
	// the display projector (eventstore.Scale). The scheduler runs in one
	// instance at a time whatever it says (ADR 0012).
	Scale eventstore.Scale
}

// Deps are the connections and collaborators the service runs with.
type Deps struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Redis    *redis.Client
	Catalog  *catalog.Catalog
	Registry *events.Registry
	Log      *slog.Logger
	Clock    func() time.Time
	Metrics  prometheus.Registerer
}

// Service is a running kitchen service.
type Service struct {
	cfg     Config
	deps    Deps
	policy  domain.Policy
	metrics *app.Metrics

	proj *projection.Runtime
	// sched is the running scheduler: always, or while this instance
	// leads the kitchen-scheduler role (Config.Scale partitioned).
	sched      atomic.Pointer[app.Scheduler]
	leadership eventstore.Leadership
	svc        micro.Service
	eps        *app.Endpoints
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	consumers eventstore.Consumers

	mu      sync.Mutex
	stopped bool
}

// New checks the configuration and returns a service ready to Start.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.NC == nil || deps.JS == nil || deps.Redis == nil || deps.Catalog == nil {
		return nil, errors.New("kitchen: NATS, JetStream, Redis and the catalogue are required")
	}
	if err := cfg.Scale.Validate(); err != nil {
		return nil, fmt.Errorf("kitchen: %w", err)
	}
	if deps.Registry == nil {
		deps.Registry = events.NewRegistry()
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	if deps.Clock == nil {
		deps.Clock = time.Now
	}
	if cfg.Keyspace == "" {
		cfg.Keyspace = "pizza:"
	}
	switch {
	case cfg.TimeScale == 0:
		cfg.TimeScale = 1
	case cfg.TimeScale < 0:
		return nil, fmt.Errorf("kitchen: time scale %v must be positive", cfg.TimeScale)
	}
	switch {
	case cfg.QCFailureRate == 0:
		cfg.QCFailureRate = DefaultQCFailureRate
	case cfg.QCFailureRate < 0:
		cfg.QCFailureRate = 0
	case cfg.QCFailureRate >= 1:
		return nil, fmt.Errorf("kitchen: quality-check failure rate %v must be below 1 (every pizza would be remade forever)", cfg.QCFailureRate)
	}
	deps.Log = deps.Log.With("service", "kitchen")
	return &Service{
		cfg: cfg, deps: deps,
		policy: domain.Policy{TimeScale: cfg.TimeScale, QCFailureRate: cfg.QCFailureRate, Seed: cfg.Seed},
	}, nil
}

// Start provisions the KITCHEN stream, starts the display projector, the
// scheduler, the reactions to inventory and order events, and serves the
// commands. It returns once commands are being served. A stream of another
// context that does not exist yet is waited for in the background (see
// Ready). ctx bounds the life of the service: when it ends, everything
// winds down; Stop does the same and waits for it.
func (s *Service) Start(ctx context.Context) error {
	if err := eventstore.Provision(ctx, s.deps.JS, s.cfg.Streams, events.Kitchen); err != nil {
		return fmt.Errorf("kitchen: %w", err)
	}
	s.metrics = app.NewMetrics(s.deps.Metrics)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-runCtx.Done():
		}
	}()

	s.proj = projection.New(s.deps.JS, s.deps.Redis, s.deps.Registry, app.Projector{Catalog: s.deps.Catalog}, projection.Options{
		Keyspace: s.cfg.Keyspace, Logger: s.deps.Log, LeaseOwner: s.cfg.Scale.InstanceID,
		OnDeadLetter: func(eventstore.DeadLetter) {
			s.metrics.DeadLetters.WithLabelValues("projector-" + kitchenapi.ReadModel).Inc()
		},
	})
	store := eventstore.New(s.deps.JS, s.deps.Registry, events.Kitchen)
	newScheduler := func() *app.Scheduler {
		return app.NewScheduler(s.deps.JS, store, s.deps.Catalog, s.deps.Clock, s.policy, s.deps.Log,
			func(step string) { s.metrics.Steps.WithLabelValues(step).Inc() })
	}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); _ = s.proj.Run(runCtx) }()
	if !s.cfg.Scale.Partitioned() {
		sched := newScheduler()
		s.sched.Store(sched)
		go func() { defer s.wg.Done(); _ = sched.Run(runCtx) }()
	} else {
		// Scaled out: the scheduler counts every chef's load, so one
		// instance at a time runs it (ADR 0012); each term folds the log
		// afresh.
		go func() {
			defer s.wg.Done()
			spec := eventstore.LeaderSpec{Role: "kitchen-scheduler", Member: s.cfg.Scale.InstanceID, TTL: s.cfg.Scale.LeaseTTL, Replicas: s.cfg.Scale.Replicas, Logger: s.deps.Log}
			err := eventstore.Lead(runCtx, s.deps.JS, spec, &s.leadership, func(ctx context.Context) {
				sched := newScheduler()
				s.sched.Store(sched)
				defer s.sched.Store(nil)
				_ = sched.Run(ctx)
			})
			if err != nil {
				s.deps.Log.Error("kitchen scheduler election failed; this instance does not schedule", "err", err)
			}
		}()
	}

	reactions := app.NewReactions(store, s.deps.Catalog, s.deps.Clock, s.deps.Log)
	if err := s.consume(runCtx, app.InventorySpec(), reactions.OnInventory); err != nil {
		s.Stop()
		return fmt.Errorf("kitchen: %w", err)
	}
	if err := s.consume(runCtx, app.OrdersSpec(), reactions.OnOrders); err != nil {
		s.Stop()
		return fmt.Errorf("kitchen: %w", err)
	}

	svc, err := micro.AddService(s.deps.NC, micro.Config{
		Name:        kitchenapi.ServiceName,
		Version:     kitchenapi.ServiceVersion,
		Description: "Kitchen tickets, chefs' breaks and the kitchen display; owner of the KITCHEN stream",
		QueueGroup:  kitchenapi.QueueGroup,
	})
	if err != nil {
		s.Stop()
		return fmt.Errorf("kitchen: micro service: %w", err)
	}
	eps := app.NewEndpoints(runCtx, s.deps.NC, app.NewCommands(store, s.deps.Catalog, s.deps.Clock, s.deps.Log), s.deps.Log, s.cfg.Concurrency)
	if err := eps.Register(svc); err != nil {
		_ = svc.Stop()
		s.Stop()
		return fmt.Errorf("kitchen: endpoints: %w", err)
	}
	s.mu.Lock()
	s.svc, s.eps = svc, eps
	s.mu.Unlock()
	s.deps.Log.Info("kitchen service started", "keyspace", s.cfg.Keyspace, "time_scale", s.cfg.TimeScale, "qc_failure_rate", s.cfg.QCFailureRate, "seed", s.cfg.Seed)
	return nil
}

// consume starts a durable consumer (shared or partitioned, as Config.Scale
// says). If its stream does not exist yet (the owning service has not
// provisioned it), it keeps trying in the background until it does or the
// service stops.
func (s *Service) consume(ctx context.Context, spec eventstore.ConsumerSpec, h eventstore.Handler) error {
	opts := eventstore.ConsumerOptions{Logger: s.deps.Log, OnDeadLetter: func(dl eventstore.DeadLetter) {
		s.metrics.DeadLetters.WithLabelValues(dl.Consumer).Inc()
	}}
	return s.consumers.StartWhenAvailable(ctx, s.deps.JS, s.deps.Registry, s.cfg.Scale, spec, h, opts)
}

// Stop stops taking commands (in-flight ones finish), stops the consumers
// (the message in hand finishes), then the scheduler and the projector.
// The service cannot be started again; make a new one.
func (s *Service) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	svc, eps := s.svc, s.eps
	s.mu.Unlock()
	if svc != nil {
		_ = svc.Stop()
		eps.Wait()
	}
	s.consumers.Stop()
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	s.deps.Log.Info("kitchen service stopped")
}

// Run starts the service and blocks until ctx ends, then stops it.
func (s *Service) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	s.Stop()
	return nil
}

// Projections exposes the kitchen-display projector, for readiness,
// rebuilds and read-your-writes waits.
func (s *Service) Projections() []*projection.Runtime {
	if s.proj == nil {
		return nil
	}
	return []*projection.Runtime{s.proj}
}

// Ready reports whether the service is fully serving: the display has
// caught up with the log, the scheduler has rebuilt the kitchens, and both
// consumers run.
func (s *Service) Ready(context.Context) error {
	var errs []error
	if s.proj == nil || !s.proj.CaughtUp() {
		errs = append(errs, errors.New("kitchen display is still catching up with the log"))
	}
	// Scaled out, an instance that does not lead the scheduler role is
	// ready without one: another instance schedules.
	standby := s.cfg.Scale.Partitioned() && !s.leadership.Leading()
	if sched := s.sched.Load(); !standby && (sched == nil || !sched.CaughtUp()) {
		errs = append(errs, errors.New("kitchen scheduler is still rebuilding from the log"))
	}
	for _, durable := range s.consumers.Waiting() {
		errs = append(errs, fmt.Errorf("consumer %s is waiting for its stream", durable))
	}
	return errors.Join(errs...)
}

// Partitions returns, per partitioned durable, the partitions this
// instance owns (nil unless partitioned).
func (s *Service) Partitions() map[string][]int { return s.consumers.Partitions() }

// Scheduling reports whether this instance runs the kitchen's scheduler.
func (s *Service) Scheduling() bool { return s.sched.Load() != nil }

// Projectors returns the kitchen's read-model projectors (for `pizza rebuild`).
func Projectors(cat *catalog.Catalog) []projection.Projector {
	return []projection.Projector{app.Projector{Catalog: cat}}
}
