// Command inventory runs the inventory service on its own (for Kubernetes);
// it is the same Service that `pizza dev` runs in process.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"time"

	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/inventory"
)

func main() { service.Main("inventory", run) }

func run(ctx context.Context, log *slog.Logger, args []string) error {
	var common service.Common
	var timeScale float64
	var checkInterval, leaseTTL time.Duration
	var partitions int
	var instanceID string
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("inventory", flag.ContinueOnError)
	common.Flags(fs, ":8084")
	service.FloatFlag(fs, &timeScale, "time-scale", 1, "divide every service duration by this factor (demos)")
	service.DurationFlag(fs, &checkInterval, "stock-check-interval", time.Minute, "period of the low-stock check (before --time-scale)")
	service.IntFlag(fs, &partitions, "partitions", 0, "partition the durable consumers over this many partitions so that several instances share them (0: one shared durable; every instance must use the same value)")
	service.StringFlag(fs, &instanceID, "instance-id", host, "this instance's name among the partitioned consumers' members (unique per live instance; default the host name)")
	service.DurationFlag(fs, &leaseTTL, "partition-lease-ttl", 10*time.Second, "how long a crashed instance keeps its partitions before the others take them over")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := service.CheckTimeScale(timeScale); err != nil {
		return err
	}
	log.Info("starting inventory", append(common.LogValues(), "time_scale", timeScale, "stock_check_interval", checkInterval, "partitions", partitions, "instance_id", instanceID)...)
	rt, err := service.Connect(ctx, "inventory", log, common)
	if err != nil {
		return err
	}
	svc, err := inventory.New(inventory.Config{Keyspace: common.Keyspace, Streams: common.Streams(), TimeScale: timeScale, CheckInterval: checkInterval,
		Scale: common.Scale()},
		inventory.Deps{NC: rt.NC, JS: rt.JS, Redis: rt.Redis, Catalog: rt.Catalog, Log: log, Metrics: rt.Metrics})
	if err != nil {
		rt.Close()
		return err
	}
	if err := svc.Start(ctx); err != nil {
		rt.Close()
		return err
	}
	return rt.Serve(ctx, svc.Ready, svc.Stop)
}
