// Command gateway runs the HTTP gateway on its own (for Kubernetes); it is
// the same Gateway that `pizza dev` runs in process.
package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/gateway"
	"github.com/nats-io/nats.go/jetstream"
)

func main() { service.Main("gateway", run) }

func run(ctx context.Context, log *slog.Logger, args []string) error {
	var natsURL, redisURL, keyspace, catalogPath, httpAddr string
	var ryw time.Duration
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	service.StringFlag(fs, &natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server(s)", "NATS_URL")
	service.StringFlag(fs, &redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis with the read models", "REDIS_URL")
	service.StringFlag(fs, &keyspace, "keyspace", "pizza:", "prefix of Redis keys")
	service.StringFlag(fs, &catalogPath, "catalog", "", "catalogue file; empty: the built-in seed")
	service.StringFlag(fs, &httpAddr, "http-addr", ":8080", "HTTP address")
	service.DurationFlag(fs, &ryw, "read-your-writes-timeout", 2*time.Second, "how long a command waits for its read model")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log.Info("starting gateway", "nats_url", service.Redact(natsURL), "redis_url", service.Redact(redisURL), "keyspace", keyspace, "http_addr", httpAddr)
	cat, err := catalog.Load(catalogPath)
	if err != nil {
		return err
	}
	l, err := service.Listen(httpAddr, "http-addr")
	if err != nil {
		return err
	}
	nc, err := service.ConnectNATS(natsURL, "gateway", log)
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
	g, err := gateway.New(gateway.Config{Keyspace: keyspace, ReadYourWritesTimeout: ryw}, gateway.Deps{NC: nc, JS: js, Redis: rdb, Catalog: cat, Log: log})
	if err != nil {
		return err
	}
	go func() { _ = g.Run(ctx) }()
	return service.Serve(ctx, l, g.Handler(), 10*time.Second, log, g.CloseStreams)
}
