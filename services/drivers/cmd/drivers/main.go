// Command drivers runs the drivers service on its own (for Kubernetes); it
// is the same Service that `pizza dev` runs in process.
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
	"github.com/awesome-pizza/pizza/services/drivers"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	log := service.NewLogger(os.Stderr, os.Getenv("PIZZA_LOG_FORMAT"), os.Getenv("PIZZA_LOG_LEVEL"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, os.Args[1:]); err != nil {
		log.Error("drivers stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, args []string) error {
	var natsURL, redisURL, keyspace, catalogPath, healthAddr string
	var replicas int
	var timeScale float64
	fs := flag.NewFlagSet("drivers", flag.ContinueOnError)
	service.StringFlag(fs, &natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server(s)", "NATS_URL")
	service.StringFlag(fs, &redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis for read models", "REDIS_URL")
	service.StringFlag(fs, &keyspace, "keyspace", "pizza:", "prefix of Redis keys")
	service.StringFlag(fs, &catalogPath, "catalog", "", "catalogue file; empty: the built-in seed")
	service.StringFlag(fs, &healthAddr, "health-addr", ":8083", "address of /healthz, /readyz and /metrics")
	service.IntFlag(fs, &replicas, "stream-replicas", 1, "replicas of the streams this service provisions")
	service.FloatFlag(fs, &timeScale, "time-scale", 1, "speed of simulated time for delivery estimates (10 = ten times faster)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if timeScale <= 0 {
		return errors.New("--time-scale must be positive")
	}
	log.Info("starting drivers", "nats_url", service.Redact(natsURL), "redis_url", service.Redact(redisURL), "keyspace", keyspace,
		"health_addr", healthAddr, "stream_replicas", replicas, "time_scale", timeScale)

	cat, err := catalog.Load(catalogPath)
	if err != nil {
		return err
	}
	healthL, err := service.Listen(healthAddr, "health-addr")
	if err != nil {
		return err
	}
	nc, err := service.ConnectNATS(natsURL, "drivers", log)
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
	metrics := service.NewMetrics()
	svc, err := drivers.New(drivers.Config{Keyspace: keyspace, TimeScale: timeScale, Streams: eventstore.StreamOptions{Replicas: replicas, Storage: jetstream.FileStorage}},
		drivers.Deps{NC: nc, JS: js, Redis: rdb, Catalog: cat, Log: log, Metrics: metrics})
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
