// Command drivers runs the drivers service on its own (for Kubernetes); it
// is the same Service that `pizza dev` runs in process.
package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/drivers"
)

func main() { service.Main("drivers", run) }

func run(ctx context.Context, log *slog.Logger, args []string) error {
	var common service.Common
	var timeScale float64
	var manual bool
	fs := flag.NewFlagSet("drivers", flag.ContinueOnError)
	common.Flags(fs, ":8083")
	service.FloatFlag(fs, &timeScale, "time-scale", 1, "speed of simulated time for delivery estimates (10 = ten times faster)")
	service.BoolFlag(fs, &manual, "manual-dispatch", false, "ready orders wait for a manager to assign a driver")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := service.CheckTimeScale(timeScale); err != nil {
		return err
	}
	log.Info("starting drivers", append(common.LogValues(), "time_scale", timeScale, "manual_dispatch", manual)...)
	rt, err := service.Connect(ctx, "drivers", log, common)
	if err != nil {
		return err
	}
	svc, err := drivers.New(drivers.Config{Keyspace: common.Keyspace, Streams: common.Streams(), TimeScale: timeScale, ManualDispatch: manual, Scale: common.Scale()},
		drivers.Deps{NC: rt.NC, JS: rt.JS, Redis: rt.Redis, Catalog: rt.Catalog, Log: log, Metrics: rt.Metrics})
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
