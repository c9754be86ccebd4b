// Package service is the runtime every Awesome Pizza service shares: its
// configuration from flags and environment, structured logging, the
// connections to NATS and Redis with their start-up checks, Prometheus
// metrics, and the small HTTP server for health and metrics.
package service

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/awesome-pizza/pizza/pkg/tracing"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
)

// EnvName turns a flag name into its environment variable: "http-addr" →
// "PIZZA_HTTP_ADDR". Every flag of every command can be set either way;
// the flag wins.
func EnvName(flagName string) string {
	return "PIZZA_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// StringFlag defines a string flag whose default comes from the environment.
// Extra environment names (like REDIS_URL) are consulted after the PIZZA_ one.
func StringFlag(fs *flag.FlagSet, p *string, name, def, usage string, alsoEnv ...string) {
	for _, env := range append([]string{EnvName(name)}, alsoEnv...) {
		if v, ok := os.LookupEnv(env); ok && v != "" {
			def = v
			break
		}
	}
	fs.StringVar(p, name, def, usage+" (env "+EnvName(name)+")")
}

// DurationFlag defines a duration flag whose default comes from the environment.
func DurationFlag(fs *flag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	if v, ok := os.LookupEnv(EnvName(name)); ok {
		if d, err := time.ParseDuration(v); err == nil {
			def = d
		}
	}
	fs.DurationVar(p, name, def, usage+" (env "+EnvName(name)+")")
}

// FloatFlag defines a float flag whose default comes from the environment.
func FloatFlag(fs *flag.FlagSet, p *float64, name string, def float64, usage string) {
	if v, ok := os.LookupEnv(EnvName(name)); ok {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			def = f
		}
	}
	fs.Float64Var(p, name, def, usage+" (env "+EnvName(name)+")")
}

// BoolFlag defines a bool flag whose default comes from the environment.
func BoolFlag(fs *flag.FlagSet, p *bool, name string, def bool, usage string) {
	if v, ok := os.LookupEnv(EnvName(name)); ok {
		if b, err := strconv.ParseBool(v); err == nil {
			def = b
		}
	}
	fs.BoolVar(p, name, def, usage+" (env "+EnvName(name)+")")
}

// IntFlag defines an int flag whose default comes from the environment.
func IntFlag(fs *flag.FlagSet, p *int, name string, def int, usage string) {
	if v, ok := os.LookupEnv(EnvName(name)); ok {
		if n, err := strconv.Atoi(v); err == nil {
			def = n
		}
	}
	fs.IntVar(p, name, def, usage+" (env "+EnvName(name)+")")
}

// NewLogger returns a slog logger writing JSON or text at a level. Lines
// logged with a context (InfoContext and friends) inside a traced
// operation carry trace_id and span_id, and order_id when the context
// names an order (see tracing.LogHandler).
func NewLogger(w io.Writer, format, level string) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(tracing.LogHandler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(tracing.LogHandler(slog.NewTextHandler(w, opts)))
}

// Redact hides the password of a URL for logging.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

// ConnectNATS connects to a NATS server with reconnects forever.
func ConnectNATS(url, name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", Redact(url), err)
	}
	return nc, nil
}

// ConnectRedis connects to Redis and checks that it answers. Read models are
// caches of the log, but a Redis that evicts keys would serve holes: a
// policy other than noeviction is reported loudly.
func ConnectRedis(ctx context.Context, rawURL string, log *slog.Logger) (*redis.Client, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	rdb := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", Redact(rawURL), err)
	}
	if policy, err := rdb.ConfigGet(pctx, "maxmemory-policy").Result(); err == nil {
		if p := policy["maxmemory-policy"]; p != "" && p != "noeviction" {
			log.Warn("Redis evicts keys: read models may lose entries; set maxmemory-policy noeviction", "maxmemory-policy", p)
		}
	}
	return rdb, nil
}

// NewMetrics returns a Prometheus registry with the Go and process
// collectors and the event log's (consumers' and projectors' counts and
// lags, see metrics.go).
func NewMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), NewEventLogCollector())
	return reg
}

// Check is one readiness check.
type Check func(ctx context.Context) error

// HealthHandler serves /healthz (alive), /readyz (every check passes) and
// /metrics, for services that have no HTTP API of their own.
func HealthHandler(reg *prometheus.Registry, checks map[string]Check) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		failures := RunChecks(r.Context(), checks)
		w.Header().Set("Content-Type", "application/json")
		if len(failures) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = fmt.Fprintf(w, `{"ready":%t,"failures":%s}`, len(failures) == 0, jsonMap(failures))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// RunChecks runs every check with a short deadline and returns the failures.
func RunChecks(ctx context.Context, checks map[string]Check) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	failures := map[string]string{}
	for name, c := range checks {
		if err := c(ctx); err != nil {
			failures[name] = err.Error()
		}
	}
	return failures
}

func jsonMap(m map[string]string) string {
	var b strings.Builder
	b.WriteByte('{')
	i := 0
	for k, v := range m {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(k) + ":" + strconv.Quote(v))
		i++
	}
	b.WriteByte('}')
	return b.String()
}

// Listen opens a TCP listener; an address in use becomes an error that
// names the flag to change.
func Listen(addr, flagName string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, errAddrInUse) || strings.Contains(err.Error(), "address already in use") {
			return nil, fmt.Errorf("%s is already in use; choose another with --%s (or %s)", addr, flagName, EnvName(flagName))
		}
		return nil, fmt.Errorf("listen on %s (--%s): %w", addr, flagName, err)
	}
	return l, nil
}

var errAddrInUse = errors.New("address already in use")

// TLSFiles names a certificate and its key (PEM files). Empty: plain TCP.
type TLSFiles struct {
	Cert, Key string
}

// Enabled reports whether TLS is configured; both files or neither.
func (t TLSFiles) Enabled() (bool, error) {
	if (t.Cert == "") != (t.Key == "") {
		return false, errors.New("TLS needs both a certificate and a key")
	}
	return t.Cert != "", nil
}

// ServeTLS is Serve over TLS with the given certificate and key.
func ServeTLS(ctx context.Context, l net.Listener, h http.Handler, files TLSFiles, grace time.Duration, log *slog.Logger, onShutdown ...func()) error {
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	tl := tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	return Serve(ctx, tl, h, grace, log, onShutdown...)
}

// Serve runs an HTTP server on l until ctx ends, then shuts it down
// gracefully within grace: it stops accepting, calls onShutdown (to end
// long-lived streams) and lets requests in flight finish. It never cuts
// streams with a write timeout.
func Serve(ctx context.Context, l net.Listener, h http.Handler, grace time.Duration, log *slog.Logger, onShutdown ...func()) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       120 * time.Second,
		// Requests keep the values of ctx but not its cancellation: a
		// command in flight at shutdown completes and gets its answer.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	for _, f := range onShutdown {
		srv.RegisterOnShutdown(f)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("HTTP shutdown deadline passed; closing connections", "err", err)
		_ = srv.Close()
	}
	<-errc
	return nil
}
