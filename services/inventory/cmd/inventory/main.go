// Command inventory runs the inventory service on its own (for
// Kubernetes); it is the same Service that `pizza dev` runs in process.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/inventory"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	log := service.NewLogger(os.Stderr, os.Getenv("PIZZA_LOG_FORMAT"), os.Getenv("PIZZA_LOG_LEVEL"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, os.Args[1:]); err != nil {
		log.Error("inventory stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, args []string) error {
	var natsURL, redisURL, keyspace, catalogPath, healthAddr string
	var replicas int
	var timeScale float64
	var checkInterval time.Duration
	fs := flag.NewFlagSet("inventory", flag.ContinueOnError)
	service.StringFlag(fs, &natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server(s)", "NATS_URL")
	service.StringFlag(fs, &redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis for read models", "REDIS_URL")
	service.StringFlag(fs, &keyspace, "keyspace", "pizza:", "prefix of Redis keys")
	service.StringFlag(fs, &catalogPath, "catalog", "", "catalogue file; empty: the built-in seed")
	service.StringFlag(fs, &healthAddr, "health-addr", ":8084", "address of /healthz, /readyz and /metrics")
	service.IntFlag(fs, &replicas, "stream-replicas", 1, "replicas of the streams this service provisions")
	service.FloatFlag(fs, &timeScale, "time-scale", 1, "divide every service duration by this factor (demos)")
	service.DurationFlag(fs, &checkInterval, "stock-check-interval", time.Minute, "period of the low-stock check (before --time-scale)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log.Info("starting inventory", "nats_url", service.Redact(natsURL), "redis_url", service.Redact(redisURL), "keyspace", keyspace,
		"catalog", catalogPath, "health_addr", healthAddr, "stream_replicas", replicas, "time_scale", timeScale, "stock_check_interval", checkInterval)

	// Stage 1: configuration and listeners (a busy port fails fast).
	cat, err := catalog.Load(catalogPath)
	if err != nil {
		return err
	}
	healthL, err := service.Listen(healthAddr, "health-addr")
	if err != nil {
		return err
	}

	// Stage 2: connections.
	nc, err := service.ConnectNATS(natsURL, "inventory", log)
	if err != nil {
		return err
	}
	defer nc.Drain()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	rdb, err := service.ConnectRedis(ctx, redisURL, log)
	if err != nil {
		return err
	}
	defer rdb.Close()

	// Stage 3: the service, then health.
	metrics := service.NewMetrics()
	svc, err := inventory.New(inventory.Config{
		Keyspace: keyspace, TimeScale: timeScale, CheckInterval: checkInterval,
		Streams: eventstore.StreamOptions{Replicas: replicas, Storage: jetstream.FileStorage},
	}, inventory.Deps{NC: nc, JS: js, Redis: rdb, Catalog: cat, Log: log, Metrics: metrics})
	if err != nil {
		return err
	}
	if err := svc.Start(ctx); err != nil {
		return err
	}
	health := service.HealthHandler(metrics, map[string]service.Check{
		"nats": func(context.Context) error {
			if !nc.IsConnected() {
				return errors.New("not connected to NATS")
			}
			return nil
		},
		"redis":      func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		"read-model": svc.Ready,
	})
	err = service.Serve(ctx, healthL, health, 5*time.Second, log)
	svc.Stop()
	return err
}
