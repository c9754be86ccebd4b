// Command orders runs the orders service on its own (for Kubernetes); it is
// the same Service that `pizza dev` runs in process.
package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/orders"
)

func main() { service.Main("orders", run) }

func run(ctx context.Context, log *slog.Logger, args []string) error {
	var common service.Common
	var timeScale float64
	var regionName string
	fs := flag.NewFlagSet("orders", flag.ContinueOnError)
	common.Flags(fs, ":8081")
	service.FloatFlag(fs, &timeScale, "time-scale", 1, "divides platform durations (stuck-order thresholds, driver ETAs)")
	service.StringFlag(fs, &regionName, "region", "", "this region's name in a supercluster: keep the source consumer of the chain-wide view (docs/scaling.md)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := service.CheckTimeScale(timeScale); err != nil {
		return err
	}
	log.Info("starting orders", append(common.LogValues(), "time_scale", timeScale, "region", regionName)...)
	rt, err := service.Connect(ctx, "orders", log, common)
	if err != nil {
		return err
	}
	svc, err := orders.New(orders.Config{Keyspace: common.Keyspace, Streams: common.Streams(), TimeScale: timeScale, Scale: common.Scale(), Region: regionName},
		orders.Deps{NC: rt.NC, JS: rt.JS, Redis: rt.Redis, Catalog: rt.Catalog, Log: log, Metrics: rt.Metrics})
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
