// Command gateway runs the HTTP gateway on its own (for Kubernetes); it is
// the same Gateway that `pizza dev` runs in process.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/region"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/gateway"
	"github.com/awesome-pizza/pizza/services/gateway/auth"
	"github.com/nats-io/nats.go/jetstream"
)

func main() { service.Main("gateway", run) }

func run(ctx context.Context, log *slog.Logger, args []string) error {
	var common service.Common
	var httpAddr, jwtSecret, cors, proxies string
	var noAuth bool
	var tlsFiles service.TLSFiles
	var ryw time.Duration
	var rate, timeScale float64
	var streams int
	var topologyPath, regionName, globalURL string
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	common.Flags(fs, "") // the gateway serves health on its HTTP address
	service.StringFlag(fs, &httpAddr, "http-addr", ":8080", "HTTP address (API, SSE, UI, health, metrics)")
	service.StringFlag(fs, &jwtSecret, "jwt-secret", "", "HMAC secret of bearer tokens (32+ bytes; comma-separated to rotate: the first signs)")
	service.BoolFlag(fs, &noAuth, "insecure-no-auth", false, "turn authentication off (every caller is the operator); never in production")
	service.StringFlag(fs, &tlsFiles.Cert, "tls-cert", "", "certificate (PEM) to serve HTTPS")
	service.StringFlag(fs, &tlsFiles.Key, "tls-key", "", "key (PEM) of --tls-cert")
	service.StringFlag(fs, &cors, "cors-origins", "", "browser origins allowed to call the API, comma-separated")
	service.StringFlag(fs, &proxies, "trusted-proxies", "", "CIDR ranges of proxies whose X-Forwarded-For is believed, comma-separated")
	service.FloatFlag(fs, &rate, "rate-limit", 50, "requests per second per client address and per user")
	service.IntFlag(fs, &streams, "max-streams-per-user", 10, "concurrent SSE streams per user")
	service.FloatFlag(fs, &timeScale, "time-scale", 1, "accepted for compatibility; the orders service applies the time scale to ETAs")
	service.DurationFlag(fs, &ryw, "read-your-writes-timeout", 2*time.Second, "how long a command waits for its read model")
	service.StringFlag(fs, &topologyPath, "topology", "", "regions and their restaurants (JSON, docs/scaling.md); with --region, commands for another region's restaurant go there")
	service.StringFlag(fs, &regionName, "region", "", "this gateway's region in --topology")
	service.StringFlag(fs, &globalURL, "global-nats-url", "", "NATS URL of the GLOBAL account: the global home region's gateways keep and serve the chain-wide dashboard")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var topology *region.Topology
	var router *region.Router
	if topologyPath != "" || regionName != "" {
		t, err := region.LoadTopology(topologyPath)
		if err != nil {
			return err
		}
		if router, err = region.NewRouter(t, regionName); err != nil {
			return err
		}
		topology = &t
	}
	if globalURL != "" && (topology == nil || topology.Global() != regionName) {
		return errors.New("--global-nats-url: only the global home region's gateways keep the chain-wide view (set --topology and --region to that region)")
	}
	log.Info("starting gateway", append(common.LogValues(), "http_addr", httpAddr, "auth", !noAuth, "tls", tlsFiles.Cert != "", "cors_origins", cors,
		"trusted_proxies", proxies, "rate_limit", rate, "region", regionName, "global_view", globalURL != "")...)
	if _, err := tlsFiles.Enabled(); err != nil {
		return err
	}
	var keys *auth.Keys
	if !noAuth {
		if jwtSecret == "" {
			return errors.New("--jwt-secret is required (or --insecure-no-auth for local experiments)")
		}
		var secrets [][]byte
		for _, s := range strings.Split(jwtSecret, ",") {
			secrets = append(secrets, []byte(s))
		}
		var err error
		if keys, err = auth.NewKeys(secrets...); err != nil {
			return err
		}
	}
	var trusted []netip.Prefix
	for _, p := range strings.Split(proxies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			return errors.New("--trusted-proxies: " + err.Error())
		}
		trusted = append(trusted, prefix)
	}
	var origins []string
	if cors != "" {
		origins = strings.Split(cors, ",")
	}
	cat, err := catalog.Load(common.CatalogPath)
	if err != nil {
		return err
	}
	l, err := service.Listen(httpAddr, "http-addr")
	if err != nil {
		return err
	}
	natsOpts, err := common.NATSOptions()
	if err != nil {
		return err
	}
	nc, err := service.ConnectNATS(common.NATSURL, "gateway", log, natsOpts...)
	if err != nil {
		return err
	}
	defer nc.Drain()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	rdb, err := service.ConnectRedis(ctx, common.RedisURL, log)
	if err != nil {
		return err
	}
	defer rdb.Close()
	var global *region.GlobalViewService
	if globalURL != "" {
		gnc, err := service.ConnectNATS(globalURL, "gateway-global-view", log, natsOpts...)
		if err != nil {
			return err
		}
		defer gnc.Drain()
		gjs, err := jetstream.New(gnc)
		if err != nil {
			return err
		}
		global = region.NewGlobalView(gjs, rdb, *topology, common.Keyspace, common.InstanceID,
			region.GlobalOptions{Replicas: max(common.StreamReplicas, 1), Storage: jetstream.FileStorage}, log)
		go func() { _ = global.Run(ctx) }()
	}
	g, err := gateway.New(gateway.Config{Keyspace: common.Keyspace, ReadYourWritesTimeout: ryw, TimeScale: timeScale, RatePerSecond: rate,
		RateBurst: int(2 * rate), MaxStreamsPerUser: streams, TrustedProxies: trusted, CORSOrigins: origins},
		gateway.Deps{NC: nc, JS: js, Redis: rdb, Catalog: cat, Log: log, Auth: keys, Router: router, Global: global})
	if err != nil {
		return err
	}
	go func() { _ = g.Run(ctx) }()
	if on, _ := tlsFiles.Enabled(); on {
		return service.ServeTLS(ctx, l, g.Handler(), tlsFiles, 10*time.Second, log, g.CloseStreams)
	}
	return service.Serve(ctx, l, g.Handler(), 10*time.Second, log, g.CloseStreams)
}
