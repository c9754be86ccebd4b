// Package mqttbridge is the platform's MQTT front door: it embeds a Mochi
// MQTT broker (MQTT 3.1.1 and 5, over TCP and WebSocket), authenticates
// drivers' phones and kitchen devices with secrets the platform issues,
// turns what they publish into commands and telemetry in the event log —
// acknowledging a QoS 1 message only once the log has it — and tells
// drivers' phones about their assignments and their orders' ETAs. It also
// projects the "kitchen-telemetry" read model into Redis. The same Service
// runs as its own binary (cmd/mqttbridge) and inside `pizza dev`.
package mqttbridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/mqttbridge/internal/app"
	"github.com/awesome-pizza/pizza/services/mqttbridge/internal/guard"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Config holds the service's settings. Zero values take the defaults.
type Config struct {
	Keyspace string // Redis key prefix of read models; default "pizza:"
	Streams  eventstore.StreamOptions
	// TimeScale speeds up demo time; durations of the platform's clock
	// (OutboundMaxAge) are divided by it. Default 1.
	TimeScale float64

	// Addr is the MQTT TCP listener; default ":1883". WSAddr is the MQTT
	// over WebSocket listener; empty: none.
	Addr   string
	WSAddr string
	// TLS serves MQTT (TCP and WebSocket) over TLS when set.
	TLS service.TLSFiles

	// Limits.
	MaxClients      int     // connected clients; default 10000
	MaxPacketBytes  int     // an MQTT packet; larger ones close the connection; default 65536
	MaxPayloadBytes int     // a device message; larger ones are refused; default 4096
	ReceiveMaximum  int     // QoS 1/2 messages a client may have unacknowledged; default 32
	MaxInflight     int     // QoS 1/2 messages queued for a client; default 1024
	RatePerSecond   float64 // publishes per connection per second (token bucket); default 20; negative: no limit
	RateBurst       int     // bucket size; default 2×RatePerSecond
	// SessionExpiry caps how long a persistent session outlives its
	// connection; default 1h.
	SessionExpiry time.Duration
	// CommandTimeout bounds the wait for the log on each publish (the
	// device's PUBACK waits as long); default 5s.
	CommandTimeout time.Duration
	// OutboundMaxAge: DRIVERS events older than this are not sent to
	// phones; default 10 min divided by TimeScale.
	OutboundMaxAge time.Duration
	// Concurrency bounds the credential commands handled at once.
	Concurrency int
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

// Service is a running bridge.
type Service struct {
	cfg  Config
	deps Deps

	bridge  *app.Bridge
	issuer  *app.Issuer
	creds   *app.Credentials
	metrics *app.Metrics
	server  *mqtt.Server
	tcp     net.Listener
	ws      net.Listener
	proj    *projection.Runtime
	svc     micro.Service
	eps     *service.Endpoints

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once

	// followed is closed once the outbound follower has handled the
	// DRIVERS events of its window that existed at the start.
	followed chan struct{}
}

// New checks the configuration and returns a service ready to Start.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.NC == nil || deps.JS == nil || deps.Redis == nil || deps.Catalog == nil {
		return nil, errors.New("mqttbridge: NATS, JetStream, Redis and the catalogue are required")
	}
	if cfg.TimeScale < 0 {
		return nil, fmt.Errorf("mqttbridge: time scale %g must be positive", cfg.TimeScale)
	}
	if deps.Registry == nil {
		deps.Registry = mqttapi.NewRegistry()
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
	if cfg.Addr == "" {
		cfg.Addr = ":1883"
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.MaxClients, 10_000)
	def(&cfg.MaxPacketBytes, 64*1024)
	def(&cfg.MaxPayloadBytes, 4096)
	def(&cfg.ReceiveMaximum, 32)
	def(&cfg.MaxInflight, 1024)
	if cfg.ReceiveMaximum > 65535 || cfg.MaxInflight > 65535 {
		return nil, errors.New("mqttbridge: ReceiveMaximum and MaxInflight are at most 65535")
	}
	if cfg.MaxPayloadBytes > cfg.MaxPacketBytes {
		cfg.MaxPayloadBytes = cfg.MaxPacketBytes
	}
	if cfg.RatePerSecond == 0 {
		cfg.RatePerSecond = 20
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = max(1, int(2*cfg.RatePerSecond))
	}
	if cfg.SessionExpiry <= 0 {
		cfg.SessionExpiry = time.Hour
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 5 * time.Second
	}
	if cfg.OutboundMaxAge <= 0 {
		cfg.OutboundMaxAge = time.Duration(float64(10*time.Minute) / cfg.TimeScale)
	}
	deps.Log = deps.Log.With("service", "mqttbridge")
	return &Service{cfg: cfg, deps: deps, metrics: app.NewMetrics(deps.Metrics)}, nil
}

// Start provisions TELEMETRY (and the dead-letter stream) and the
// credential bucket, starts the broker's listeners, the credential watch,
// the kitchen-telemetry projector, the credentials command and the
// consumer of DRIVERS. It returns once the broker listens.
func (s *Service) Start(ctx context.Context) error {
	log := s.deps.Log
	if err := eventstore.Provision(ctx, s.deps.JS, s.cfg.Streams); err != nil {
		return fmt.Errorf("mqttbridge: %w", err)
	}
	creds, err := app.OpenCredentials(ctx, s.deps.JS, s.cfg.Streams.Replicas, s.cfg.Streams.Storage, s.deps.Clock)
	if err != nil {
		return fmt.Errorf("mqttbridge: %w", err)
	}
	s.creds = creds
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()

	// Stage 1: the broker.
	driversStore := eventstore.New(s.deps.JS, s.deps.Registry, events.Drivers)
	s.bridge = app.NewBridge(app.Options{
		Keyspace: s.cfg.Keyspace, MaxPayloadBytes: s.cfg.MaxPayloadBytes, RatePerSecond: s.cfg.RatePerSecond, RateBurst: s.cfg.RateBurst,
		CommandTimeout: s.cfg.CommandTimeout, OutboundMaxAge: s.cfg.OutboundMaxAge,
	}, s.deps.NC, s.deps.JS, s.deps.Redis, creds, driversStore, log, s.deps.Clock, s.metrics)
	s.issuer = app.NewIssuer(s.bridge, s.deps.Catalog, driversStore)
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClients = int64(s.cfg.MaxClients)
	caps.MaximumPacketSize = uint32(s.cfg.MaxPacketBytes)
	caps.ReceiveMaximum = uint16(s.cfg.ReceiveMaximum)
	caps.MaximumInflight = uint16(s.cfg.MaxInflight)
	caps.MaximumSessionExpiryInterval = uint32(s.cfg.SessionExpiry / time.Second)
	caps.TopicAliasMaximum = 16
	s.server = mqtt.New(&mqtt.Options{
		InlineClient:           true,
		Capabilities:           caps,
		Logger:                 slog.New(minLevel{h: log.Handler(), min: slog.LevelError}).With("component", "mochi"),
		SysTopicResendInterval: 30,
	})
	s.bridge.SetServer(s.server)
	if err := s.server.AddHook(app.NewHook(s.bridge, uint32(s.cfg.MaxPacketBytes)), nil); err != nil {
		return fmt.Errorf("mqttbridge: hook: %w", err)
	}
	gopts := guard.Options{
		MaxPacketSize: uint32(s.cfg.MaxPacketBytes),
		Log:           log,
		OnRefused:     func(reason string) { s.metrics.PacketsRefused.WithLabelValues(reason).Inc() },
		OnPanic:       func(c net.Conn, _ any) { s.bridge.Forget(c) },
	}
	var tlsCfg *tls.Config
	if on, err := s.cfg.TLS.Enabled(); err != nil {
		return fmt.Errorf("mqttbridge: %w", err)
	} else if on {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLS.Cert, s.cfg.TLS.Key)
		if err != nil {
			return fmt.Errorf("mqttbridge: TLS: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if s.tcp, err = service.Listen(s.cfg.Addr, "mqtt-addr"); err != nil {
		return err
	}
	if tlsCfg != nil {
		// The guard below reads the decrypted stream.
		s.tcp = tls.NewListener(s.tcp, tlsCfg)
	}
	if err := s.server.AddListener(guard.Wrap(listeners.NewNet("tcp", s.tcp), gopts)); err != nil {
		return fmt.Errorf("mqttbridge: %w", err)
	}
	if s.cfg.WSAddr != "" {
		if s.ws, err = service.Listen(s.cfg.WSAddr, "mqtt-ws-addr"); err != nil {
			return err
		}
		if tlsCfg != nil {
			s.ws = tls.NewListener(s.ws, tlsCfg)
		}
		if err := s.server.AddListener(guard.Wrap(app.NewWebSocketListener("ws", s.ws), gopts)); err != nil {
			return fmt.Errorf("mqttbridge: %w", err)
		}
	}
	if err := s.server.Serve(); err != nil {
		return fmt.Errorf("mqttbridge: broker: %w", err)
	}
	if s.deps.Metrics != nil {
		_ = s.deps.Metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pizza_mqtt_clients_connected", Help: "MQTT clients connected to this bridge."},
			func() float64 { return float64(atomic.LoadInt64(&s.server.Info.ClientsConnected)) }))
	}

	// Stage 2: revocations from any instance end the sessions here.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for runCtx.Err() == nil {
			if err := creds.Watch(runCtx, s.bridge.Revoked); err != nil {
				log.Warn("credential watch interrupted; restarting", "err", err)
			}
			select {
			case <-runCtx.Done():
			case <-time.After(time.Second):
			}
		}
	}()

	// Stage 3: the kitchen-telemetry read model.
	s.proj = projection.New(s.deps.JS, s.deps.Redis, mqttapi.NewRegistry(), app.KitchenTelemetryProjector{}, projection.Options{
		Keyspace: s.cfg.Keyspace, Logger: log,
		OnDeadLetter: func(eventstore.DeadLetter) {
			s.metrics.DeadLetters.WithLabelValues("projector-" + mqttapi.ReadModel).Inc()
		},
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.proj.Run(runCtx)
	}()

	// Stage 4: the credentials command.
	s.svc, err = micro.AddService(s.deps.NC, micro.Config{
		Name:        mqttapi.ServiceName,
		Version:     mqttapi.ServiceVersion,
		Description: "MQTT front door of devices: issues device credentials; writes device telemetry to TELEMETRY",
		QueueGroup:  mqttapi.QueueGroup,
	})
	if err != nil {
		return fmt.Errorf("mqttbridge: micro service: %w", err)
	}
	s.eps = service.NewEndpoints(context.WithoutCancel(ctx), s.deps.NC, log, s.cfg.Concurrency, 10*time.Second, app.EdgeProblem)
	if err := s.issuer.Register(s.svc, s.eps); err != nil {
		return fmt.Errorf("mqttbridge: endpoints: %w", err)
	}

	// Stage 5: assignments and ETAs to phones.
	s.followed = make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.follow(runCtx)
	}()

	ok = true
	log.Info("mqtt bridge started", "addr", s.tcp.Addr().String(), "ws_addr", s.cfg.WSAddr, "max_clients", s.cfg.MaxClients,
		"max_packet_bytes", s.cfg.MaxPacketBytes, "rate_per_second", s.cfg.RatePerSecond)
	return nil
}

// follow sends DRIVERS' assignments, ETAs and clears to the devices
// connected to this bridge (app.Bridge.OnDriverEvent). Every bridge
// instance reads DRIVERS for itself (an ordered consumer, nothing shared):
// its broker holds the retained assignments and the order holders its
// own devices need, wherever a phone connects. A new instance starts at
// twice OutboundMaxAge back, the window the handler sends at all, so the
// retained assignments of current orders are rebuilt. While DRIVERS does
// not exist yet it keeps trying (Ready reports it).
func (s *Service) follow(ctx context.Context) {
	start := time.Now().Add(-2 * s.cfg.OutboundMaxAge)
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.Drivers.Wildcard()},
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start}
	log := s.deps.Log.With("component", "outbound")
	eventstore.Follow(ctx, s.deps.JS, events.Drivers.Stream, cfg, log, func() { close(s.followed) }, func(m jetstream.Msg, md *jetstream.MsgMetadata) {
		rec, err := eventstore.DecodeMessage(s.deps.Registry, m.Subject(), m.Headers(), m.Data(), md.Stream, md.Sequence.Stream, md.Timestamp)
		if err != nil {
			log.Error("driver event cannot be decoded; not sent to phones", "seq", md.Sequence.Stream, "subject", m.Subject(), "err", err)
			s.metrics.DeadLetters.WithLabelValues(mqttapi.OutboundFollower).Inc()
			return
		}
		if err := s.bridge.OnDriverEvent(ctx, rec); err != nil && ctx.Err() == nil {
			log.Warn("driver event not sent to phones", "seq", rec.Seq, "type", rec.Envelope.Type, "err", err)
		}
	})
}

// Stop shuts down in reverse order: no new credential commands, the
// broker stops accepting and closes its clients (publishes in flight
// finish), then the consumer, the watch and the projector stop.
func (s *Service) Stop() {
	s.stopOnce.Do(func() {
		if s.bridge != nil {
			s.bridge.SetStopping()
		}
		if s.svc != nil {
			_ = s.svc.Stop()
			s.eps.Wait()
		}
		if s.server != nil {
			ids := []string{"tcp"}
			if s.ws != nil {
				ids = append(ids, "ws")
			}
			if err := CloseBroker(s.server, 5*time.Second, ids...); err != nil {
				s.deps.Log.Error("the MQTT broker did not close; shutting down without it", "err", err)
			}
		}
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		_ = s.deps.NC.FlushTimeout(2 * time.Second) // replies and acks already handed to NATS
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

// Addr is the address of the MQTT TCP listener (nil before Start).
func (s *Service) Addr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// WSAddr is the address of the MQTT WebSocket listener (nil when none).
func (s *Service) WSAddr() net.Addr {
	if s.ws == nil {
		return nil
	}
	return s.ws.Addr()
}

// Projections exposes the kitchen-telemetry projector.
func (s *Service) Projections() []*projection.Runtime {
	if s.proj == nil {
		return nil
	}
	return []*projection.Runtime{s.proj}
}

// Ready reports whether the read model has caught up and the consumer runs.
func (s *Service) Ready(context.Context) error {
	if s.proj == nil {
		return errors.New("mqtt bridge is not started")
	}
	if !s.proj.CaughtUp() {
		return fmt.Errorf("read model %s is still catching up with the log", mqttapi.ReadModel)
	}
	select {
	case <-s.followed:
	default:
		return errors.New("the outbound follower of DRIVERS has not caught up yet")
	}
	return nil
}

// SeedDemoCredentials issues new secrets for every kitchen and driver of
// the catalogue, revoking earlier ones, and returns device id → secret for
// `pizza dev` to print. Call it after Start.
func (s *Service) SeedDemoCredentials(ctx context.Context) (map[string]string, error) {
	if s.issuer == nil {
		return nil, errors.New("mqttbridge: SeedDemoCredentials before Start")
	}
	return s.issuer.SeedDemo(ctx)
}

// minLevel drops records below min: mochi's own logs, whose warnings
// (every refused connection, every closed socket) the bridge already
// reports in its own words.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(a), min: m.min}
}
func (m minLevel) WithGroup(g string) slog.Handler { return minLevel{h: m.h.WithGroup(g), min: m.min} }
