// Command inventory runs the inventory service on its own (for Kubernetes);
// it is the same Service that `pizza dev` runs in process.
package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/inventory"
)

func main() { service.Main("inventory", run) }

func run(ctx context.Context, log *slog.Logger, args []string) error {
	var common service.Common
	var timeScale float64
	var checkInterval time.Duration
	fs := flag.NewFlagSet("inventory", flag.ContinueOnError)
	common.Flags(fs, ":8084")
	service.FloatFlag(fs, &timeScale, "time-scale", 1, "divide every service duration by this factor (demos)")
	service.DurationFlag(fs, &checkInterval, "stock-check-interval", time.Minute, "period of the low-stock check (before --time-scale)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := service.CheckTimeScale(timeScale); err != nil {
		return err
	}
	log.Info("starting inventory", append(common.LogValues(), "time_scale", timeScale, "stock_check_interval", checkInterval)...)
	rt, err := service.Connect(ctx, "inventory", log, common)
	if err != nil {
		return err
	}
	svc, err := inventory.New(inventory.Config{Keyspace: common.Keyspace, Streams: common.Streams(), TimeScale: timeScale, CheckInterval: checkInterval},
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
