package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/tracing"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Main is the whole main function of a service binary: a logger from
// PIZZA_LOG_FORMAT and PIZZA_LOG_LEVEL (installed as slog's default too),
// OpenTelemetry tracing from the standard OTEL_* environment (see
// tracing.Setup), a context cancelled by SIGINT or SIGTERM, run, the
// flush of the spans not yet exported, and the exit code.
func Main(name string, run func(ctx context.Context, log *slog.Logger, args []string) error) {
	log := NewLogger(os.Stderr, os.Getenv("PIZZA_LOG_FORMAT"), os.Getenv("PIZZA_LOG_LEVEL")).With("service", name)
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	shutdownTracing, err := tracing.Setup(ctx, name, log)
	if err == nil {
		err = run(ctx, log, os.Args[1:])
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if ferr := shutdownTracing(fctx); ferr != nil {
			log.Warn("spans not flushed at exit", "err", ferr)
		}
		cancel()
	}
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		log.Error(name+" stopped", "err", err)
		os.Exit(1)
	}
}

// Common holds the settings every service binary shares.
type Common struct {
	NATSURL        string
	RedisURL       string
	Keyspace       string
	CatalogPath    string
	HealthAddr     string
	StreamReplicas int
	// Production denies delete and purge on the domain streams the service provisions.
	Production bool
	// NATS TLS: the CA that signed the server's certificate, and this
	// service's client certificate and key (for mutual TLS).
	NATSCA, NATSCert, NATSKey string
	// How several instances share the work (eventstore.Scale): partitions
	// of every durable consumer (0: one shared durable), this instance's
	// name, and how long a crashed instance keeps its partitions.
	Partitions   int
	InstanceID   string
	PartitionTTL time.Duration
}

// Flags defines the common flags on fs; healthAddr is the service's
// default health port.
func (c *Common) Flags(fs *flag.FlagSet, healthAddr string) {
	StringFlag(fs, &c.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server(s)", "NATS_URL")
	StringFlag(fs, &c.RedisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis for read models", "REDIS_URL")
	StringFlag(fs, &c.Keyspace, "keyspace", "pizza:", "prefix of Redis keys")
	StringFlag(fs, &c.CatalogPath, "catalog", "", "catalogue file; empty: the built-in seed")
	StringFlag(fs, &c.HealthAddr, "health-addr", healthAddr, "address of /healthz, /readyz and /metrics")
	IntFlag(fs, &c.StreamReplicas, "stream-replicas", 1, "replicas of the streams this service provisions")
	BoolFlag(fs, &c.Production, "production", false, "production stream settings: deny delete and purge")
	StringFlag(fs, &c.NATSCA, "nats-ca", "", "CA certificate (PEM) to verify the NATS servers; enables TLS")
	StringFlag(fs, &c.NATSCert, "nats-cert", "", "client certificate (PEM) for NATS mutual TLS")
	StringFlag(fs, &c.NATSKey, "nats-key", "", "client key (PEM) for NATS mutual TLS")
	host, _ := os.Hostname()
	IntFlag(fs, &c.Partitions, "partitions", 0, "partition the durable consumers over this many partitions so that several instances share them in order per aggregate (0: one shared durable; every instance must use the same value)")
	StringFlag(fs, &c.InstanceID, "instance-id", host, "this instance's name among the partitioned consumers' members and the projectors' lease owners (unique per live instance; default the host name, the pod name)")
	DurationFlag(fs, &c.PartitionTTL, "partition-lease-ttl", 10*time.Second, "how long a crashed instance keeps its partitions before the others take them over")
}

// Scale is how the instances share the consumers, from the settings.
func (c *Common) Scale() eventstore.Scale {
	return eventstore.Scale{Partitions: c.Partitions, InstanceID: c.InstanceID, LeaseTTL: c.PartitionTTL, Replicas: max(c.StreamReplicas, 1)}
}

// NATSOptions are the connection options the settings ask for (TLS).
func (c *Common) NATSOptions() ([]nats.Option, error) {
	var opts []nats.Option
	if c.NATSCA != "" {
		opts = append(opts, nats.RootCAs(c.NATSCA))
	}
	if (c.NATSCert == "") != (c.NATSKey == "") {
		return nil, errors.New("--nats-cert and --nats-key go together")
	}
	if c.NATSCert != "" {
		opts = append(opts, nats.ClientCert(c.NATSCert, c.NATSKey))
	}
	return opts, nil
}

// LogValues lists the settings for the start-up log line (secrets masked).
func (c *Common) LogValues() []any {
	return []any{"nats_url", Redact(c.NATSURL), "redis_url", Redact(c.RedisURL), "keyspace", c.Keyspace,
		"catalog", c.CatalogPath, "health_addr", c.HealthAddr, "stream_replicas", c.StreamReplicas, "production", c.Production,
		"partitions", c.Partitions, "instance_id", c.InstanceID}
}

// Streams are the stream options the settings ask for.
func (c *Common) Streams() eventstore.StreamOptions {
	return eventstore.StreamOptions{Replicas: c.StreamReplicas, Storage: jetstream.FileStorage, Production: c.Production}
}

// Runtime is what a service binary runs its Service with.
type Runtime struct {
	Log     *slog.Logger
	NC      *nats.Conn
	JS      jetstream.JetStream
	Redis   *redis.Client
	Catalog *catalog.Catalog
	Metrics *prometheus.Registry
	health  net.Listener
}

// Connect loads the catalogue, opens the health listener (so a busy port
// fails before anything else starts) and connects to NATS and Redis.
func Connect(ctx context.Context, name string, log *slog.Logger, c Common) (_ *Runtime, err error) {
	r := &Runtime{Log: log, Metrics: NewMetrics()}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.Catalog, err = catalog.Load(c.CatalogPath); err != nil {
		return nil, err
	}
	if r.health, err = Listen(c.HealthAddr, "health-addr"); err != nil {
		return nil, err
	}
	natsOpts, err := c.NATSOptions()
	if err != nil {
		return nil, err
	}
	if r.NC, err = ConnectNATS(c.NATSURL, name, log, natsOpts...); err != nil {
		return nil, err
	}
	if r.JS, err = jetstream.New(r.NC); err != nil {
		return nil, err
	}
	if r.Redis, err = ConnectRedis(ctx, c.RedisURL, log); err != nil {
		return nil, err
	}
	return r, nil
}

// Serve serves /healthz, /readyz (NATS, Redis and the service's own
// readiness) and /metrics until ctx ends, then calls stop (the service's
// Stop) and closes the connections, in that order.
func (r *Runtime) Serve(ctx context.Context, ready Check, stop func()) error {
	checks := map[string]Check{
		"nats": func(context.Context) error {
			if !r.NC.IsConnected() {
				return errors.New("not connected to NATS")
			}
			return nil
		},
		"redis":   func(ctx context.Context) error { return r.Redis.Ping(ctx).Err() },
		"service": ready,
	}
	err := Serve(ctx, r.health, HealthHandler(r.Metrics, checks), 5*time.Second, r.Log)
	stop()
	r.Close()
	return err
}

// Close releases the connections (NATS is drained: pending publishes are flushed).
func (r *Runtime) Close() {
	if r.NC != nil {
		_ = r.NC.Drain()
	}
	if r.Redis != nil {
		_ = r.Redis.Close()
	}
	if r.health != nil {
		_ = r.health.Close()
	}
}

// CheckTimeScale validates a --time-scale value.
func CheckTimeScale(v float64) error {
	if v <= 0 {
		return fmt.Errorf("--time-scale must be positive, got %v", v)
	}
	return nil
}
