package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/pkg/tracing"
)

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		cfg                 PlatformConfig
		logFormat, logLevel string
		seed                int
		cors                string
		withSim             bool
		simRate             float64
		regions             int
	)
	fs := flag.NewFlagSet("pizza dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	service.StringFlag(fs, &cfg.HTTPAddr, "http-addr", ":8080", "HTTP address of the gateway (API, SSE, UI)")
	service.StringFlag(fs, &cfg.NATSAddr, "nats-addr", ":4222", "TCP address of the embedded NATS server, for outside tools (port 0 picks one)")
	service.StringFlag(fs, &cfg.MQTTAddr, "mqtt-addr", ":1883", "MQTT (TCP) address of the device bridge; empty: no bridge")
	service.StringFlag(fs, &cfg.MQTTWSAddr, "mqtt-ws-addr", ":8883", "MQTT over WebSocket address of the device bridge; empty: none")
	service.StringFlag(fs, &cfg.DataDir, "data-dir", ".pizza-data", "directory of the JetStream store (the event log) and a child redis-server")
	service.StringFlag(fs, &cfg.RedisURL, "redis-url", "", "Redis for read models; empty: a redis-server on PATH as a child, else an embedded one", "REDIS_URL")
	service.StringFlag(fs, &cfg.Keyspace, "keyspace", "pizza:", "prefix of every Redis key of the read models")
	service.StringFlag(fs, &cfg.Catalog, "catalog", "", "catalogue file (restaurants, menus, staff, stock); empty: the built-in seed")
	service.FloatFlag(fs, &cfg.TimeScale, "time-scale", 1, "speed of simulated time for kitchen and delivery timers (10 = ten times faster)")
	service.FloatFlag(fs, &cfg.QCFailureRate, "qc-failure-rate", 0.05, "share of pizzas that fail the kitchen's quality check and are remade")
	service.IntFlag(fs, &seed, "seed", 0, "seed of the kitchen's quality-check outcomes (0: random)")
	service.StringFlag(fs, &cfg.JWTSecret, "jwt-secret", "", "HMAC secret of bearer tokens (32+ bytes); empty: a development key kept in --data-dir")
	service.BoolFlag(fs, &cfg.NoAuth, "insecure-no-auth", false, "turn authentication off (every caller is the operator); never in production")
	service.FloatFlag(fs, &cfg.RateLimit, "rate-limit", 500, "requests per second per client address and per user")
	service.StringFlag(fs, &cfg.TLS.Cert, "tls-cert", "", "certificate (PEM) to serve the gateway over HTTPS")
	service.StringFlag(fs, &cfg.TLS.Key, "tls-key", "", "key (PEM) of --tls-cert (also used by the MQTT bridge)")
	service.StringFlag(fs, &cors, "cors-origins", "", "browser origins allowed to call the API from other sites, comma-separated")
	service.BoolFlag(fs, &withSim, "sim", false, "also run the simulator: customers ordering, drivers delivering")
	service.FloatFlag(fs, &simRate, "sim-rate", 6, "with --sim: orders per minute across the restaurants")
	service.IntFlag(fs, &regions, "regions", 1, "run this many regions (1-3) as one NATS supercluster, each with its own services and gateway on --http-addr's port + i (docs/scaling.md)")
	service.StringFlag(fs, &logFormat, "log-format", "text", "log format: text or json")
	service.StringFlag(fs, &logLevel, "log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Seed = int64(seed)
	if cors != "" {
		cfg.CORSOrigins = strings.Split(cors, ",")
	}
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano()
	}
	log := service.NewLogger(stderr, logFormat, logLevel)
	shutdownTracing, err := tracing.Setup(ctx, "pizza-dev", log)
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(fctx); err != nil {
			log.Warn("spans not flushed at exit", "err", err)
		}
	}()
	log.Info("starting Awesome Pizza", "http_addr", cfg.HTTPAddr, "nats_addr", cfg.NATSAddr, "mqtt_addr", cfg.MQTTAddr,
		"data_dir", cfg.DataDir, "redis_url", service.Redact(cfg.RedisURL), "keyspace", cfg.Keyspace, "time_scale", cfg.TimeScale)

	if regions != 1 {
		if withSim {
			return errRegionsAndMQTT
		}
		return runRegions(ctx, cfg, regions, log, stdout)
	}
	var p Platform
	if err := p.Start(ctx, cfg, log); err != nil {
		return err
	}
	log.Info("Awesome Pizza is ready", "http", p.HTTPURL(), "api", p.HTTPURL()+"/api/restaurants", "nats", p.NATSURL(), "redis", p.rds.URL+" ("+p.rds.Kind+")")
	fmt.Fprintf(stdout, "Awesome Pizza is ready: %s (NATS %s)\n", p.HTTPURL(), p.NATSURL())
	var demoCreds map[string]string
	if p.mqtt != nil {
		if creds, err := p.mqtt.SeedDemoCredentials(ctx); err != nil {
			log.Warn("demo device credentials not issued", "err", err)
		} else {
			demoCreds = creds
			fmt.Fprintf(stdout, "MQTT on %s; demo device credentials (username = device id):\n", p.MQTTAddr())
			ids := make([]string, 0, len(creds))
			for id := range creds {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				fmt.Fprintf(stdout, "  %-22s %s\n", id, creds[id])
			}
		}
	}
	if tokens, err := p.DemoTokens(24 * time.Hour); err == nil && tokens != nil {
		fmt.Fprintln(stdout, "Demo bearer tokens (24 h; mint more with `pizza token`):")
		labels := make([]string, 0, len(tokens))
		for l := range tokens {
			labels = append(labels, l)
		}
		sort.Strings(labels)
		for _, l := range labels {
			fmt.Fprintf(stdout, "  %-28s %s\n", l, tokens[l])
		}
	}
	if withSim {
		var tokens TokenSource
		if p.keys != nil {
			tokens = MintedTokens(p.keys)
		}
		simCfg := SimConfig{GatewayURL: p.HTTPURL(), Rate: simRate, TimeScale: cfg.TimeScale, Seed: cfg.Seed, Tokens: tokens, Log: log}
		if demoCreds != nil {
			// The simulated phones speak MQTT, with the credentials printed above.
			positions := &MQTTPositions{Broker: "tcp://" + p.MQTTAddr(), Secret: func(_ context.Context, id string) (string, error) {
				if s, ok := demoCreds[id]; ok {
					return s, nil
				}
				return "", fmt.Errorf("no demo credentials for %s", id)
			}}
			defer positions.Close()
			simCfg.Positions = positions
		}
		sim := New(simCfg)
		go func() {
			if err := sim.Run(ctx); err != nil && ctx.Err() == nil {
				log.Warn("simulator stopped", "err", err)
			}
		}()
		log.Info("simulator running", "orders_per_minute", simRate)
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-p.Err():
		log.Error("a component stopped", "err", err)
		p.Stop()
		return err
	}
	p.Stop()
	log.Info("stopped cleanly")
	return nil
}
