// Package inventory is the inventory service: it owns each restaurant's
// stock aggregate (subject inventory.<restaurantId> of stream INVENTORY),
// reserves stock for placed orders, consumes it when preparation starts,
// releases or wastes it when orders end early, raises low-stock alerts,
// serves restock and adjustment commands over NATS micro, and projects the
// stock read model into Redis. The same Service runs as its own binary
// (cmd/inventory) and inside `pizza dev`.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/services/inventory/internal/app"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Config holds the service's settings.
type Config struct {
	Keyspace string // Redis key prefix of read models; default "pizza:"
	Streams  eventstore.StreamOptions
	// TimeScale speeds up time for demos and tests: every duration below is
	// divided by it. Default 1.
	TimeScale float64
	// CheckInterval is the period of the low-stock check. Default 1m.
	CheckInterval time.Duration
	// Concurrency bounds the commands handled at once. Default 64.
	Concurrency int
	// HandlerTimeout bounds the handling of one consumed event. Default 10s.
	HandlerTimeout time.Duration
	// Scale says how several instances share inventory-orders and
	// inventory-kitchen (ADR 0015, docs/scaling.md): partitioned, each
	// order's events are handled in order by one instance at a time. The
	// zero value keeps one shared durable per upstream stream.
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

// Service is a running inventory service.
type Service struct {
	cfg     Config
	deps    Deps
	metrics *app.Metrics
	cmds    *app.Commands
	proj    *projection.Runtime
	svc     micro.Service
	eps     *app.Endpoints

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	mu        sync.Mutex
	consumers eventstore.Consumers
	stopOnce  sync.Once
}

// New checks the configuration and returns a service ready to Start.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.NC == nil || deps.JS == nil || deps.Redis == nil || deps.Catalog == nil {
		return nil, errors.New("inventory: NATS, JetStream, Redis and the catalogue are required")
	}
	if cfg.TimeScale < 0 {
		return nil, fmt.Errorf("inventory: time scale %v must be positive", cfg.TimeScale)
	}
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 1
	}
	if cfg.CheckInterval < 0 {
		return nil, fmt.Errorf("inventory: check interval %v must be positive", cfg.CheckInterval)
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = time.Minute
	}
	if cfg.Keyspace == "" {
		cfg.Keyspace = "pizza:"
	}
	if cfg.HandlerTimeout <= 0 {
		cfg.HandlerTimeout = 10 * time.Second
	}
	if err := cfg.Scale.Validate(); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
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
	deps.Log = deps.Log.With("service", "inventory")
	return &Service{cfg: cfg, deps: deps}, nil
}

// consumerSpecs are the durable consumers of the service. MaxAckPending
// stays small because the handler works one message at a time: every
// message handed to the client must be handled well within AckWait.
func consumerSpecs() []eventstore.ConsumerSpec {
	return []eventstore.ConsumerSpec{
		{Stream: events.Orders.Stream, Durable: inventoryapi.DurableOrders, FilterSubjects: []string{events.Orders.Wildcard()}, MaxAckPending: 64},
		{Stream: events.Kitchen.Stream, Durable: inventoryapi.DurableKitchen, FilterSubjects: []string{events.Kitchen.Wildcard()}, MaxAckPending: 64},
	}
}

// Start provisions the INVENTORY stream, opens the stock of every
// catalogue restaurant that has none, starts the projector, the durable
// consumers of ORDERS and KITCHEN, the periodic low-stock check and the
// command endpoints. It returns once commands are being served. When an
// upstream stream does not exist yet, its consumer is started in the
// background as soon as it does (Ready reports it meanwhile). ctx is the
// service's lifetime: when it ends, the background work stops (call Stop
// to also wait for it).
func (s *Service) Start(ctx context.Context) error {
	if err := eventstore.Provision(ctx, s.deps.JS, s.cfg.Streams, events.Inventory); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	s.metrics = app.NewMetrics(s.deps.Metrics)
	s.cmds = app.NewCommands(s.deps.JS, s.deps.Registry, s.deps.Catalog, s.deps.Clock, s.deps.Log, s.metrics)
	if err := s.cmds.Initialize(ctx); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-runCtx.Done():
		}
	}()

	s.proj = projection.New(s.deps.JS, s.deps.Redis, s.deps.Registry, app.Projector{}, projection.Options{
		Keyspace: s.cfg.Keyspace, Logger: s.deps.Log, LeaseOwner: s.cfg.Scale.InstanceID,
		OnDeadLetter: func(dl eventstore.DeadLetter) { s.metrics.DeadLetters.WithLabelValues(dl.Consumer).Inc() },
	})
	s.goRun(func() { _ = s.proj.Run(runCtx) })

	handlers := map[string]eventstore.Handler{
		inventoryapi.DurableOrders:  s.cmds.OnOrderEvent,
		inventoryapi.DurableKitchen: s.cmds.OnKitchenEvent,
	}
	for _, spec := range consumerSpecs() {
		if err := s.consume(runCtx, spec, handlers[spec.Durable]); err != nil {
			s.Stop()
			return fmt.Errorf("inventory: %w", err)
		}
	}

	interval := max(time.Duration(float64(s.cfg.CheckInterval)/s.cfg.TimeScale), time.Millisecond)
	s.goRun(func() { s.checkPeriodically(runCtx, interval) })

	svc, err := micro.AddService(s.deps.NC, micro.Config{
		Name:        inventoryapi.ServiceName,
		Version:     inventoryapi.ServiceVersion,
		Description: "Restaurant stock: reservations, restocks, adjustments, low-stock alerts; owner of the INVENTORY stream",
		QueueGroup:  inventoryapi.QueueGroup,
	})
	if err != nil {
		s.Stop()
		return fmt.Errorf("inventory: micro service: %w", err)
	}
	eps := app.NewEndpoints(context.WithoutCancel(ctx), s.deps.NC, s.cmds, s.deps.Log, s.cfg.Concurrency)
	if err := eps.Register(svc); err != nil {
		_ = svc.Stop()
		s.Stop()
		return fmt.Errorf("inventory: endpoints: %w", err)
	}
	s.mu.Lock()
	s.svc, s.eps = svc, eps
	s.mu.Unlock()
	s.deps.Log.Info("inventory service started", "keyspace", s.cfg.Keyspace, "restaurants", len(s.cmds.Restaurants()), "check_interval", interval)
	return nil
}

func (s *Service) goRun(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// consume starts one durable consumer (or, with Config.Scale partitioned,
// this instance's member of the partitioned consumer); each event is handled
// under a deadline.
func (s *Service) consume(ctx context.Context, spec eventstore.ConsumerSpec, h eventstore.Handler) error {
	timeout := s.cfg.HandlerTimeout
	handled := s.metrics.Handled.WithLabelValues(spec.Durable)
	handler := func(ctx context.Context, rec eventstore.Record) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := h(ctx, rec); err != nil {
			return err
		}
		handled.Inc()
		return nil
	}
	copts := eventstore.ConsumerOptions{
		Logger:       s.deps.Log,
		OnDeadLetter: func(dl eventstore.DeadLetter) { s.metrics.DeadLetters.WithLabelValues(dl.Consumer).Inc() },
	}
	sc := s.cfg.Scale
	sc.OnOwnership = func(durable string, owned []int) {
		s.metrics.Partitions.WithLabelValues(durable).Set(float64(len(owned)))
	}
	return s.consumers.StartWhenAvailable(ctx, s.deps.JS, s.deps.Registry, sc, spec, handler, copts)
}

func (s *Service) checkPeriodically(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, max(interval, 10*time.Second))
		if err := s.cmds.CheckLowStock(cctx); err != nil && ctx.Err() == nil {
			s.deps.Log.Warn("low-stock check incomplete", "err", err)
		}
		cancel()
	}
}

// Stop stops taking commands (in-flight ones finish), stops the consumers
// (the message in hand finishes), the periodic check and the projector.
func (s *Service) Stop() {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		svc, eps := s.svc, s.eps
		s.mu.Unlock()
		if svc != nil {
			_ = svc.Stop()
			eps.Wait()
		}
		if s.cancel != nil {
			s.cancel()
		}
		s.consumers.Stop()
		s.wg.Wait()
	})
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

// Projections exposes the service's projectors, for readiness and waits.
func (s *Service) Projections() []*projection.Runtime {
	if s.proj == nil {
		return nil
	}
	return []*projection.Runtime{s.proj}
}

// Ready reports whether the stock read model has caught up with the log
// and both durable consumers are running.
func (s *Service) Ready(context.Context) error {
	if s.proj == nil || !s.proj.CaughtUp() {
		return errors.New("stock read model is still catching up with the log")
	}
	if n, want := s.consumers.Len(), len(consumerSpecs()); n < want {
		return fmt.Errorf("%d of %d durable consumers running (waiting for upstream streams)", n, want)
	}
	return nil
}

// Partitions returns, per durable consumer, the partitions this instance
// owns (nil when the consumers are not partitioned).
func (s *Service) Partitions() map[string][]int { return s.consumers.Partitions() }

// Projectors returns the inventory's read-model projectors (for `pizza rebuild`).
func Projectors() []projection.Projector { return []projection.Projector{app.Projector{}} }
