package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/region"
	"github.com/awesome-pizza/pizza/services/gateway/auth"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// regionNames are the regions `pizza dev --regions N` runs, in order.
var regionNames = []string{"us-east", "us-west", "eu-west"}

// Regions is the platform as several regions of one NATS supercluster, in
// one process (docs/scaling.md, Regions): one single-server JetStream
// cluster per region joined by gateways, one account per region with the
// region's own services, Redis keyspace and gateway (on consecutive HTTP
// ports), restaurants spread over the regions, and the chain-wide view
// projected from the GLOBAL account's stream sourced from every region.
type Regions struct {
	Topology  region.Topology
	sc        *region.Supercluster
	platforms []*Platform
	global    *region.GlobalViewService
	globalNC  *nats.Conn
	cancel    context.CancelFunc
	done      chan error
}

// StartRegions starts n regions. cfg is the configuration every region
// starts from: region i serves HTTP on cfg.HTTPAddr's port + i and keeps
// its read models under cfg.Keyspace + "<region>:". The MQTT bridge runs
// only in single-region mode.
func StartRegions(ctx context.Context, cfg PlatformConfig, n int, log *slog.Logger) (rs *Regions, err error) {
	if n < 2 || n > len(regionNames) {
		return nil, fmt.Errorf("--regions must be 1 to %d", len(regionNames))
	}
	cat, err := catalog.Load(cfg.Catalog)
	if err != nil {
		return nil, err
	}
	if len(cat.Restaurants) < n {
		return nil, fmt.Errorf("--regions %d: the catalogue has only %d restaurants", n, len(cat.Restaurants))
	}
	host, portStr, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("--http-addr %q: %w", cfg.HTTPAddr, err)
	}
	basePort, err := strconv.Atoi(portStr)
	if err != nil || basePort == 0 {
		return nil, fmt.Errorf("--http-addr %q: --regions needs a fixed port (region i serves on port+i)", cfg.HTTPAddr)
	}
	ids := make([]string, 0, len(cat.Restaurants))
	for _, r := range cat.Restaurants {
		ids = append(ids, r.ID)
	}
	rs = &Regions{Topology: region.Spread(regionNames[:n], 1, ids), done: make(chan error, 1)}
	defer func() {
		if err != nil {
			rs.Stop()
		}
	}()
	plan, err := region.NewPlan(rs.Topology, filepath.Join(cfg.DataDir, "regions"))
	if err != nil {
		return nil, err
	}
	if err := plan.FreeAddrs("127.0.0.1"); err != nil {
		return nil, err
	}
	natsLog := log.With("component", "nats-server")
	if rs.sc, err = region.StartSupercluster(ctx, plan, func(r string, _ int, o *server.Options) {
		o.NoLog = false
		o.NoSigs = true
	}); err != nil {
		return nil, err
	}
	for _, r := range rs.Topology.Regions {
		for _, s := range []*server.Server{rs.sc.Server(r.Name, 0)} {
			s.SetLoggerV2(natsLogger{natsLog.With("region", r.Name)}, false, false, false)
		}
	}
	// One signing key for every region, so that a token is valid at every
	// region's gateway (each region has a data dir of its own).
	if !cfg.NoAuth && cfg.JWTSecret == "" {
		key, err := auth.DevKey(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("development signing key: %w", err)
		}
		cfg.JWTSecret = string(key)
	}
	// The chain-wide view: its stream in the GLOBAL account, projected into
	// the first region's Redis, served by the first region's gateway.
	if rs.globalNC, err = rs.sc.ConnectGlobal(nats.Name("pizza-dev-global"), nats.MaxReconnects(-1)); err != nil {
		return nil, err
	}
	gjs, err := jetstream.New(rs.globalNC)
	if err != nil {
		return nil, err
	}
	for i, r := range rs.Topology.Regions {
		nc, err := rs.sc.Connect(r.Name, nats.Name("pizza-dev-"+r.Name), nats.MaxReconnects(-1))
		if err != nil {
			return nil, err
		}
		router, err := region.NewRouter(rs.Topology, r.Name)
		if err != nil {
			return nil, err
		}
		rc := cfg
		rc.HTTPAddr = net.JoinHostPort(host, strconv.Itoa(basePort+i))
		rc.Keyspace = cfg.Keyspace + r.Name + ":"
		rc.DataDir = filepath.Join(cfg.DataDir, "regions", r.Name)
		rc.MQTTAddr, rc.MQTTWSAddr = "", ""
		rc.NATS, rc.Router, rc.Owned = nc, router, r.Restaurants
		if i == 0 {
			rc.GlobalView = func(rdb *redis.Client) *region.GlobalViewService {
				rs.global = region.NewGlobalView(gjs, rdb, rs.Topology, cfg.Keyspace, "", region.GlobalOptions{Storage: jetstream.FileStorage}, log)
				return rs.global
			}
		}
		rc.Placement = &jetstream.Placement{Tags: []string{region.ServerTag(r.Name)}}
		p := &Platform{}
		if err := p.Start(ctx, rc, log.With("region", r.Name)); err != nil {
			return nil, fmt.Errorf("region %s: %w", r.Name, err)
		}
		rs.platforms = append(rs.platforms, p)
		if err := region.ExportOrders(ctx, p.js, r.Name); err != nil {
			return nil, err
		}
	}
	if err := rs.global.Provision(ctx); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rs.cancel = cancel
	go func() { rs.done <- rs.global.Run(runCtx) }()
	return rs, nil
}

// Platforms returns each region's platform, in topology order.
func (rs *Regions) Platforms() []*Platform { return rs.platforms }

// GlobalView reads the chain-wide dashboard.
func (rs *Regions) GlobalView(ctx context.Context) (region.GlobalView, error) {
	return rs.global.View(ctx)
}

// Err reports a region's component, or the global view, that stopped on its own.
func (rs *Regions) Err() <-chan error {
	out := make(chan error, 1)
	for _, p := range rs.platforms {
		go func() {
			if err := <-p.Err(); err != nil {
				select {
				case out <- err:
				default:
				}
			}
		}()
	}
	go func() {
		if err := <-rs.done; err != nil {
			select {
			case out <- fmt.Errorf("global view: %w", err):
			default:
			}
		}
	}()
	return out
}

// Stop stops the global view, every region's platform, then the servers.
func (rs *Regions) Stop() {
	if rs.cancel != nil {
		rs.cancel()
		select {
		case <-rs.done:
		case <-time.After(10 * time.Second):
		}
	}
	if rs.globalNC != nil {
		_ = rs.globalNC.Drain()
	}
	for i := len(rs.platforms) - 1; i >= 0; i-- {
		rs.platforms[i].Stop()
	}
	if rs.sc != nil {
		rs.sc.Shutdown()
	}
}

// runRegions is `pizza dev --regions N`.
func runRegions(ctx context.Context, cfg PlatformConfig, n int, log *slog.Logger, stdout io.Writer) error {
	rs, err := StartRegions(ctx, cfg, n, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Awesome Pizza is ready in %d regions (one NATS supercluster):\n", n)
	for i, r := range rs.Topology.Regions {
		p := rs.platforms[i]
		fmt.Fprintf(stdout, "  %-8s %s  restaurants %v  (NATS %s)\n", r.Name, p.HTTPURL(), r.Restaurants, strings.Join(rs.sc.ClientURLs(r.Name), ","))
	}
	fmt.Fprintln(stdout, "Any region's gateway takes orders for every restaurant and routes them to the restaurant's home region;")
	fmt.Fprintln(stdout, "an order is read and tracked on its home region's gateway (the Pizza-Region header names it).")
	if tokens, err := rs.platforms[0].DemoTokens(24 * time.Hour); err == nil && tokens != nil {
		fmt.Fprintln(stdout, "Demo bearer tokens (24 h; valid in every region):")
		for l, t := range tokens {
			fmt.Fprintf(stdout, "  %-28s %s\n", l, t)
		}
	}
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	errc := rs.Err()
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			rs.Stop()
			log.Info("stopped cleanly")
			return nil
		case err := <-errc:
			log.Error("a component stopped", "err", err)
			rs.Stop()
			return err
		case <-tick.C:
			v, err := rs.GlobalView(ctx)
			if err != nil {
				log.Warn("global view unavailable", "err", err)
				continue
			}
			log.Info("global view", "orders", v.Total(), "by_region", v.Totals, "checkpoint", v.Checkpoint)
		}
	}
}

var errRegionsAndMQTT = errors.New("--sim needs the MQTT bridge, which runs only with --regions 1")
