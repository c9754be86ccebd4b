package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/region"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/drivers"
	"github.com/awesome-pizza/pizza/services/gateway"
	"github.com/awesome-pizza/pizza/services/gateway/auth"
	"github.com/awesome-pizza/pizza/services/inventory"
	"github.com/awesome-pizza/pizza/services/kitchen"
	"github.com/awesome-pizza/pizza/services/mqttbridge"
	"github.com/awesome-pizza/pizza/services/orders"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// PlatformConfig is the configuration of the in-process platform.
type PlatformConfig struct {
	HTTPAddr string
	NATSAddr string
	MQTTAddr string // empty: no MQTT bridge
	// MQTTWSAddr serves MQTT over WebSocket; empty: none.
	MQTTWSAddr string
	DataDir    string
	RedisURL   string
	Keyspace   string
	TimeScale  float64
	Catalog    string
	// QCFailureRate is the share of pizzas failing the kitchen's quality
	// check; Seed makes those failures reproducible.
	QCFailureRate float64
	Seed          int64
	// JWTSecret signs and verifies bearer tokens; empty: the development
	// key kept in the data dir. NoAuth turns authentication off (tests of
	// other concerns, local experiments) and is announced loudly.
	JWTSecret string
	NoAuth    bool
	// RateLimit is requests per second per client address and per user.
	RateLimit float64
	// CORSOrigins may call the API from a browser on another site.
	CORSOrigins []string
	// TLS serves the gateway over HTTPS when set.
	TLS service.TLSFiles

	// Regional runs (pizza dev --regions): the platform joins a region of
	// a supercluster instead of embedding its own server.
	//
	// NATS is the connection to the region's account; nil embeds a server.
	NATS *nats.Conn
	// Placement pins the streams the services provision to the region's
	// servers.
	Placement *jetstream.Placement
	// Owned lists the restaurants the services own (their home region is
	// this one); empty: every restaurant of the catalogue. The gateway
	// still serves the whole catalogue and routes commands with Router.
	Owned []string
	// Router sends a restaurant's commands to its home region; nil: one region.
	Router *region.Router
	// GlobalView, if set, makes the chain-wide view over this platform's
	// Redis; the gateway serves it (GET /api/global/dashboard).
	GlobalView func(*redis.Client) *region.GlobalViewService
}

// Platform is every service of Awesome Pizza in one process, wired to an
// embedded nats-server whose JetStream store lives under the data dir.
type Platform struct {
	cfg PlatformConfig
	log *slog.Logger
	cat *catalog.Catalog
	// owned is the catalogue of the restaurants the services own.
	owned *catalog.Catalog
	ns    *server.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	rds   *redisBackend
	gw    *gateway.Gateway
	keys  *auth.Keys
	mqtt  *mqttbridge.Service

	services []*component
	metrics  *prometheus.Registry
	runCtx   context.Context
	stopEdge context.CancelFunc
	http     net.Listener

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errc   chan error
}

// Start brings the platform up in stages: listeners (so a busy port fails
// fast, naming its flag), NATS, Redis, streams, services, gateway.
func (p *Platform) Start(ctx context.Context, cfg PlatformConfig, log *slog.Logger) (err error) {
	p.cfg, p.log, p.errc = cfg, log, make(chan error, 4)
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()
	if cfg.TimeScale <= 0 {
		return errors.New("--time-scale must be positive")
	}
	if p.cat, err = catalog.Load(cfg.Catalog); err != nil {
		return err
	}
	if p.owned, err = ownedCatalog(p.cat, cfg.Owned); err != nil {
		return err
	}
	if _, err := cfg.TLS.Enabled(); err != nil {
		return fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	if p.http, err = service.Listen(cfg.HTTPAddr, "http-addr"); err != nil {
		return err
	}
	if cfg.MQTTAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.MQTTAddr); err != nil {
			return fmt.Errorf("--mqtt-addr %q: %w", cfg.MQTTAddr, err)
		}
		// Check the port up front so the error names the flag.
		if l, err := service.Listen(cfg.MQTTAddr, "mqtt-addr"); err != nil {
			return err
		} else {
			_ = l.Close()
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}

	// Stage 1: the event log.
	if cfg.NATS != nil {
		p.nc = cfg.NATS
	} else {
		if err := p.startNATS(); err != nil {
			return err
		}
		// Services talk to the embedded server in process, without TCP.
		p.nc, err = service.ConnectNATS("", "pizza-dev", log, nats.InProcessServer(p.ns))
		if err != nil {
			return err
		}
	}
	if p.js, err = jetstream.New(p.nc); err != nil {
		return err
	}
	if err := eventstore.Provision(ctx, p.js, p.streamOptions(), events.DomainContexts()...); err != nil {
		return err
	}

	// Stage 2: the read-model store.
	if p.rds, err = openRedis(ctx, cfg.RedisURL, cfg.DataDir, log); err != nil {
		return err
	}

	// Stage 3: the services, each owning its context, then the gateway.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel, p.runCtx = cancel, runCtx
	p.metrics = service.NewMetrics()
	p.services = p.serviceSet()
	ready := map[string]service.Check{}
	for _, sv := range p.services {
		if err := sv.start(runCtx); err != nil {
			return fmt.Errorf("%s: %w", sv.name, err)
		}
		ready[sv.name] = sv.ready()
	}
	metrics := p.metrics
	if !cfg.NoAuth {
		if p.keys, err = signingKeys(cfg); err != nil {
			return err
		}
	}
	var global *region.GlobalViewService
	if cfg.GlobalView != nil {
		global = cfg.GlobalView(p.rds.Client)
	}
	p.gw, err = gateway.New(gateway.Config{Keyspace: cfg.Keyspace, TimeScale: cfg.TimeScale, CORSOrigins: cfg.CORSOrigins, RatePerSecond: cfg.RateLimit, RateBurst: int(max(cfg.RateLimit*2, 100))}, gateway.Deps{
		Auth: p.keys,
		NC:   p.nc, JS: p.js, Redis: p.rds.Client, Catalog: p.cat, Log: log, Metrics: metrics,
		Ready: ready, Router: cfg.Router, Global: global,
	})
	if err != nil {
		return err
	}
	// The HTTP edge has its own lifetime: at shutdown it stops first, and
	// lets requests in flight finish while the services still run.
	edgeCtx, stopEdge := context.WithCancel(runCtx)
	p.stopEdge = stopEdge
	p.goRun(func() error { return p.gw.Run(edgeCtx) })
	p.goRun(func() error {
		if on, _ := cfg.TLS.Enabled(); on {
			return service.ServeTLS(edgeCtx, p.http, p.gw.Handler(), cfg.TLS, 10*time.Second, log, p.gw.CloseStreams)
		}
		return service.Serve(edgeCtx, p.http, p.gw.Handler(), 10*time.Second, log, p.gw.CloseStreams)
	})
	select {
	case <-p.gw.Ready():
	case <-time.After(10 * time.Second):
		return errors.New("gateway notifications did not start within 10s")
	}
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	for _, sv := range p.services {
		for {
			if err := sv.ready()(wctx); err == nil {
				break
			} else if wctx.Err() != nil {
				return fmt.Errorf("%s did not catch up with the log: %w", sv.name, err)
			}
			t := time.NewTimer(20 * time.Millisecond)
			<-t.C
		}
	}
	return nil
}

func (p *Platform) goRun(fn func() error) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := fn(); err != nil {
			p.errc <- err
		}
	}()
}

// component is one service of the platform, restartable in place (tests
// kill and restart services mid-load).
type component struct {
	name     string
	build    func() (svc, error)
	disabled bool
	mu       sync.Mutex
	cur      svc
}

func (c *component) current() svc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// svc is what every service offers the platform.
type svc interface {
	Start(ctx context.Context) error
	Stop()
	Ready(ctx context.Context) error
}

// errNotConfigured marks a service the configuration leaves out.
var errNotConfigured = errors.New("not configured")

func (c *component) start(ctx context.Context) error {
	s, err := c.build()
	if errors.Is(err, errNotConfigured) {
		c.disabled = true
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.cur = s
	c.mu.Unlock()
	return nil
}

func (c *component) stop() {
	c.mu.Lock()
	s := c.cur
	c.cur = nil
	c.mu.Unlock()
	if s != nil {
		s.Stop()
	}
}

func (c *component) ready() service.Check {
	return func(ctx context.Context) error {
		s := c.current()
		if s == nil {
			if c.disabled {
				return nil
			}
			return errors.New("not running")
		}
		return s.Ready(ctx)
	}
}

// Restart stops a service and starts a fresh instance of it on the same
// log and Redis, as after a crash.
func (p *Platform) Restart(name string) error {
	c, err := p.component(name)
	if err != nil {
		return err
	}
	c.stop()
	return c.start(p.runCtx)
}

// StopService stops one service (tests take a service away for a while).
func (p *Platform) StopService(name string) error {
	c, err := p.component(name)
	if err == nil {
		c.stop()
	}
	return err
}

// StartService starts a stopped service again.
func (p *Platform) StartService(name string) error {
	c, err := p.component(name)
	if err != nil {
		return err
	}
	if c.current() != nil {
		return fmt.Errorf("%s is running", name)
	}
	return c.start(p.runCtx)
}

func (p *Platform) component(name string) (*component, error) {
	for _, c := range p.services {
		if c.name == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("no service %q", name)
}

// serviceSet builds the platform's services.
func (p *Platform) serviceSet() []*component {
	cfg, log := p.cfg, p.log
	streams := p.streamOptions()
	qc := cfg.QCFailureRate
	if qc == 0 {
		qc = kitchen.NoQCFailures
	}
	return []*component{
		{name: "orders", build: func() (svc, error) {
			return orders.New(orders.Config{Keyspace: cfg.Keyspace, Streams: streams, TimeScale: cfg.TimeScale},
				orders.Deps{NC: p.nc, JS: p.js, Redis: p.rds.Client, Catalog: p.owned, Log: log, Metrics: p.metrics})
		}},
		{name: "inventory", build: func() (svc, error) {
			return inventory.New(inventory.Config{Keyspace: cfg.Keyspace, Streams: streams, TimeScale: cfg.TimeScale},
				inventory.Deps{NC: p.nc, JS: p.js, Redis: p.rds.Client, Catalog: p.owned, Log: log, Metrics: p.metrics})
		}},
		{name: "drivers", build: func() (svc, error) {
			return drivers.New(drivers.Config{Keyspace: cfg.Keyspace, Streams: streams, TimeScale: cfg.TimeScale},
				drivers.Deps{NC: p.nc, JS: p.js, Redis: p.rds.Client, Catalog: p.owned, Log: log, Metrics: p.metrics})
		}},
		{name: "mqttbridge", build: func() (svc, error) {
			if cfg.MQTTAddr == "" {
				return nil, errNotConfigured
			}
			b, err := mqttbridge.New(mqttbridge.Config{Keyspace: cfg.Keyspace, Streams: streams, TimeScale: cfg.TimeScale, Addr: cfg.MQTTAddr, WSAddr: cfg.MQTTWSAddr, TLS: cfg.TLS},
				mqttbridge.Deps{NC: p.nc, JS: p.js, Redis: p.rds.Client, Catalog: p.owned, Log: log, Metrics: p.metrics})
			p.mqtt = b
			return b, err
		}},
		{name: "kitchen", build: func() (svc, error) {
			return kitchen.New(kitchen.Config{Keyspace: cfg.Keyspace, Streams: streams, TimeScale: cfg.TimeScale, QCFailureRate: qc, Seed: cfg.Seed},
				kitchen.Deps{NC: p.nc, JS: p.js, Redis: p.rds.Client, Catalog: p.owned, Log: log, Metrics: p.metrics})
		}},
	}
}

// Err reports a component that stopped on its own.
func (p *Platform) Err() <-chan error { return p.errc }

func (p *Platform) startNATS() error {
	host, portStr, err := net.SplitHostPort(p.cfg.NATSAddr)
	if err != nil {
		return fmt.Errorf("--nats-addr %q: %w", p.cfg.NATSAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("--nats-addr %q: bad port", p.cfg.NATSAddr)
	}
	if port != 0 {
		// nats-server would only log a failed bind; check first and say
		// which flag to change.
		l, err := service.Listen(p.cfg.NATSAddr, "nats-addr")
		if err != nil {
			return err
		}
		_ = l.Close()
	} else {
		port = -1
	}
	if host == "" {
		host = "0.0.0.0"
	}
	opts := &server.Options{
		ServerName: "pizza-dev",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(p.cfg.DataDir, "jetstream"),
		NoSigs:     true,
	}
	p.ns, err = server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	p.ns.SetLoggerV2(natsLogger{p.log.With("component", "nats-server")}, false, false, false)
	go p.ns.Start()
	if !p.ns.ReadyForConnections(30 * time.Second) {
		return errors.New("embedded nats-server did not become ready in 30s")
	}
	return nil
}

// URLs of the running platform.
func (p *Platform) HTTPURL() string {
	scheme := "http://"
	if on, _ := p.cfg.TLS.Enabled(); on {
		scheme = "https://"
	}
	return scheme + displayAddr(p.http.Addr().(*net.TCPAddr))
}

func (p *Platform) NATSURL() string {
	if p.ns == nil {
		return p.nc.ConnectedUrlRedacted()
	}
	return p.ns.ClientURL()
}

// streamOptions are the options of every stream the platform provisions.
func (p *Platform) streamOptions() eventstore.StreamOptions {
	return eventstore.StreamOptions{Storage: jetstream.FileStorage, Placement: p.cfg.Placement}
}

// ownedCatalog narrows the catalogue to the restaurants listed (all of
// them when none is).
func ownedCatalog(all *catalog.Catalog, ids []string) (*catalog.Catalog, error) {
	if len(ids) == 0 {
		return all, nil
	}
	sub := *all
	sub.Restaurants = nil
	for _, id := range ids {
		r, ok := all.Restaurant(id)
		if !ok {
			return nil, fmt.Errorf("restaurant %q is not in the catalogue", id)
		}
		sub.Restaurants = append(sub.Restaurants, *r)
	}
	b, err := json.Marshal(&sub)
	if err != nil {
		return nil, err
	}
	return catalog.Parse(b)
}

func displayAddr(a *net.TCPAddr) string {
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, strconv.Itoa(a.Port))
}

// Stop shuts down in the reverse order of start: stop serving HTTP and
// commands (in-flight ones finish), stop projectors, drain NATS (pending
// publishes are flushed), stop the server (JetStream syncs its store),
// then let go of Redis.
func (p *Platform) Stop() {
	if p.stopEdge != nil {
		p.stopEdge()
	}
	p.wg.Wait()
	if p.cancel != nil {
		p.cancel()
	}
	if p.http != nil && p.gw == nil {
		_ = p.http.Close()
	}
	for i := len(p.services) - 1; i >= 0; i-- {
		p.services[i].stop()
	}
	if p.nc != nil {
		_ = p.nc.Drain()
		for p.nc.IsDraining() {
			t := time.NewTimer(10 * time.Millisecond)
			<-t.C
		}
	}
	if p.ns != nil {
		p.ns.Shutdown()
		p.ns.WaitForShutdown()
	}
	if p.rds != nil {
		p.rds.Close()
	}
}

// signingKeys returns the token keys: the configured secret, or the
// development key kept in the data dir.
func signingKeys(cfg PlatformConfig) (*auth.Keys, error) {
	if cfg.JWTSecret != "" {
		return auth.NewKeys([]byte(cfg.JWTSecret))
	}
	key, err := auth.DevKey(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("development signing key: %w", err)
	}
	return auth.NewKeys(key)
}

// DemoTokens mints a token per role for the seeded data (printed by `pizza dev`).
func (p *Platform) DemoTokens(ttl time.Duration) (map[string]string, error) {
	if p.keys == nil {
		return nil, nil
	}
	r := p.cat.Restaurants[0]
	out := map[string]string{}
	for label, pr := range map[string]auth.Principal{
		"customer (c-1)":                   {Subject: "c-1", Role: auth.RoleCustomer},
		"driver (" + r.Drivers[0].ID + ")": {Subject: r.Drivers[0].ID, Role: auth.RoleDriver},
		"kitchen (" + r.ID + ")":           {Subject: "kitchen-" + r.ID, Role: auth.RoleKitchen, Restaurants: []string{r.ID}},
		"manager (" + r.ID + ")":           {Subject: "manager-" + r.ID, Role: auth.RoleManager, Restaurants: []string{r.ID}},
		"operator (all restaurants)":       {Subject: "operator", Role: auth.RoleOperator},
	} {
		tok, err := p.keys.Mint(pr, ttl)
		if err != nil {
			return nil, err
		}
		out[label] = tok
	}
	return out, nil
}

// MQTTAddr is the address the MQTT bridge listens on, if it runs.
func (p *Platform) MQTTAddr() string {
	if p.mqtt == nil || p.mqtt.Addr() == nil {
		return ""
	}
	return p.mqtt.Addr().String()
}
