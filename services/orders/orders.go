// Package orders is the orders service: it owns the order aggregate, serves
// the order commands over NATS micro, appends order events to the ORDERS
// stream and projects the order read model into Redis. The same Service
// runs as its own binary (cmd/orders) and inside `pizza dev`.
package orders

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
	"github.com/awesome-pizza/pizza/pkg/region"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/orders/internal/app"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Config holds the service's settings.
type Config struct {
	Keyspace    string // Redis key prefix of read models
	Streams     eventstore.StreamOptions
	CacheSize   int // aggregates kept in memory
	Concurrency int // commands handled at once
	// TimeScale speeds up platform time (stuck-order thresholds). Default 1.
	TimeScale float64
	// StuckCheckInterval is how often stuck orders are looked for.
	// Default 30s divided by TimeScale.
	StuckCheckInterval time.Duration
	// TrackingInterval bounds how often one order's view takes its
	// driver's newest position (ADR 0016); default 40ms, wall time (a phone sends at most 20 fixes a second).
	TrackingInterval time.Duration
	// Scale says how several instances share the saga's consumers and the
	// projectors (eventstore.Scale): partitioned, each upstream aggregate's
	// events are handled in order by one instance at a time.
	Scale eventstore.Scale
	// Region names this region of a supercluster (docs/scaling.md): the
	// service then keeps the durable source consumer through which the
	// GLOBAL account's chain-wide stream reads this region's ORDERS. Empty:
	// one region, nothing to export.
	Region string
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

// Service is a running orders service.
type Service struct {
	cfg  Config
	deps Deps
	proj *projection.Runtime
	// history are the per-order indexes of other contexts' events.
	history []*projection.Runtime
	svc     micro.Service
	eps     *service.Endpoints
	saga    *app.Saga
	wg      sync.WaitGroup
	// stopBackground ends the projector and the stuck detector.
	stopBackground context.CancelFunc
}

// New checks the configuration and returns a service ready to Start.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.NC == nil || deps.JS == nil || deps.Redis == nil || deps.Catalog == nil {
		return nil, errors.New("orders: NATS, JetStream, Redis and the catalogue are required")
	}
	if err := cfg.Scale.Validate(); err != nil {
		return nil, fmt.Errorf("orders: %w", err)
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
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 10_000
	}
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	if cfg.StuckCheckInterval <= 0 {
		cfg.StuckCheckInterval = time.Duration(float64(30*time.Second) / cfg.TimeScale)
	}
	if cfg.TrackingInterval <= 0 {
		cfg.TrackingInterval = 40 * time.Millisecond
	}
	deps.Log = deps.Log.With("service", "orders")
	return &Service{cfg: cfg, deps: deps}, nil
}

// Start provisions the ORDERS stream and the vault, starts the projector
// and the driver tracking (positions folded into the order views) and
// begins serving commands. It returns once commands are being served.
func (s *Service) Start(ctx context.Context) error {
	// The saga reads the other contexts' streams: make sure they exist.
	if err := eventstore.Provision(ctx, s.deps.JS, s.cfg.Streams, events.DomainContexts()...); err != nil {
		return fmt.Errorf("orders: %w", err)
	}
	if s.cfg.Region != "" {
		if err := region.ExportOrders(ctx, s.deps.JS, s.cfg.Region); err != nil {
			return fmt.Errorf("orders: %w", err)
		}
	}
	vault, err := app.OpenVault(ctx, s.deps.JS, s.cfg.Streams.Replicas, s.cfg.Streams.Storage)
	if err != nil {
		return fmt.Errorf("orders: %w", err)
	}
	deadLetters := registerCounter(s.deps.Metrics, prometheus.CounterOpts{
		Name: "pizza_orders_projection_dead_letters_total", Help: "Order events the read-model projector could not apply and parked.",
	})
	s.proj = projection.New(s.deps.JS, s.deps.Redis, s.deps.Registry, app.Projector{Keyspace: s.cfg.Keyspace}, projection.Options{
		Keyspace: s.cfg.Keyspace, Logger: s.deps.Log, LeaseOwner: s.cfg.Scale.InstanceID,
		OnDeadLetter: func(eventstore.DeadLetter) { deadLetters.Inc() },
	})
	projCtx, cancelProj := context.WithCancel(context.WithoutCancel(ctx))
	s.stopBackground = cancelProj
	s.history = nil
	for _, p := range app.HistoryIndexes(s.cfg.Keyspace) {
		s.history = append(s.history, projection.New(s.deps.JS, s.deps.Redis, s.deps.Registry, p, projection.Options{
			Keyspace: s.cfg.Keyspace, Logger: s.deps.Log, LeaseOwner: s.cfg.Scale.InstanceID, OnDeadLetter: func(eventstore.DeadLetter) { deadLetters.Inc() },
		}))
	}
	for _, rt := range append([]*projection.Runtime{s.proj}, s.history...) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = rt.Run(projCtx)
		}()
	}
	go func() { <-ctx.Done(); cancelProj() }()

	store := eventstore.New(s.deps.JS, s.deps.Registry, events.Orders)
	cmds := app.NewCommands(store, s.deps.Catalog, vault, s.deps.Clock, s.deps.Log, s.cfg.CacheSize)
	s.svc, err = micro.AddService(s.deps.NC, micro.Config{
		Name:        ordersapi.ServiceName,
		Version:     ordersapi.ServiceVersion,
		Description: "Places, cancels and advances orders; owner of the ORDERS stream",
		QueueGroup:  ordersapi.QueueGroup,
	})
	if err != nil {
		cancelProj()
		return fmt.Errorf("orders: micro service: %w", err)
	}
	// Commands in flight at Stop finish: their context outlives the service's.
	s.eps = service.NewEndpoints(context.WithoutCancel(ctx), s.deps.NC, s.deps.Log, s.cfg.Concurrency, 8*time.Second, app.EdgeProblem)
	if err := app.Register(s.svc, s.eps, cmds, app.NewAudit(s.deps.JS, s.deps.Registry, s.deps.Redis, s.cfg.Keyspace)); err != nil {
		_ = s.svc.Stop()
		cancelProj()
		return fmt.Errorf("orders: endpoints: %w", err)
	}
	s.saga = app.NewSaga(cmds, s.deps.JS, s.deps.Registry, s.deps.Log)
	sagaDeadLetters := registerCounter(s.deps.Metrics, prometheus.CounterOpts{
		Name: "pizza_orders_saga_dead_letters_total", Help: "Events of other contexts the order saga could not apply after its last retry and parked.",
	})
	if err := s.saga.Start(ctx, s.cfg.Scale, func(eventstore.DeadLetter) { sagaDeadLetters.Inc() }); err != nil {
		_ = s.svc.Stop()
		cancelProj()
		return fmt.Errorf("orders: %w", err)
	}
	// The drivers' positions, folded into the views of orders with a driver.
	tracker := app.NewTracker(s.deps.Redis, s.deps.JS, s.deps.Registry, s.cfg.Keyspace, s.deps.Catalog, s.cfg.TimeScale, s.cfg.TrackingInterval, s.deps.Log)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tracker.Run(projCtx)
	}()
	detector := app.NewStuckDetector(cmds, s.deps.Redis, s.cfg.Keyspace, s.cfg.TimeScale, s.deps.Clock, s.deps.Log)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		detector.Run(projCtx, s.cfg.StuckCheckInterval)
	}()
	s.deps.Log.Info("orders service started", "keyspace", s.cfg.Keyspace)
	return nil
}

// Stop stops taking commands (in-flight ones finish), then stops the projector.
func (s *Service) Stop() {
	if s.svc != nil {
		_ = s.svc.Stop()
		s.eps.Wait()
	}
	if s.saga != nil {
		s.saga.Stop()
	}
	if s.stopBackground != nil {
		s.stopBackground()
	}
	s.wg.Wait()
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

// Projection exposes the order projector, for readiness and waits.
func (s *Service) Projection() *projection.Runtime { return s.proj }

// Partitions returns, per saga durable, the partitions this instance owns
// (nil unless partitioned).
func (s *Service) Partitions() map[string][]int {
	if s.saga == nil {
		return nil
	}
	return s.saga.Partitions()
}

// Ready reports whether the read model has caught up with the log.
func (s *Service) Ready(context.Context) error {
	if s.proj == nil || !s.proj.CaughtUp() {
		return errors.New("order read model is still catching up with the log")
	}
	for _, h := range s.history {
		if !h.CaughtUp() {
			return errors.New("order history index is still catching up with the log")
		}
	}
	return nil
}

// registerCounter registers a counter, or returns the one already
// registered under the name (a restarted service in the same process).
func registerCounter(reg prometheus.Registerer, opts prometheus.CounterOpts) prometheus.Counter {
	c := prometheus.NewCounter(opts)
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
				return existing
			}
		}
	}
	return c
}

// Projectors returns the read-model projectors of the orders service for a
// keyspace (for `pizza rebuild`).
func Projectors(keyspace string) []projection.Projector {
	return append([]projection.Projector{app.Projector{Keyspace: keyspace}}, app.HistoryIndexes(keyspace)...)
}
