// Command kitchen runs the kitchen service on its own (for Kubernetes); it
// is the same Service that `pizza dev` runs in process.
package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/kitchen"
)

func main() { service.Main("kitchen", run) }

func run(ctx context.Context, log *slog.Logger, args []string) error {
	var common service.Common
	var seed int
	var timeScale, qcRate float64
	fs := flag.NewFlagSet("kitchen", flag.ContinueOnError)
	common.Flags(fs, ":8082")
	service.FloatFlag(fs, &timeScale, "time-scale", 1, "divides kitchen durations (60: a minute per second)")
	service.FloatFlag(fs, &qcRate, "qc-failure-rate", kitchen.DefaultQCFailureRate, "share of quality checks that fail, in [0,1); 0 or negative: none")
	service.IntFlag(fs, &seed, "qc-seed", 0, "seed of the quality-check outcomes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := service.CheckTimeScale(timeScale); err != nil {
		return err
	}
	log.Info("starting kitchen", append(common.LogValues(), "time_scale", timeScale, "qc_failure_rate", qcRate, "qc_seed", seed)...)
	if qcRate == 0 {
		qcRate = kitchen.NoQCFailures // an explicit 0 on the command line means "never fail"
	}
	rt, err := service.Connect(ctx, "kitchen", log, common)
	if err != nil {
		return err
	}
	svc, err := kitchen.New(kitchen.Config{Keyspace: common.Keyspace, Streams: common.Streams(), TimeScale: timeScale, QCFailureRate: qcRate, Seed: int64(seed), Scale: common.Scale()},
		kitchen.Deps{NC: rt.NC, JS: rt.JS, Redis: rt.Redis, Catalog: rt.Catalog, Log: log, Metrics: rt.Metrics})
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
