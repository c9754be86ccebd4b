// Package gateway is the platform's HTTP edge (Echo v4): the REST API under
// /api, live order tracking over Server-Sent Events, health, metrics and the
// OpenAPI document. Commands go to the owning service over NATS
// request/reply; queries are answered from the Redis read models, never by
// replaying the log.
package gateway

import (
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/region"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/gateway/auth"
	"github.com/awesome-pizza/pizza/services/gateway/internal/hub"
	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

//go:embed openapi.yaml
var openAPIDocument []byte

// OpenAPI returns the OpenAPI 3 document of the gateway.
func OpenAPI() []byte { return openAPIDocument }

// Config holds the gateway's settings.
type Config struct {
	Keyspace string
	// ReadYourWritesTimeout bounds how long a command waits for the read
	// model to show its result before answering anyway.
	ReadYourWritesTimeout time.Duration
	// CommandTimeout bounds a command's round trip to its service.
	CommandTimeout time.Duration
	// Heartbeat is the interval of SSE keep-alive comments.
	Heartbeat time.Duration
	// TimeScale is kept for compatibility: driver ETAs now come with the
	// order read model, computed by the orders service. Default 1.
	TimeScale float64
	// MaxBodyBytes bounds request bodies.
	MaxBodyBytes int64
	// RatePerSecond and RateBurst limit requests per client address and
	// per user. Defaults 50/s, burst 100.
	RatePerSecond float64
	RateBurst     int
	// MaxStreamsPerUser caps concurrent SSE streams per user (or address).
	MaxStreamsPerUser int
	// StreamsInHandler keeps every SSE stream inside its HTTP handler, as
	// on HTTP/2, instead of taking HTTP/1.x connections over (ADR 0022).
	StreamsInHandler bool
	// TrustedProxies are the proxies whose X-Forwarded-For is believed;
	// from anyone else the header is ignored.
	TrustedProxies []netip.Prefix
	// CORSOrigins are the browser origins allowed to call the API from
	// other sites; empty: none.
	CORSOrigins []string
}

func (c Config) withDefaults() Config {
	if c.Keyspace == "" {
		c.Keyspace = "pizza:"
	}
	if c.ReadYourWritesTimeout <= 0 {
		c.ReadYourWritesTimeout = 2 * time.Second
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = 10 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 64 << 10
	}
	if c.TimeScale <= 0 {
		c.TimeScale = 1
	}
	if c.RatePerSecond <= 0 {
		c.RatePerSecond = 50
	}
	if c.RateBurst <= 0 {
		c.RateBurst = 100
	}
	if c.MaxStreamsPerUser <= 0 {
		c.MaxStreamsPerUser = 10
	}
	return c
}

// Deps are the gateway's connections.
type Deps struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	Redis   *redis.Client
	Catalog *catalog.Catalog
	Log     *slog.Logger
	Metrics *prometheus.Registry
	// Auth verifies bearer tokens. Nil disables authentication: every
	// caller acts as the operator. Only for development; announced loudly.
	Auth *auth.Keys
	// Ready lists extra readiness checks (for example, in `pizza dev`, the
	// projectors having caught up with the log).
	Ready map[string]service.Check
	// Router sends the commands of a restaurant that lives in another
	// region to that region's services (docs/scaling.md, Regions). Nil:
	// one region, every command is local.
	Router *region.Router
	// Global serves the chain-wide dashboard (GET /api/global/dashboard)
	// in the region that keeps it. Nil: the route answers 404. Whoever
	// makes it runs it (its Run).
	Global *region.GlobalViewService
}

// Gateway is the HTTP edge.
type Gateway struct {
	cfg  Config
	deps Deps
	hub  *hub.Hub
	e    *echo.Echo
	m    *metrics

	policies    map[string]policy
	limits      *limiter
	streamMu    sync.Mutex
	streamCount map[string]int

	// streams ends every SSE stream at shutdown.
	streams      context.Context
	closeStreams context.CancelFunc
	// detached counts the streams running outside their handler.
	detached sync.WaitGroup
}

// New builds the gateway and its routes.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if deps.NC == nil || deps.JS == nil || deps.Redis == nil || deps.Catalog == nil {
		return nil, errors.New("gateway: NATS, JetStream, Redis and the catalogue are required")
	}
	cfg = cfg.withDefaults()
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	if deps.Metrics == nil {
		deps.Metrics = service.NewMetrics()
	}
	deps.Log = deps.Log.With("service", "gateway")
	g := &Gateway{cfg: cfg, deps: deps, hub: hub.New(deps.Redis, cfg.Keyspace, deps.Log)}
	g.streams, g.closeStreams = context.WithCancel(context.Background())
	g.policies = g.accessPolicies()
	g.limits = newLimiter(cfg.RatePerSecond, cfg.RateBurst)
	g.streamCount = map[string]int{}
	if deps.Auth == nil {
		deps.Log.Warn("AUTHENTICATION IS DISABLED: every caller acts as the platform operator (development only)")
	}
	g.m = newMetrics(deps.Metrics, g.hub)
	if deps.Global != nil {
		deps.Metrics.MustRegister(globalSourceCollector{deps.Global})
	}
	g.e = g.routes()
	return g, nil
}

// Handler returns the HTTP handler.
func (g *Gateway) Handler() http.Handler { return g.e }

// Echo exposes the router (tests enumerate its routes).
func (g *Gateway) Echo() *echo.Echo { return g.e }

// Run holds the notification subscription until ctx ends. Serve the
// Handler alongside it.
func (g *Gateway) Run(ctx context.Context) error { return g.hub.Run(ctx) }

// CloseStreams ends every open SSE stream (clients reconnect elsewhere
// with Last-Event-ID). Call it when the HTTP server starts shutting down.
// It returns once every stream that had taken its connection over has
// ended, or after 5 s.
func (g *Gateway) CloseStreams() {
	g.closeStreams()
	ended := make(chan struct{})
	go func() {
		g.detached.Wait()
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		g.deps.Log.Warn("SSE streams still open 5 s after they were told to close")
	}
}

// Ready is closed once live notifications flow.
func (g *Gateway) Ready() <-chan struct{} { return g.hub.Ready() }

func (g *Gateway) readiness() map[string]service.Check {
	checks := map[string]service.Check{
		"nats": func(context.Context) error {
			if !g.deps.NC.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		},
		"redis": func(ctx context.Context) error { return g.deps.Redis.Ping(ctx).Err() },
		"streams": func(ctx context.Context) error {
			return eventstore.CheckStreams(ctx, g.deps.JS, events.Orders.Stream)
		},
		"notifications": func(context.Context) error {
			select {
			case <-g.hub.Ready():
				return nil
			default:
				return errors.New("change notifications not subscribed yet")
			}
		},
	}
	for name, c := range g.deps.Ready {
		checks[name] = c
	}
	return checks
}
