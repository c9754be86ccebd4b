// Package drivers is the drivers service: it owns the driver aggregates and
// the restaurants' dispatch queues (stream DRIVERS), stores drivers'
// positions as telemetry (stream TELEMETRY), assigns ready orders to the
// nearest Available driver, serves the driver commands over NATS micro and
// projects the "drivers" and "driver-positions" read models into Redis.
// The same Service runs as its own binary (cmd/drivers) and inside
// `pizza dev`.
package drivers

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
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/drivers/internal/app"
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
	// TimeScale speeds up demo time: estimated travel times are divided
	// by it. Default 1 (real time).
	TimeScale float64
	// Concurrency bounds the commands handled at once; default 256.
	Concurrency int
	// ManualDispatch turns automatic assignment off: ready orders wait in
	// their restaurant's queue until a manager assigns a driver.
	ManualDispatch bool
	// PositionsWait bounds how long Start waits for the drivers' last
	// positions before assigning without them; default 10s.
	PositionsWait time.Duration
	// Scale says how several instances share the reactions' consumers and
	// the projectors (eventstore.Scale).
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

// Service is a running drivers service.
type Service struct {
	cfg  Config
	deps Deps

	cancel    context.CancelFunc
	stopAfter func() bool
	disp      *app.Dispatcher
	follower  *app.Follower
	projs     []*projection.Runtime
	svc       micro.Service
	eps       *app.Endpoints
	wg        sync.WaitGroup
	stopOnce  sync.Once

	consumers eventstore.Consumers

	assignments *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
}

// New checks the configuration and returns a service ready to Start.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.NC == nil || deps.JS == nil || deps.Redis == nil || deps.Catalog == nil {
		return nil, errors.New("drivers: NATS, JetStream, Redis and the catalogue are required")
	}
	if err := cfg.Scale.Validate(); err != nil {
		return nil, fmt.Errorf("drivers: %w", err)
	}
	if cfg.TimeScale < 0 {
		return nil, fmt.Errorf("drivers: time scale %g must be positive", cfg.TimeScale)
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
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 1
	}
	if cfg.PositionsWait <= 0 {
		cfg.PositionsWait = 10 * time.Second
	}
	deps.Log = deps.Log.With("service", "drivers")
	s := &Service{cfg: cfg, deps: deps}
	s.assignments = counterVec(deps.Metrics, prometheus.CounterOpts{Name: "pizza_drivers_assignments_total", Help: "Orders assigned to drivers, by mode (auto, manual)."}, "mode")
	s.deadLetters = counterVec(deps.Metrics, prometheus.CounterOpts{Name: "pizza_drivers_dead_letters_total", Help: "Events the drivers service could not handle and parked, by consumer or projector."}, "source")
	return s, nil
}

// Start provisions the DRIVERS stream, rebuilds the dispatch state from
// the log, registers the catalogue's drivers, starts the projectors, the
// command endpoints and the consumers of KITCHEN and ORDERS, and assigns
// orders left waiting. It returns once commands are being served.
func (s *Service) Start(ctx context.Context) error {
	log := s.deps.Log
	if err := eventstore.Provision(ctx, s.deps.JS, s.cfg.Streams, events.Drivers); err != nil {
		return fmt.Errorf("drivers: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.stopAfter = cancel, context.AfterFunc(ctx, cancel)
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()

	// Stage 1: the dispatch state, from the log.
	s.disp = app.NewDispatcher(s.deps.JS, s.deps.Registry, s.deps.Catalog, s.deps.Clock, log, app.Options{
		TimeScale: s.cfg.TimeScale, ManualDispatch: s.cfg.ManualDispatch,
		OnAssigned: func(manual bool) {
			mode := "auto"
			if manual {
				mode = "manual"
			}
			s.assignments.WithLabelValues(mode).Inc()
		},
	})
	s.follower = app.NewFollower(s.deps.JS, s.deps.Registry, s.disp, log)
	s.follower.Start(runCtx)
	select {
	case <-s.follower.DriversCaughtUp():
	case <-ctx.Done():
		return fmt.Errorf("drivers: rebuilding the dispatch state: %w", ctx.Err())
	}
	select {
	case <-s.follower.PositionsCaughtUp():
	case <-time.After(s.cfg.PositionsWait):
		log.Warn("drivers' last positions not loaded in time; assigning as if drivers were at their restaurant until they report", "waited", s.cfg.PositionsWait)
	case <-ctx.Done():
		return fmt.Errorf("drivers: loading positions: %w", ctx.Err())
	}
	if err := s.disp.Seed(ctx); err != nil {
		return fmt.Errorf("drivers: %w", err)
	}

	// Stage 2: read models.
	for _, p := range []projection.Projector{app.DriversProjector{}, app.PositionsProjector{RestaurantOf: s.disp.RestaurantOf}} {
		rt := projection.New(s.deps.JS, s.deps.Redis, s.deps.Registry, p, projection.Options{
			Keyspace: s.cfg.Keyspace, Logger: log, LeaseOwner: s.cfg.Scale.InstanceID,
			OnDeadLetter: func(eventstore.DeadLetter) { s.deadLetters.WithLabelValues("projector-" + p.Name()).Inc() },
		})
		s.projs = append(s.projs, rt)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = rt.Run(runCtx)
		}()
	}

	// Stage 3: commands.
	var err error
	s.svc, err = micro.AddService(s.deps.NC, micro.Config{
		Name:        driversapi.ServiceName,
		Version:     driversapi.ServiceVersion,
		Description: "Registers drivers, tracks their status and position, dispatches ready orders; owner of the DRIVERS stream",
		QueueGroup:  driversapi.QueueGroup,
	})
	if err != nil {
		return fmt.Errorf("drivers: micro service: %w", err)
	}
	s.eps = app.NewEndpoints(runCtx, s.deps.NC, s.disp, log, s.cfg.Concurrency)
	if err := s.eps.Register(s.svc); err != nil {
		return fmt.Errorf("drivers: endpoints: %w", err)
	}

	// Stage 4: reactions to the kitchen and to the orders process.
	for _, c := range []struct {
		spec eventstore.ConsumerSpec
		h    eventstore.Handler
	}{
		{eventstore.ConsumerSpec{Stream: events.Kitchen.Stream, Durable: driversapi.DurableKitchen, FilterSubjects: []string{events.Kitchen.Wildcard()}}, s.disp.OnKitchenEvent},
		{eventstore.ConsumerSpec{Stream: events.Orders.Stream, Durable: driversapi.DurableOrders, FilterSubjects: []string{events.Orders.Wildcard()}}, s.disp.OnOrderEvent},
	} {
		if err := s.consume(runCtx, c.spec, c.h); err != nil {
			return err
		}
	}

	// Stage 5: orders a crash left waiting.
	if err := s.disp.DrainAll(ctx); err != nil {
		log.Error("assigning orders left waiting failed; they are assigned on the next trigger", "err", err)
	}
	ok = true
	log.Info("drivers service started", "keyspace", s.cfg.Keyspace, "time_scale", s.cfg.TimeScale, "manual_dispatch", s.cfg.ManualDispatch)
	return nil
}

// consume starts a durable consumer (shared or partitioned, as
// Config.Scale says). When its stream does not exist yet (the owning
// service has not provisioned it), it keeps trying in the background;
// Ready reports the consumer missing meanwhile.
func (s *Service) consume(ctx context.Context, spec eventstore.ConsumerSpec, h eventstore.Handler) error {
	opts := eventstore.ConsumerOptions{Logger: s.deps.Log, OnDeadLetter: func(dl eventstore.DeadLetter) { s.deadLetters.WithLabelValues(dl.Consumer).Inc() }}
	return s.consumers.StartWhenAvailable(ctx, s.deps.JS, s.deps.Registry, s.cfg.Scale, spec, h, opts)
}

// Stop stops taking commands (in-flight ones finish), stops the consumers
// (the message in hand is finished), then the projectors and the state.
func (s *Service) Stop() {
	s.stopOnce.Do(func() {
		if s.svc != nil {
			_ = s.svc.Stop()
		}
		if s.eps != nil {
			s.eps.Close()
		}
		s.consumers.Stop()
		if s.cancel != nil {
			s.stopAfter()
			s.cancel()
		}
		s.wg.Wait()
		if s.follower != nil {
			s.follower.Wait()
		}
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

// Projections exposes the projectors ("drivers", "driver-positions"), for
// readiness and read-your-writes waits.
func (s *Service) Projections() []*projection.Runtime { return s.projs }

// Ready reports whether the read models have caught up with the log and
// the consumers are running.
func (s *Service) Ready(context.Context) error {
	if len(s.projs) == 0 {
		return errors.New("drivers service is not started")
	}
	for i, name := range []string{driversapi.ReadModel, driversapi.PositionsModel} {
		if !s.projs[i].CaughtUp() {
			return fmt.Errorf("read model %s is still catching up with the log", name)
		}
	}
	if waiting := s.consumers.Waiting(); len(waiting) > 0 {
		return fmt.Errorf("consumers %v are waiting for their streams", waiting)
	}
	if n := s.consumers.Len(); n < 2 {
		return fmt.Errorf("%d of 2 consumers running", n)
	}
	return nil
}

// Partitions returns, per partitioned durable, the partitions this
// instance owns (nil unless partitioned).
func (s *Service) Partitions() map[string][]int { return s.consumers.Partitions() }

// counterVec registers a counter vector, or reuses the one registered
// under the same name (several services in one process share a registry).
func counterVec(reg prometheus.Registerer, opts prometheus.CounterOpts, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(opts, labels)
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return c
}

// Projectors returns the drivers' read-model projectors that can be rebuilt
// on their own (for `pizza rebuild`). The positions projector needs the
// running dispatcher to place drivers in their restaurants and is rebuilt
// by the service itself at start.
func Projectors() []projection.Projector { return []projection.Projector{app.DriversProjector{}} }
