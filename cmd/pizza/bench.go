package main

// pizza bench: the platform's figures, measured in process against the raw
// engines underneath, in the same run.
//
// Every scenario (every intake phase) starts its own in-process platform:
// embedded nats-server with JetStream on disk under a temporary directory,
// the real Redis of --redis-url in a keyspace of its own (removed
// afterwards), authentication on with an operator token, rate limits out of
// the way, a catalogue whose stock lasts the run. One scenario's background
// work (a kitchen queue, a fleet) thus never skews the next one's figures.
// Everything listens on loopback; every phase is bounded by --duration (or
// a fixed cap) and the command stops by itself.
//
//	intake     POST /api/orders through gateway → orders → append → read model
//	           (the 201 waits for the projection): closed-loop maximum and
//	           open-loop latency at fixed offered rates, measured from the
//	           scheduled send time; baselines: raw JetStream appends
//	           (expected-sequence 0 and Nats-Msg-Id on fresh subjects) at the
//	           same concurrency and rates (one message: how a placement is
//	           stored since order_placed.v3), and raw two-message atomic
//	           batches (how it was stored before; multi-event commands still are).
//	lifecycle  orders/s carried from placement to Delivered with instant
//	           stages (time scale 1e6); the bench plays the drivers over HTTP.
//	telemetry  MQTT QoS 1 and QoS 0 GPS fixes/s stored in TELEMETRY, and
//	           device → SSE latency; baseline: a bare Mochi broker with a
//	           counting hook and the same clients.
//	fanout     N SSE watchers: event → client latency with one watcher per
//	           order (the orders cancelled open loop at --cancel-rate, or
//	           closed loop as fast as they go with 0) and with all of
//	           them on one order, memory per idle
//	           client; baseline: a bare Echo SSE broadcaster in the same
//	           process. The watchers live in a child process (this binary
//	           again), so their memory and file descriptors are not the
//	           server's.
//	rebuild    events/s replayed into the orders read models from a copy of
//	           the log the platform wrote; baseline: pipelined SETs of as
//	           many documents.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/gateway/auth"
	"github.com/awesome-pizza/pizza/services/mqttbridge"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
	ordersvc "github.com/awesome-pizza/pizza/services/orders"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/labstack/echo/v4"
	mochi "github.com/mochi-mqtt/server/v2"
	mochiauth "github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// benchScenarios are the scenarios in the order they are reported.
var benchScenarios = []string{"intake", "lifecycle", "telemetry", "fanout", "rebuild"}

// benchRunOrder is the order they run in: lifecycle last, because at its
// time scale (1e6) the platform's periodic checks spin and its Stop has
// been seen to hang; a platform left behind must not skew the others.
var benchRunOrder = []string{"intake", "telemetry", "fanout", "rebuild", "lifecycle"}

// benchMaxWatchers bounds --watchers: server and client sockets share the
// machine's file-descriptor limit (20,000 on the reference machine).
const benchMaxWatchers = 10_000

// benchWatchClientCommand returns the command that runs the fan-out
// scenario's SSE clients in a child process: this binary, `pizza bench
// --watch-client`. Tests point it at the test binary.
var benchWatchClientCommand = func() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(exe, "bench", "--watch-client"), nil
}

type benchOptions struct {
	duration    time.Duration
	scenarios   []string
	concurrency int
	rates       []float64
	watchers    int
	cancelRate  float64
	redisURL    string
	jsonOut     bool
	cpuProfile  string
	traceTail   bool
	dataDir     string
	drivers     int
	restaurants int
	mqttClients int
	mqttRate    float64
	timeScale   float64
	logLevel    string

	stderr io.Writer
}

// benchResult is one row of the report. Ratio is value / baseline.
type benchResult struct {
	Scenario string   `json:"scenario"`
	Metric   string   `json:"metric"`
	Unit     string   `json:"unit"`
	Value    float64  `json:"value"`
	Baseline *float64 `json:"baseline,omitempty"`
	Ratio    *float64 `json:"ratio,omitempty"`
	Note     string   `json:"note,omitempty"`
}

type benchMachine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpuModel"`
	MemoryMiB int64  `json:"memoryMiB"`
	Kernel    string `json:"kernel"`
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	Go        string `json:"go"`
	Redis     string `json:"redis"`
}

type benchReport struct {
	Command  string         `json:"command"`
	Started  time.Time      `json:"started"`
	Elapsed  string         `json:"elapsed"`
	Machine  benchMachine   `json:"machine"`
	Options  map[string]any `json:"options"`
	Results  []benchResult  `json:"results"`
	Failures []string       `json:"failures,omitempty"`
}

// benchRecorder collects the rows of one scenario.
type benchRecorder struct {
	mu       sync.Mutex
	scenario string
	results  *[]benchResult
	log      io.Writer
}

func (r *benchRecorder) add(metric, unit string, value float64, note string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.results = append(*r.results, benchResult{Scenario: r.scenario, Metric: metric, Unit: unit, Value: benchClean(value), Note: note})
}

func (r *benchRecorder) addVs(metric, unit string, value, baseline float64, note string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := benchClean(baseline)
	res := benchResult{Scenario: r.scenario, Metric: metric, Unit: unit, Value: benchClean(value), Baseline: &b, Note: note}
	if b != 0 {
		ratio := benchClean(value / b)
		res.Ratio = &ratio
	}
	*r.results = append(*r.results, res)
}

func (r *benchRecorder) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "bench: %s: %s\n", r.scenario, fmt.Sprintf(format, args...))
}

func benchClean(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// benchSyncWriter serialises writes of the platform's logger and the
// bench's progress lines.
type benchSyncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *benchSyncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		o                benchOptions
		scenarios, rates string
		watchClient      bool
	)
	fs := flag.NewFlagSet("pizza bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each measured phase")
	fs.StringVar(&scenarios, "scenario", "all", "comma-separated scenarios: "+strings.Join(benchScenarios, ", ")+" (or all)")
	fs.IntVar(&o.concurrency, "concurrency", 32, "concurrent clients of the closed-loop phases (intake, lifecycle, raw append)")
	fs.StringVar(&rates, "rates", "200,1000", "comma-separated offered rates (orders/s) of the open-loop intake phases")
	fs.IntVar(&o.watchers, "watchers", 1000, fmt.Sprintf("SSE watchers of the fan-out scenario (at most %d)", benchMaxWatchers))
	fs.Float64Var(&o.cancelRate, "cancel-rate", 200, "cancellations/s offered open-loop in the fan-out scenario's one-watcher-per-order phase; 0: closed-loop with --concurrency clients, as fast as the platform goes")
	service.StringFlag(fs, &o.redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis for the read models (each scenario uses a keyspace of its own, removed afterwards)", "REDIS_URL")
	fs.BoolVar(&o.jsonOut, "json", false, "print the report as JSON on stdout (the table then goes to stderr)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of each scenario's main phase to <prefix>-<scenario>.pprof")
	fs.BoolVar(&o.traceTail, "trace-tail", false, "record the platform's spans during the first open-loop intake phase and report where the slowest 1% of placements spent their time")
	fs.StringVar(&o.dataDir, "data-dir", "", "parent of the temporary JetStream stores (default: the system temp dir)")
	fs.IntVar(&o.drivers, "drivers", 20, "drivers per restaurant in the bench catalogue")
	fs.IntVar(&o.restaurants, "restaurants", 0, "restaurants in the bench catalogue: the seed's, then copies of them (0: the seed's 3)")
	fs.IntVar(&o.mqttClients, "mqtt-clients", 1200, "MQTT devices (drivers' phones, one connection each) of the telemetry scenario; the fleet grows to match")
	fs.Float64Var(&o.mqttRate, "mqtt-rate", 19, "GPS fixes/s each device sends into the platform (the bridge allows 20/s per connection); 0: as fast as acknowledged")
	fs.Float64Var(&o.timeScale, "time-scale", 1e6, "platform time scale of the lifecycle scenario (1e6: stages instant)")
	fs.StringVar(&o.logLevel, "log-level", "none", "level of the platform's own logs on stderr: none, error, warn, info, debug")
	fs.BoolVar(&watchClient, "watch-client", false, "internal: run as the fan-out scenario's SSE client process (JSON lines on stdin/stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if watchClient {
		return benchWatchClientMain(os.Stdin, stdout)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("pizza bench: unexpected arguments %q", fs.Args())
	}
	switch {
	case o.duration <= 0:
		return errors.New("--duration must be positive")
	case o.concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case o.watchers < 1 || o.watchers > benchMaxWatchers:
		return fmt.Errorf("--watchers must be from 1 to %d", benchMaxWatchers)
	case o.drivers < 1:
		return errors.New("--drivers must be at least 1")
	case o.restaurants < 0 || o.restaurants > 1000:
		return errors.New("--restaurants must be from 0 to 1000")
	case o.mqttClients < 1 || o.mqttRate < 0:
		return errors.New("--mqtt-clients must be at least 1 and --mqtt-rate not negative")
	case o.timeScale <= 0:
		return errors.New("--time-scale must be positive")
	case o.cancelRate < 0:
		return errors.New("--cancel-rate must not be negative")
	}
	for _, s := range strings.Split(rates, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || r <= 0 {
			return fmt.Errorf("--rates: %q is not a positive rate", s)
		}
		o.rates = append(o.rates, r)
	}
	for _, s := range strings.Split(scenarios, ",") {
		switch s = strings.TrimSpace(s); {
		case s == "":
		case s == "all":
			o.scenarios = append(o.scenarios, benchScenarios...)
		case slices.Contains(benchScenarios, s):
			o.scenarios = append(o.scenarios, s)
		default:
			return fmt.Errorf("--scenario: unknown scenario %q (choose from %s, all)", s, strings.Join(benchScenarios, ", "))
		}
	}
	if len(o.scenarios) == 0 {
		return errors.New("--scenario: no scenario selected")
	}
	// Run the selected ones once each, in the run order.
	o.scenarios = slices.DeleteFunc(slices.Clone(benchRunOrder), func(s string) bool { return !slices.Contains(o.scenarios, s) })
	errw := &benchSyncWriter{w: stderr}
	o.stderr = errw

	report := benchReport{
		Command: "pizza bench " + strings.Join(args, " "),
		Started: time.Now().UTC(),
		Machine: benchMachineInfo(ctx, o.redisURL),
		Options: map[string]any{
			"duration": o.duration.String(), "scenarios": o.scenarios, "concurrency": o.concurrency, "rates": o.rates,
			"watchers": o.watchers, "cancelRate": o.cancelRate, "driversPerRestaurant": o.drivers, "restaurants": o.restaurants, "mqttClients": o.mqttClients, "mqttRate": o.mqttRate, "timeScale": o.timeScale,
		},
		Results: []benchResult{},
	}
	fmt.Fprintf(errw, "bench: %d CPUs (%s), Go %s, Redis %s; scenarios %s, %s each phase\n",
		report.Machine.CPUs, report.Machine.CPUModel, report.Machine.Go, report.Machine.Redis, strings.Join(o.scenarios, ","), o.duration)
	run := map[string]func(context.Context, *benchOptions, *benchRecorder) error{
		"intake": benchIntake, "lifecycle": benchLifecycle, "telemetry": benchTelemetry, "fanout": benchFanout, "rebuild": benchRebuild,
	}
	start := time.Now()
	for _, name := range o.scenarios {
		if ctx.Err() != nil {
			report.Failures = append(report.Failures, name+": interrupted")
			continue
		}
		rec := &benchRecorder{scenario: name, results: &report.Results, log: errw}
		t0 := time.Now()
		rec.logf("starting")
		if err := run[name](ctx, &o, rec); err != nil {
			rec.logf("FAILED: %v", err)
			report.Failures = append(report.Failures, name+": "+err.Error())
			continue
		}
		rec.logf("done in %s", time.Since(t0).Round(time.Millisecond))
	}
	report.Elapsed = time.Since(start).Round(time.Millisecond).String()
	slices.SortStableFunc(report.Results, func(a, b benchResult) int {
		return slices.Index(benchScenarios, a.Scenario) - slices.Index(benchScenarios, b.Scenario)
	})

	table := stdout
	if o.jsonOut {
		table = errw
	}
	benchPrintTable(table, report)
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	}
	if len(report.Failures) > 0 {
		return fmt.Errorf("bench: %d scenario(s) failed: %s", len(report.Failures), strings.Join(report.Failures, "; "))
	}
	return nil
}

func benchPrintTable(w io.Writer, r benchReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "SCENARIO\tMETRIC\tVALUE\tBASELINE\tRATIO\t\n")
	for _, res := range r.Results {
		base, ratio := "-", "-"
		if res.Baseline != nil {
			base = benchNum(*res.Baseline)
		}
		if res.Ratio != nil {
			ratio = fmt.Sprintf("%.3f", *res.Ratio)
		}
		metric := res.Metric
		if res.Unit != "" {
			metric += " (" + res.Unit + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", res.Scenario, metric, benchNum(res.Value), base, ratio)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nratio = value / baseline. Machine: %d CPUs %s, %d MiB, Linux %s, Go %s, Redis %s. Took %s.\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemoryMiB, r.Machine.Kernel, r.Machine.Go, r.Machine.Redis, r.Elapsed)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "FAILED: %s\n", f)
	}
}

func benchNum(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func benchMachineInfo(ctx context.Context, redisURL string) benchMachine {
	m := benchMachine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				m.MemoryMiB = kb / 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if opt, err := redis.ParseURL(redisURL); err == nil {
		rdb := redis.NewClient(opt)
		defer rdb.Close()
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if info, err := rdb.Info(cctx, "server").Result(); err == nil {
			for _, line := range strings.Split(info, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
					m.Redis = v
				}
			}
		}
	}
	return m
}

// --- the platform under test ---

type benchEnv struct {
	o        *benchOptions
	name     string
	p        *Platform
	base     string
	addr     string
	token    string
	client   *http.Client
	keyspace string
	rdb      *redis.Client
	dir      string
	log      *slog.Logger
}

// benchCatalog is the built-in seed with stock that lasts the run and a
// fleet of drivers per restaurant (the MQTT devices). With restaurants
// above the seed's count, copies of the seed's restaurants (new ids for
// them, their chefs and drivers, a few hundred metres apart) make up the
// number: a chain taking thousands of orders a second has that many
// kitchens, and each restaurant's documents (kitchen display, dashboard)
// are hot aggregates.
func benchCatalog(driversPerRestaurant, restaurants int) ([]byte, error) {
	seed, err := json.Marshal(catalog.Default())
	if err != nil {
		return nil, err
	}
	var c catalog.Catalog
	if err := json.Unmarshal(seed, &c); err != nil {
		return nil, err
	}
	base := len(c.Restaurants)
	for n := base; n < restaurants; n++ {
		var r catalog.Restaurant
		b, _ := json.Marshal(c.Restaurants[n%base])
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, err
		}
		suffix := fmt.Sprintf("-%d", n/base+1)
		r.ID += suffix
		r.Name += fmt.Sprintf(" (%d)", n/base+1)
		r.Location.Latitude += 0.003 * float64(n/base)
		for i := range r.Chefs {
			r.Chefs[i].ID = r.ID + "-chef-" + strconv.Itoa(i+1)
		}
		for i := range r.Drivers {
			r.Drivers[i].ID = r.ID + "-driver-" + strconv.Itoa(i+1)
		}
		c.Restaurants = append(c.Restaurants, r)
	}
	for i := range c.Restaurants {
		r := &c.Restaurants[i]
		for ing := range r.Stock {
			r.Stock[ing] = 50_000_000
		}
		vehicles := []string{"car", "bike", "scooter"}
		for n := len(r.Drivers); n < driversPerRestaurant; n++ {
			r.Drivers = append(r.Drivers, catalog.Driver{ID: fmt.Sprintf("%s-bench-%d", r.ID, n+1), Name: fmt.Sprintf("Bench driver %d", n+1), Vehicle: vehicles[n%len(vehicles)]})
		}
	}
	return json.Marshal(c)
}

func benchStart(ctx context.Context, o *benchOptions, name string, timeScale float64, withMQTT bool, driversPerRestaurant int) (*benchEnv, error) {
	dir, err := os.MkdirTemp(o.dataDir, "pizza-bench-"+name+"-")
	if err != nil {
		return nil, err
	}
	logw := o.stderr
	if o.logLevel == "none" {
		logw = io.Discard
	}
	e := &benchEnv{o: o, name: name, dir: dir, log: service.NewLogger(logw, "text", o.logLevel).With("bench", name)}
	fail := func(err error) (*benchEnv, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	cat, err := benchCatalog(driversPerRestaurant, o.restaurants)
	if err != nil {
		return fail(err)
	}
	catPath := filepath.Join(dir, "catalog.json")
	if err := os.WriteFile(catPath, cat, 0o644); err != nil {
		return fail(err)
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	e.keyspace = fmt.Sprintf("bench:%s-%d:", name, time.Now().UnixNano())
	cfg := PlatformConfig{
		HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
		RedisURL: o.redisURL, Keyspace: e.keyspace, TimeScale: timeScale, Catalog: catPath,
		QCFailureRate: 0, Seed: 1, JWTSecret: hex.EncodeToString(secret), RateLimit: 1e9,
	}
	if withMQTT {
		cfg.MQTTAddr = "127.0.0.1:0"
	}
	opt, err := redis.ParseURL(o.redisURL)
	if err != nil {
		return fail(fmt.Errorf("--redis-url: %w", err))
	}
	e.rdb = redis.NewClient(opt)
	e.p = &Platform{}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := e.p.Start(sctx, cfg, e.log); err != nil {
		benchDeletePrefix(context.Background(), e.rdb, e.keyspace)
		_ = e.rdb.Close()
		return fail(fmt.Errorf("platform start: %w", err))
	}
	if e.p.keys == nil {
		e.close()
		return nil, errors.New("platform started without authentication")
	}
	e.token, err = e.p.keys.Mint(auth.Principal{Subject: "bench-operator", Role: auth.RoleOperator}, 24*time.Hour)
	if err != nil {
		e.close()
		return nil, err
	}
	e.base = e.p.HTTPURL()
	e.addr = strings.TrimPrefix(e.base, "http://")
	e.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: 90 * time.Second, DisableCompression: true,
	}}
	fmt.Fprintf(o.stderr, "bench: %s: platform up in %s (time scale %g, %d drivers per restaurant, keyspace %s, data %s)\n", name, time.Since(t0).Round(time.Millisecond), timeScale, driversPerRestaurant, e.keyspace, dir)
	return e, nil
}

func (e *benchEnv) close() {
	if e.client != nil {
		e.client.CloseIdleConnections()
	}
	// A service that does not stop must not hang the bench: report it and
	// move on.
	stopped := make(chan struct{})
	go func() { e.p.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(time.Minute):
		fmt.Fprintf(e.o.stderr, "bench: %s: WARNING: the platform did not stop within a minute; leaving it behind\n", e.name)
	}
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	benchDeletePrefix(dctx, e.rdb, e.keyspace)
	_ = e.rdb.Close()
	_ = os.RemoveAll(e.dir)
}

// profile starts a CPU profile of a scenario's main phase when asked to;
// the returned function stops it.
func (e *benchEnv) profile(r *benchRecorder) func() {
	return benchProfile(e.o, r)
}

func benchProfile(o *benchOptions, r *benchRecorder) func() {
	if o.cpuProfile == "" {
		return func() {}
	}
	path := o.cpuProfile + "-" + r.scenario + ".pprof"
	f, err := os.Create(path)
	if err != nil {
		r.logf("cpu profile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		r.logf("cpu profile: %v", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
		r.logf("CPU profile written to %s", path)
	}
}

func benchDeletePrefix(ctx context.Context, rdb *redis.Client, prefix string) {
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		rdb.Unlink(ctx, batch...)
	}
}

// do sends a request as the bench operator (or with the given token).
func (e *benchEnv) do(ctx context.Context, method, path string, body []byte, hdr map[string]string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := e.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b, err
}

func (e *benchEnv) order(ctx context.Context, id string) (ordersapi.OrderView, error) {
	var v ordersapi.OrderView
	st, _, b, err := e.do(ctx, http.MethodGet, "/api/orders/"+id, nil, nil)
	if err != nil {
		return v, err
	}
	if st != http.StatusOK {
		return v, fmt.Errorf("GET order %s: %d %s", id, st, benchTrunc(b))
	}
	return v, json.Unmarshal(b, &v)
}

func (e *benchEnv) placeOrder(ctx context.Context, body []byte, hdr map[string]string) (ordersapi.OrderView, http.Header, error) {
	var v ordersapi.OrderView
	st, h, b, err := e.do(ctx, http.MethodPost, "/api/orders", body, hdr)
	if err != nil {
		return v, nil, err
	}
	if st != http.StatusCreated {
		return v, h, fmt.Errorf("POST /api/orders: %d %s", st, benchTrunc(b))
	}
	return v, h, json.Unmarshal(b, &v)
}

func (e *benchEnv) streamLastSeq(ctx context.Context, stream string) (uint64, error) {
	return eventstore.LastSeq(ctx, e.p.js, stream)
}

// waitStable waits until a stream stops growing for a moment (the platform
// finished reacting to the load), at most limit.
func (e *benchEnv) waitStable(ctx context.Context, stream string, quiet, limit time.Duration) uint64 {
	deadline := time.Now().Add(limit)
	last, _ := e.streamLastSeq(ctx, stream)
	since := time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		benchSleep(ctx, 50*time.Millisecond)
		cur, err := e.streamLastSeq(ctx, stream)
		if err != nil {
			continue
		}
		if cur != last {
			last, since = cur, time.Now()
			continue
		}
		if time.Since(since) >= quiet {
			break
		}
	}
	return last
}

// quiet waits until the domain streams stop growing for a moment.
func (e *benchEnv) quiet(ctx context.Context) {
	for _, c := range events.DomainContexts() {
		e.waitStable(ctx, c.Stream, 300*time.Millisecond, 10*time.Second)
	}
}

func benchTrunc(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

func benchSleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// benchOrderBodies returns n valid order bodies across the restaurants.
func benchOrderBodies(cat *catalog.Catalog, n int, seed uint64) [][]byte {
	rng := mrand.New(mrand.NewPCG(seed, 7))
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		rid := cat.Restaurants[i%len(cat.Restaurants)].ID
		out = append(out, benchOrderBody(rng, cat, rid, i))
	}
	return out
}

func benchOrderBody(rng *mrand.Rand, cat *catalog.Catalog, rid string, n int) []byte {
	menu, _ := cat.MenuFor(rid)
	type line struct {
		PizzaType string   `json:"pizzaType"`
		Size      string   `json:"size"`
		Toppings  []string `json:"toppings,omitempty"`
		Quantity  int      `json:"quantity"`
	}
	var lines []line
	for j := 0; j < 1+rng.IntN(2); j++ {
		p := menu[rng.IntN(len(menu))]
		l := line{PizzaType: p.Type, Size: catalog.Sizes[rng.IntN(len(catalog.Sizes))], Quantity: 1 + rng.IntN(2)}
		if rng.IntN(3) == 0 && len(cat.Menu.Toppings) > 0 {
			l.Toppings = []string{cat.Menu.Toppings[rng.IntN(len(cat.Menu.Toppings))].Name}
		}
		lines = append(lines, l)
	}
	b, _ := json.Marshal(map[string]any{
		"customerId": fmt.Sprintf("bench-cust-%d", n), "restaurantId": rid, "items": lines, "paymentMethod": "CreditCard",
		"address": map[string]any{"street": fmt.Sprintf("%d Main St", n+1), "city": "Portland", "state": "OR", "zipCode": "97201",
			"coordinates": map[string]float64{"latitude": 45.50 + rng.Float64()*0.05, "longitude": -122.70 + rng.Float64()*0.08}},
	})
	return b
}

// --- load generation and statistics ---

type benchLat struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *benchLat) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *benchLat) sorted() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s
}

func benchPct(s []time.Duration, q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func benchMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchLoad is the outcome of a load phase.
type benchLoad struct {
	ok, failed int64
	dur        time.Duration // the measured window
	lat        []time.Duration
	firstErr   error
}

func (l benchLoad) rate() float64 { return float64(l.ok) / l.dur.Seconds() }

// benchClosedLoop runs workers that each call op back to back for dur and
// counts the calls that completed inside the window.
func benchClosedLoop(ctx context.Context, workers int, dur time.Duration, op func(ctx context.Context, worker, i int) error) benchLoad {
	var (
		ok, failed atomic.Int64
		lat        benchLat
		errMu      sync.Mutex
		firstErr   error
		wg         sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(dur)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				t := time.Now()
				err := op(ctx, w, i)
				done := time.Now()
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					benchSleep(ctx, time.Millisecond)
					continue
				}
				if done.Before(deadline) {
					ok.Add(1)
					lat.add(done.Sub(t))
				}
			}
		}()
	}
	wg.Wait()
	return benchLoad{ok: ok.Load(), failed: failed.Load(), dur: dur, lat: lat.sorted(), firstErr: firstErr}
}

// benchOpenLoop calls op on a fixed timetable (rate per second, for dur),
// each call in its own goroutine, and measures every latency from the
// scheduled time, not from when the call happened to start: a stalled
// system is charged for the requests it kept waiting (no coordinated
// omission). Calls beyond maxInFlight are counted as failed.
func benchOpenLoop(ctx context.Context, rate float64, dur time.Duration, maxInFlight int64, op func(ctx context.Context, i int) error) benchLoad {
	var (
		ok, failed, inflight atomic.Int64
		lat                  benchLat
		errMu                sync.Mutex
		firstErr             error
		wg                   sync.WaitGroup
	)
	interval := time.Duration(float64(time.Second) / rate)
	n := int(dur.Seconds() * rate)
	start := time.Now().Add(5 * time.Millisecond)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			benchSleep(ctx, d)
		}
		if inflight.Load() >= maxInFlight {
			failed.Add(1)
			continue
		}
		inflight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer inflight.Add(-1)
			err := op(ctx, i)
			if err != nil {
				failed.Add(1)
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
				return
			}
			ok.Add(1)
			lat.add(time.Since(at))
		}()
	}
	wg.Wait()
	return benchLoad{ok: ok.Load(), failed: failed.Load(), dur: dur, lat: lat.sorted(), firstErr: firstErr}
}

// --- 1. intake ---

func benchIntake(ctx context.Context, o *benchOptions, r *benchRecorder) error {
	c := o.concurrency
	// Every phase runs on a fresh platform (an empty log, an empty kitchen):
	// orders placed by one phase queue in the kitchens and would slow the
	// next one down. On each, the raw engine goes first.
	var profiled bool
	var rawLoad, batchLoad benchLoad
	phase := func(rate float64) error {
		e, err := benchStart(ctx, o, "intake", 1, false, o.drivers)
		if err != nil {
			return err
		}
		defer e.close()
		ip, err := newBenchIntakePlatform(ctx, e)
		if err != nil {
			return err
		}
		if rate < 0 {
			// The closed-loop baselines get a platform of their own: a
			// stream that just took hundreds of thousands of appends is
			// not the one the orders meet.
			r.logf("raw append baseline, %d clients, %s", c, o.duration)
			raw := benchClosedLoop(ctx, c, o.duration, func(ctx context.Context, _, _ int) error { return ip.rawAppend(ctx) })
			if raw.ok == 0 {
				return fmt.Errorf("no raw append: %v", raw.firstErr)
			}
			r.logf("  %.0f appends/s, p50 %.2f ms, p99 %.2f ms", raw.rate(), benchMS(benchPct(raw.lat, .5)), benchMS(benchPct(raw.lat, .99)))
			r.logf("raw atomic-batch baseline (2 messages), %d clients, %s", c, o.duration)
			batch := benchClosedLoop(ctx, c, o.duration, func(ctx context.Context, _, _ int) error { return ip.rawBatch(ctx) })
			r.logf("  %.0f batches/s, p50 %.2f ms, p99 %.2f ms, %d failed (%v)", batch.rate(), benchMS(benchPct(batch.lat, .5)), benchMS(benchPct(batch.lat, .99)), batch.failed, batch.firstErr)
			rawLoad, batchLoad = raw, batch
			return nil
		}
		if rate == 0 {
			raw, batch := rawLoad, batchLoad
			if err := ip.warmUp(ctx, r); err != nil {
				return err
			}
			r.logf("closed loop, %d clients, %s", c, o.duration)
			ip.pending.Store(0)
			postLabels := map[string]string{"route": "/api/orders", "method": "POST"}
			hs0, hn0 := benchHistogram(e, "pizza_http_request_duration_seconds", postLabels)
			ws0, wn0 := benchHistogram(e, "pizza_gateway_read_your_writes_wait_seconds", nil)
			var cpu0, cpu1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &cpu0)
			stop := func() {}
			if !profiled {
				stop, profiled = e.profile(r), true
			}
			cl := benchClosedLoop(ctx, c, o.duration, func(ctx context.Context, _, _ int) error { return ip.place(ctx) })
			stop()
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &cpu1)
			if cl.ok == 0 {
				return fmt.Errorf("no order placed: %v", cl.firstErr)
			}
			cpuUsed := time.Duration(cpu1.Utime.Nano()+cpu1.Stime.Nano()-cpu0.Utime.Nano()-cpu0.Stime.Nano()) / time.Duration(runtime.NumCPU())
			hs1, hn1 := benchHistogram(e, "pizza_http_request_duration_seconds", postLabels)
			ws1, wn1 := benchHistogram(e, "pizza_gateway_read_your_writes_wait_seconds", nil)
			serverMean := (hs1 - hs0) / float64(max(hn1-hn0, 1)) * 1000
			rywMean := (ws1 - ws0) / float64(max(wn1-wn0, 1)) * 1000
			r.logf("  %.0f orders/s, p50 %.2f ms, p99 %.2f ms, handler %.1f ms (read-your-writes wait %.1f ms), CPU %.0f%%, %d failed (%v)",
				cl.rate(), benchMS(benchPct(cl.lat, .5)), benchMS(benchPct(cl.lat, .99)), serverMean, rywMean, 100*cpuUsed.Seconds()/o.duration.Seconds(), cl.failed, cl.firstErr)
			note := fmt.Sprintf("closed loop, %d clients; baseline: raw JetStream appends (one message, expected-sequence 0, Msg-Id), same clients", c)
			r.addVs(fmt.Sprintf("max sustained orders/s (C=%d)", c), "orders/s", cl.rate(), raw.rate(), note)
			r.addVs(fmt.Sprintf("max sustained orders/s vs raw atomic batches (C=%d)", c), "orders/s", cl.rate(), batch.rate(),
				"baseline: raw JetStream atomic-batch appends of two messages (how a placement was stored before order_placed.v3; commands with several events still are), same clients")
			r.addVs(fmt.Sprintf("closed-loop p50 latency (C=%d)", c), "ms", benchMS(benchPct(cl.lat, .5)), benchMS(benchPct(raw.lat, .5)), "")
			r.addVs(fmt.Sprintf("closed-loop p99 latency (C=%d)", c), "ms", benchMS(benchPct(cl.lat, .99)), benchMS(benchPct(raw.lat, .99)), "")
			r.add("closed-loop mean time in the gateway handler", "ms", serverMean, "pizza_http_request_duration_seconds, POST /api/orders")
			r.add("closed-loop mean read-your-writes wait", "ms", rywMean, "pizza_gateway_read_your_writes_wait_seconds: the part of the handler spent waiting for the read model")
			r.add("closed-loop CPU busy (whole process)", "%", 100*cpuUsed.Seconds()/o.duration.Seconds(), fmt.Sprintf("getrusage over the phase, %% of %d CPUs (platform and load generator; Redis is another process)", runtime.NumCPU()))
			r.add("closed-loop failed requests", "requests", float64(cl.failed), fmt.Sprint(cl.firstErr))
			r.add("closed-loop 201s before the read model caught up", "requests", float64(ip.pending.Load()), "Pizza-Read-Your-Writes: pending")
			return nil
		}
		r.logf("raw append baseline at %g/s, %s", rate, o.duration)
		rl := benchOpenLoop(ctx, rate, o.duration, 4000, func(ctx context.Context, _ int) error { return ip.rawAppend(ctx) })
		if err := ip.warmUp(ctx, r); err != nil {
			return err
		}
		// The warm-up places orders as fast as the platform takes them;
		// their reactions (reservations, tickets, the saga, the
		// projectors) would still be running during the first second or
		// two of the measured phase, and its latencies would be those of
		// a platform digesting a burst, not of one at this rate.
		t0 := time.Now()
		e.quiet(ctx)
		r.logf("warm-up's reactions settled in %s", time.Since(t0).Round(time.Millisecond))
		r.logf("open loop at %g orders/s, %s", rate, o.duration)
		ip.pending.Store(0)
		var stopTrace func() []sdktrace.ReadOnlySpan
		if o.traceTail && rate == o.rates[0] {
			r.logf("  recording the platform's spans (--trace-tail)")
			stopTrace = benchTraceStart()
		}
		ol := benchOpenLoop(ctx, rate, o.duration, 4000, func(ctx context.Context, _ int) error { return ip.place(ctx) })
		r.logf("  achieved %.0f/s, p50 %.2f ms, p99 %.2f ms, p999 %.2f ms, %d failed (%v)", ol.rate(), benchMS(benchPct(ol.lat, .5)), benchMS(benchPct(ol.lat, .99)), benchMS(benchPct(ol.lat, .999)), ol.failed, ol.firstErr)
		tag := fmt.Sprintf("@%g/s", rate)
		if stopTrace != nil {
			benchReportTail(r, tag, stopTrace())
		}
		r.addVs("achieved orders/s "+tag, "orders/s", ol.rate(), rl.rate(), "open loop, constant rate, fresh platform; latency from the scheduled send time; baseline: raw appends at the same rate")
		r.addVs("p50 latency "+tag, "ms", benchMS(benchPct(ol.lat, .5)), benchMS(benchPct(rl.lat, .5)), "")
		r.addVs("p99 latency "+tag, "ms", benchMS(benchPct(ol.lat, .99)), benchMS(benchPct(rl.lat, .99)), "")
		r.addVs("p999 latency "+tag, "ms", benchMS(benchPct(ol.lat, .999)), benchMS(benchPct(rl.lat, .999)), "")
		r.add("failed requests "+tag, "requests", float64(ol.failed), fmt.Sprint(ol.firstErr))
		return nil
	}
	if err := phase(-1); err != nil { // raw closed-loop baselines
		return err
	}
	if err := phase(0); err != nil { // closed loop
		return err
	}
	for _, rate := range o.rates {
		if err := phase(rate); err != nil {
			return err
		}
	}
	return nil
}

// benchIntakePlatform places orders on one platform and appends to the raw
// engine underneath it.
type benchIntakePlatform struct {
	e                 *benchEnv
	bodies            [][]byte
	run               string
	seq, rawSeq       atomic.Int64
	pending           atomic.Int64
	rawCtx            events.Context
	rawBody, rawBody2 []byte
}

func newBenchIntakePlatform(ctx context.Context, e *benchEnv) (*benchIntakePlatform, error) {
	ip := &benchIntakePlatform{e: e, bodies: benchOrderBodies(e.p.cat, 512, 1), run: strconv.FormatInt(time.Now().UnixNano(), 36),
		rawCtx: events.Context{Name: "bench raw appends", Stream: "BENCHRAW", SubjectPrefix: "benchraw"}}
	// The raw engine: a stream configured like the domain streams, over the
	// in-process connection the services use, fed real placement events
	// (the first order's two messages).
	if _, err := e.p.js.CreateOrUpdateStream(ctx, eventstore.DomainStreamConfig(ip.rawCtx, eventstore.StreamOptions{Storage: jetstream.FileStorage})); err != nil {
		return nil, fmt.Errorf("raw stream: %w", err)
	}
	if err := ip.place(ctx); err != nil {
		return nil, fmt.Errorf("first order: %w", err)
	}
	if st, err := e.p.js.Stream(ctx, events.Orders.Stream); err == nil {
		if m, err := st.GetMsg(ctx, 1); err == nil {
			ip.rawBody = m.Data
		}
		if m, err := st.GetMsg(ctx, 2); err == nil {
			ip.rawBody2 = m.Data
		}
	}
	if len(ip.rawBody) == 0 {
		ip.rawBody = bytes.Repeat([]byte("x"), 700)
	}
	if len(ip.rawBody2) == 0 {
		ip.rawBody2 = bytes.Repeat([]byte("y"), 300)
	}
	return ip, nil
}

// place is POST /api/orders with a fresh Idempotency-Key; it counts 201s
// answered before the read model caught up.
func (ip *benchIntakePlatform) place(ctx context.Context) error {
	n := ip.seq.Add(1)
	_, h, err := ip.e.placeOrder(ctx, ip.bodies[int(n)%len(ip.bodies)], map[string]string{"Idempotency-Key": "bench-" + ip.run + "-" + strconv.FormatInt(n, 10)})
	if err == nil && h.Get("Pizza-Read-Your-Writes") != "ok" {
		ip.pending.Add(1)
	}
	return err
}

func (ip *benchIntakePlatform) warmUp(ctx context.Context, r *benchRecorder) error {
	warm := min(time.Second, ip.e.o.duration/4)
	r.logf("warm-up %s", warm)
	w := benchClosedLoop(ctx, ip.e.o.concurrency, warm, func(ctx context.Context, _, _ int) error { return ip.place(ctx) })
	if w.ok > 0 {
		return nil
	}
	// On a loaded machine one placement can outlast a short warm-up (only
	// orders answered within it count): one more must still go through.
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ip.place(pctx); err != nil {
		return fmt.Errorf("no order placed during the warm-up: %w", errors.Join(w.firstErr, err))
	}
	return nil
}

// rawAppend appends one message the way the event store appends one event:
// expected last subject sequence 0 and a Msg-Id, on a fresh subject.
func (ip *benchIntakePlatform) rawAppend(ctx context.Context) error {
	id := ip.run + "-" + strconv.FormatInt(ip.rawSeq.Add(1), 10)
	m := nats.NewMsg(ip.rawCtx.Subject(id))
	m.Data = ip.rawBody
	m.Header.Set(events.HeaderType, "order_placed")
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	m.Header.Set(jetstream.MsgIDHeader, id)
	_, err := ip.e.p.js.PublishMsg(ctx, m)
	return err
}

// rawBatch appends two messages as one JetStream atomic batch, the way the
// orders service stored a placement before order_placed.v3 (and still
// stores a command with several events).
func (ip *benchIntakePlatform) rawBatch(ctx context.Context) error {
	id := ip.run + "-b" + strconv.FormatInt(ip.rawSeq.Add(1), 10)
	m1 := nats.NewMsg(ip.rawCtx.Subject(id))
	m1.Data = ip.rawBody
	m1.Header.Set(events.HeaderType, "order_placed")
	m1.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	m1.Header.Set(jetstream.MsgIDHeader, id+"-0")
	m1.Header.Set("Nats-Batch-Id", id)
	m1.Header.Set("Nats-Batch-Sequence", "1")
	if err := ip.e.p.nc.PublishMsg(m1); err != nil {
		return err
	}
	m2 := nats.NewMsg(ip.rawCtx.Subject(id))
	m2.Data = ip.rawBody2
	m2.Header.Set(events.HeaderType, "order_validated")
	m2.Header.Set(jetstream.MsgIDHeader, id+"-1")
	m2.Header.Set("Nats-Batch-Id", id)
	m2.Header.Set("Nats-Batch-Sequence", "2")
	m2.Header.Set("Nats-Batch-Commit", "1")
	resp, err := ip.e.p.nc.RequestMsgWithContext(ctx, m2)
	if err != nil {
		return err
	}
	var ack struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return err
	}
	if ack.Error != nil {
		return errors.New(ack.Error.Description)
	}
	return nil
}

// --- 2. lifecycle ---

type benchLifecycleStats struct {
	delivered, placed, failures int64
	window                      time.Duration
	lat                         []time.Duration
	firstErr                    error
}

// benchLifecycleLoad places orders (closed loop, at most 4×concurrency
// undelivered at once) for dur and plays the drivers: every order a driver
// got is picked up and delivered over HTTP. Deliveries are counted after a
// warm-up of a quarter of dur (at most 2 s) until dur; should none have
// arrived by then (very short runs), the window stays open until the first
// one does (at most a minute).
//
// With drain > 0 the drivers go on after the window, for at most drain,
// until every placed order is delivered (nothing stays active).
func benchLifecycleLoad(ctx context.Context, e *benchEnv, dur, drain time.Duration) benchLifecycleStats {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := e.o
	bodies := benchOrderBodies(e.p.cat, 512, 2)
	var (
		placedAt                              sync.Map // order id → time.Time
		inflight, placed, delivered, failures atomic.Int64
		lat                                   benchLat
		errMu                                 sync.Mutex
		firstErr                              error
	)
	noteErr := func(err error) {
		failures.Add(1)
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	window := int64(max(4*o.concurrency, 16))
	start := time.Now()
	warm := min(2*time.Second, dur/4)
	countFrom, end := start.Add(warm), start.Add(dur)
	var closed atomic.Bool // the counting window is over

	var placers sync.WaitGroup
	for w := 0; w < o.concurrency; w++ {
		placers.Add(1)
		go func() {
			defer placers.Done()
			for i := w; time.Now().Before(end) && ctx.Err() == nil; i += o.concurrency {
				if inflight.Load() >= window {
					benchSleep(ctx, 2*time.Millisecond)
					continue
				}
				inflight.Add(1)
				t := time.Now()
				v, _, err := e.placeOrder(ctx, bodies[i%len(bodies)], nil)
				if err != nil {
					inflight.Add(-1)
					noteErr(err)
					benchSleep(ctx, 5*time.Millisecond)
					continue
				}
				placedAt.Store(v.OrderID, t)
				placed.Add(1)
			}
		}()
	}

	stopDrivers := make(chan struct{})
	var drivers sync.WaitGroup
	sem := make(chan struct{}, max(4, o.concurrency/2))
	for _, rest := range e.p.cat.Restaurants {
		for _, status := range []string{"DriverAssigned", "OutForDelivery"} {
			drivers.Add(1)
			go func() {
				defer drivers.Done()
				verb := "pickup"
				if status == "OutForDelivery" {
					verb = "deliver"
				}
				for {
					select {
					case <-stopDrivers:
						return
					case <-ctx.Done():
						return
					default:
					}
					st, _, body, err := e.do(ctx, http.MethodGet, "/api/restaurants/"+rest.ID+"/orders?status="+status+"&limit=100", nil, nil)
					if err != nil || st != http.StatusOK {
						if ctx.Err() == nil {
							noteErr(fmt.Errorf("list %s %s: %d %v %s", rest.ID, status, st, err, benchTrunc(body)))
						}
						benchSleep(ctx, 20*time.Millisecond)
						continue
					}
					var page struct {
						Orders []ordersapi.OrderView `json:"orders"`
					}
					_ = json.Unmarshal(body, &page)
					var batch sync.WaitGroup
					for _, ov := range page.Orders {
						if ov.AssignedDriverID == nil {
							continue
						}
						sem <- struct{}{}
						batch.Add(1)
						go func() {
							defer batch.Done()
							defer func() { <-sem }()
							st, _, b, err := e.do(ctx, http.MethodPost, "/api/drivers/"+*ov.AssignedDriverID+"/"+verb, []byte(`{"orderId":"`+ov.OrderID+`"}`), nil)
							switch {
							case err != nil:
								if ctx.Err() == nil {
									noteErr(err)
								}
							case st == http.StatusOK && verb == "deliver":
								if t, ok := placedAt.LoadAndDelete(ov.OrderID); ok {
									if !closed.Load() {
										if time.Now().After(countFrom) {
											delivered.Add(1)
										}
										lat.add(time.Since(t.(time.Time)))
									}
									inflight.Add(-1)
								}
							case st != http.StatusOK && st != http.StatusConflict: // 409: already done (listing lags)
								noteErr(fmt.Errorf("%s %s: %d %s", verb, ov.OrderID, st, benchTrunc(b)))
							}
						}()
					}
					batch.Wait()
					if len(page.Orders) == 0 {
						benchSleep(ctx, 5*time.Millisecond)
					}
				}
			}()
		}
	}
	placers.Wait()
	if d := time.Until(end); d > 0 {
		benchSleep(ctx, d)
	}
	for limit := time.Now().Add(time.Minute); delivered.Load() == 0 && placed.Load() > 0 && time.Now().Before(limit) && ctx.Err() == nil; {
		benchSleep(ctx, 5*time.Millisecond)
	}
	closed.Store(true)
	windowLen := time.Since(countFrom)
	for limit := time.Now().Add(drain); inflight.Load() > 0 && time.Now().Before(limit) && ctx.Err() == nil; {
		benchSleep(ctx, 10*time.Millisecond)
	}
	close(stopDrivers)
	drivers.Wait()
	return benchLifecycleStats{delivered: delivered.Load(), placed: placed.Load(), failures: failures.Load(), window: windowLen, lat: lat.sorted(), firstErr: firstErr}
}

func benchLifecycle(ctx context.Context, o *benchOptions, r *benchRecorder) error {
	e, err := benchStart(ctx, o, "lifecycle", o.timeScale, false, o.drivers)
	if err != nil {
		return err
	}
	defer e.close()
	r.logf("placing and delivering for %s (%d placing clients)", o.duration, o.concurrency)
	stop := e.profile(r)
	st := benchLifecycleLoad(ctx, e, o.duration, 0)
	stop()
	r.logf("  %d placed, %d delivered in the window, %d failures (%v)", st.placed, st.delivered, st.failures, st.firstErr)
	if st.delivered == 0 {
		return fmt.Errorf("no order delivered (%d placed, first error: %v)", st.placed, st.firstErr)
	}
	note := fmt.Sprintf("time scale %g, no QC failures, drivers played over HTTP; counted after a warm-up", o.timeScale)
	r.add("delivered orders/s", "orders/s", float64(st.delivered)/st.window.Seconds(), note)
	r.add("placed orders/s", "orders/s", float64(st.placed)/o.duration.Seconds(), fmt.Sprintf("at most %d undelivered at once", max(4*o.concurrency, 16)))
	r.add("placement → Delivered p50", "ms", benchMS(benchPct(st.lat, .5)), "")
	r.add("placement → Delivered p99", "ms", benchMS(benchPct(st.lat, .99)), "")
	r.add("failed requests", "requests", float64(st.failures), fmt.Sprint(st.firstErr))
	return nil
}

// --- 3. telemetry ---

// benchMQTT connects one MQTT 3.1.1 client per id (clean session, no
// reconnect), 32 at a time.
func benchMQTT(ctx context.Context, addr string, ids []string, clientPrefix string, secret func(id string) string) ([]paho.Client, error) {
	clients := make([]paho.Client, len(ids))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientPrefix + id).
				SetUsername(id).SetPassword(secret(id)).SetAutoReconnect(false).SetConnectRetry(false).
				SetCleanSession(true).SetConnectTimeout(15 * time.Second).SetKeepAlive(60 * time.Second).SetWriteTimeout(15 * time.Second)
			c := paho.NewClient(opts)
			tok := c.Connect()
			if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("MQTT connect %s: %v", id, tok.Error())
				}
				mu.Unlock()
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	if firstErr != nil || ctx.Err() != nil {
		benchMQTTClose(clients)
		return nil, errors.Join(firstErr, ctx.Err())
	}
	return clients, nil
}

func benchMQTTClose(clients []paho.Client) {
	var wg sync.WaitGroup
	for _, c := range clients {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); c.Disconnect(100) }()
	}
	wg.Wait()
}

func benchFix(ci int, k int64) []byte {
	return fmt.Appendf(nil, `{"latitude":%.6f,"longitude":%.6f,"speed":24,"timestamp":"%s"}`,
		45.50+float64(k%40_000)*1e-6, -122.70+float64(ci%1000)*1e-5, time.Now().UTC().Format(time.RFC3339Nano))
}

type benchMQTTPhase struct {
	stored, acked, sent float64 // per second
	errors              int64
	firstErr            error
}

// benchPublish makes every client publish its GPS fixes back to back for
// dur (QoS 1: each waits for its PUBACK) and counts what count() reports
// as stored inside the window.
func benchPublish(ctx context.Context, clients []paho.Client, ids []string, qos byte, rate float64, dur time.Duration, count func() (int64, error)) (benchMQTTPhase, error) {
	var sent, acked, errs atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	c0, err := count()
	if err != nil {
		return benchMQTTPhase{}, err
	}
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	for ci, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := mqttapi.TopicLocation(ids[ci])
			// Devices start spread over one interval; a device that falls
			// behind does not burst to catch up (it would exceed its rate).
			var interval time.Duration
			next := start
			if rate > 0 {
				interval = time.Duration(float64(time.Second) / rate)
				next = start.Add(time.Duration(mrand.Int64N(int64(interval))))
			}
			for k := int64(0); time.Now().Before(end) && ctx.Err() == nil; k++ {
				if rate > 0 {
					if d := time.Until(next); d > 0 {
						benchSleep(ctx, d)
					}
					if now := time.Now(); now.After(next) {
						next = now
					}
					next = next.Add(interval)
					if !time.Now().Before(end) {
						return
					}
				}
				tok := c.Publish(topic, qos, false, benchFix(ci, k))
				if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
					errs.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("publish %s: %v", ids[ci], tok.Error())
					}
					errMu.Unlock()
					if !c.IsConnectionOpen() {
						return
					}
					continue
				}
				if time.Now().Before(end) {
					sent.Add(1)
					if qos > 0 {
						acked.Add(1)
					}
				}
			}
		}()
	}
	benchSleep(ctx, time.Until(end))
	c1, err := count()
	wg.Wait()
	if err != nil {
		return benchMQTTPhase{}, err
	}
	s := dur.Seconds()
	return benchMQTTPhase{stored: float64(c1-c0) / s, acked: float64(acked.Load()) / s, sent: float64(sent.Load()) / s, errors: errs.Load(), firstErr: firstErr}, nil
}

// benchCountHook is the baseline broker's only work: count publishes.
type benchCountHook struct {
	mochi.HookBase
	n atomic.Int64
}

func (h *benchCountHook) ID() string { return "bench-count" }

func (h *benchCountHook) Provides(b byte) bool { return b == mochi.OnPublish }

func (h *benchCountHook) OnPublish(_ *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	h.n.Add(1)
	return pk, nil
}

// benchHistogram returns the sum and count of a histogram's series that
// carry every given label.
func benchHistogram(e *benchEnv, name string, labels map[string]string) (sum float64, count uint64) {
	mfs, err := e.p.metrics.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == k && l.GetValue() == v
				}
				if !found {
					continue series
				}
			}
			sum += m.GetHistogram().GetSampleSum()
			count += m.GetHistogram().GetSampleCount()
		}
	}
	return sum, count
}

func benchCounter(e *benchEnv, name, label, value string) float64 {
	mfs, err := e.p.metrics.Gather()
	if err != nil {
		return 0
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

func benchTelemetry(ctx context.Context, o *benchOptions, r *benchRecorder) error {
	restaurants := max(o.restaurants, len(catalog.Default().Restaurants))
	e, err := benchStart(ctx, o, "telemetry", 3000, true, max(o.drivers, (o.mqttClients+restaurants-1)/restaurants))
	if err != nil {
		return err
	}
	// The platform stops before the baseline runs (a QoS 0 backlog would
	// still be draining into it).
	closed := false
	closeEnv := func() {
		if !closed {
			closed = true
			e.close()
		}
	}
	defer closeEnv()
	creds, err := e.p.mqtt.SeedDemoCredentials(ctx)
	if err != nil {
		return err
	}
	var ids []string
	for _, rest := range e.p.cat.Restaurants {
		for _, d := range rest.Drivers {
			ids = append(ids, d.ID)
		}
	}
	// Spread the devices over the restaurants.
	slices.SortStableFunc(ids, func(a, b string) int { return benchDriverIndex(a) - benchDriverIndex(b) })
	ids = ids[:min(o.mqttClients, len(ids))]
	r.logf("connecting %d MQTT clients to the bridge", len(ids))
	clients, err := benchMQTT(ctx, e.p.MQTTAddr(), ids, "bench-", func(id string) string { return creds[id] })
	if err != nil {
		return err
	}
	stored := func() (int64, error) {
		s, err := e.streamLastSeq(ctx, events.Telemetry.Stream)
		return int64(s), err
	}
	phases := map[byte]benchMQTTPhase{}
	limited := map[byte]float64{}
	var dev []time.Duration
	var backlogPositions, backlogConsumers int64
	var catchUp time.Duration
	// QoS 1 first: QoS 0 has no flow control, and a backlog left in the
	// sockets would leak into the next phase.
	for _, qos := range []byte{1, 0} {
		if qos == 0 {
			// Device → SSE: a customer follows an order out for delivery
			// while its driver's phone reports positions.
			r.logf("device → SSE latency")
			if dev, err = benchDeviceToSSE(ctx, e, creds, o.duration); err != nil {
				benchMQTTClose(clients)
				return fmt.Errorf("device → SSE: %w", err)
			}
			r.logf("  %d samples, p50 %.2f ms, p99 %.2f ms", len(dev), benchMS(benchPct(dev, .5)), benchMS(benchPct(dev, .99)))
		}
		r.logf("QoS %d into the platform, %s", qos, o.duration)
		before := benchCounter(e, "pizza_mqtt_messages_total", "outcome", "rate_limited")
		var stop func()
		if qos == 1 {
			stop = e.profile(r)
		}
		ph, err := benchPublish(ctx, clients, ids, qos, o.mqttRate, o.duration, stored)
		if stop != nil {
			stop()
		}
		if err != nil {
			benchMQTTClose(clients)
			return err
		}
		if qos == 1 {
			// TELEMETRY's readers (the drivers' positions read model and
			// follower, the orders tracker behind the tracking streams) may
			// still be working through the phase's fixes: measure how far
			// behind they are, and let the read model catch up before
			// device → SSE is timed.
			t0 := time.Now()
			backlogPositions, backlogConsumers = benchTelemetryBehind(ctx, e, r, nil)
			last := e.waitStable(ctx, events.Telemetry.Stream, 500*time.Millisecond, 30*time.Second)
			// A consumer whose deliveries stopped for 3 s with messages
			// pending is not reading (an ordered consumer left behind by
			// a reset): it is not waited for.
			progress := map[string]benchProgress{}
			for time.Since(t0) < time.Minute && ctx.Err() == nil {
				if p, c := benchTelemetryBehind(ctx, e, nil, progress); p == 0 && c == 0 {
					break
				}
				benchSleep(ctx, 100*time.Millisecond)
			}
			catchUp = time.Since(t0)
			r.logf("  behind at the end of the phase: positions read model %d fixes, consumers up to %d (TELEMETRY at %d); all caught up %s after it",
				backlogPositions, backlogConsumers, last, catchUp.Round(time.Millisecond))
		}
		limited[qos] = benchCounter(e, "pizza_mqtt_messages_total", "outcome", "rate_limited") - before
		phases[qos] = ph
		r.logf("  stored %.0f/s, sent %.0f/s, PUBACKed %.0f/s, %.0f dropped by the per-connection rate limit, %d errors (%v)", ph.stored, ph.sent, ph.acked, limited[qos], ph.errors, ph.firstErr)
	}
	benchMQTTClose(clients)
	closeEnv()

	// The bare broker, same clients, a counting hook.
	r.logf("baseline: bare Mochi broker with a counting hook")
	base := map[byte]benchMQTTPhase{}
	{
		srv := mochi.New(&mochi.Options{InlineClient: false, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		_ = srv.AddHook(new(mochiauth.AllowHook), nil)
		hook := &benchCountHook{}
		_ = srv.AddHook(hook, nil)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		if err := srv.AddListener(listeners.NewNet("bench-tcp", l)); err != nil {
			return err
		}
		go func() { _ = srv.Serve() }()
		bclients, err := benchMQTT(ctx, l.Addr().String(), ids, "bench-", func(string) string { return "x" })
		if err != nil {
			_ = mqttbridge.CloseBroker(srv, 5*time.Second, "bench-tcp")
			return err
		}
		for _, qos := range []byte{1, 0} {
			ph, err := benchPublish(ctx, bclients, ids, qos, 0, o.duration, func() (int64, error) { return hook.n.Load(), nil })
			if err != nil {
				benchMQTTClose(bclients)
				_ = mqttbridge.CloseBroker(srv, 5*time.Second, "bench-tcp")
				return err
			}
			base[qos] = ph
			r.logf("  QoS %d: %.0f/s received", qos, ph.stored)
		}
		benchMQTTClose(bclients)
		_ = mqttbridge.CloseBroker(srv, 5*time.Second, "bench-tcp")
	}
	offered := "as fast as acknowledged"
	if o.mqttRate > 0 {
		offered = fmt.Sprintf("%g fixes/s each (%.0f/s offered)", o.mqttRate, o.mqttRate*float64(len(ids)))
	}
	for _, qos := range []byte{0, 1} {
		note := fmt.Sprintf("%d MQTT 3.1.1 devices, %s; value: fixes stored in TELEMETRY; baseline: the same clients as fast as acknowledged, publishes counted by the bare broker", len(ids), offered)
		if qos == 1 {
			note = "each device waits for its PUBACK (sent after the durable append)"
		}
		r.addVs(fmt.Sprintf("QoS %d fixes/s into JetStream", qos), "msgs/s", phases[qos].stored, base[qos].stored, note)
		r.add(fmt.Sprintf("QoS %d fixes dropped by the per-connection rate limit", qos), "msgs", limited[qos], "pizza_mqtt_messages_total{outcome=rate_limited}")
	}
	r.addVs("QoS 1 PUBACKs/s at the devices", "msgs/s", phases[1].acked, base[1].acked, "")
	r.add("MQTT devices", "clients", float64(len(ids)), offered)
	r.add("device → SSE p50", "ms", benchMS(benchPct(dev, .5)), fmt.Sprintf("%d samples: MQTT publish → `event: driver` frame on the order's tracking stream", len(dev)))
	r.add("device → SSE p99", "ms", benchMS(benchPct(dev, .99)), "")
	r.add("QoS 1: positions read model behind at the end", "fixes", float64(backlogPositions), "TELEMETRY last sequence − driver-positions checkpoint")
	r.add("QoS 1: TELEMETRY consumers behind at the end", "fixes", float64(backlogConsumers), "largest num_pending of the stream's consumers (drivers follower, orders tracker, …)")
	r.add("QoS 1: TELEMETRY readers caught up after the end", "ms", benchMS(catchUp), "device → SSE is timed once they have")
	return nil
}

// benchProgress is when a consumer's delivered sequence last moved.
type benchProgress struct {
	delivered uint64
	at        time.Time
}

// benchTelemetryBehind is how much of TELEMETRY its readers have not
// consumed yet: the fixes the drivers' positions read model has not
// applied, and the most messages any consumer of the stream has not been
// delivered. -1: not known. With r, each consumer's backlog is logged.
// With progress, consumers that delivered nothing for 3 s are left out.
func benchTelemetryBehind(ctx context.Context, e *benchEnv, r *benchRecorder, progress map[string]benchProgress) (positions, consumers int64) {
	last, err := e.streamLastSeq(ctx, events.Telemetry.Stream)
	if err != nil {
		return -1, -1
	}
	cp, err := e.rdb.Get(ctx, projection.CheckpointKey(e.keyspace, driversapi.PositionsModel)).Uint64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return -1, -1
	}
	st, err := e.p.js.Stream(ctx, events.Telemetry.Stream)
	if err != nil {
		return -1, -1
	}
	infos := st.ListConsumers(ctx)
	for ci := range infos.Info() {
		if r != nil {
			r.logf("    consumer %s: %d pending, delivered up to %d", ci.Name, ci.NumPending, ci.Delivered.Stream)
		}
		if progress != nil {
			p, seen := progress[ci.Name]
			if !seen || p.delivered != ci.Delivered.Stream {
				p = benchProgress{delivered: ci.Delivered.Stream, at: time.Now()}
				progress[ci.Name] = p
			}
			if time.Since(p.at) > 3*time.Second {
				continue
			}
		}
		consumers = max(consumers, int64(ci.NumPending))
	}
	if infos.Err() != nil {
		consumers = -1
	}
	return int64(last) - int64(cp), consumers
}

func benchDriverIndex(id string) int {
	if i := strings.LastIndexAny(id, "-"); i >= 0 {
		if n, err := strconv.Atoi(id[i+1:]); err == nil {
			return n
		}
	}
	return 0
}

// benchDeviceToSSE takes one order per restaurant out for delivery and,
// for dur, has each order's driver publish a position ten times a second
// (half its allowed rate), timing publish → `event: driver` frame.
func benchDeviceToSSE(ctx context.Context, e *benchEnv, creds map[string]string, dur time.Duration) ([]time.Duration, error) {
	rng := mrand.New(mrand.NewPCG(3, 4))
	type probe struct{ order, driver string }
	var probes []probe
	for i, rest := range e.p.cat.Restaurants {
		v, _, err := e.placeOrder(ctx, benchOrderBody(rng, e.p.cat, rest.ID, 900_000+i), nil)
		if err != nil {
			return nil, err
		}
		probes = append(probes, probe{order: v.OrderID})
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := range probes {
		for {
			v, err := e.order(ctx, probes[i].order)
			if err == nil && v.AssignedDriverID != nil {
				probes[i].driver = *v.AssignedDriverID
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, fmt.Errorf("order %s got no driver (status %s, %v)", probes[i].order, v.Status, err)
			}
			benchSleep(ctx, 20*time.Millisecond)
		}
		st, _, b, err := e.do(ctx, http.MethodPost, "/api/drivers/"+probes[i].driver+"/pickup", []byte(`{"orderId":"`+probes[i].order+`"}`), nil)
		if err != nil || st != http.StatusOK {
			return nil, fmt.Errorf("pickup: %d %v %s", st, err, benchTrunc(b))
		}
		for {
			v, err := e.order(ctx, probes[i].order)
			if err == nil && v.Status == "OutForDelivery" {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, fmt.Errorf("order %s is %s, not out for delivery (%v)", probes[i].order, v.Status, err)
			}
			benchSleep(ctx, 20*time.Millisecond)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lat benchLat
	var wg sync.WaitGroup
	errc := make(chan error, len(probes))
	for i, pr := range probes {
		frames, err := benchDriverFrames(sctx, e, pr.order)
		if err != nil {
			return nil, err
		}
		phones, err := benchMQTT(ctx, e.p.MQTTAddr(), []string{pr.driver}, "probe-", func(id string) string { return creds[id] })
		if err != nil {
			return nil, err
		}
		phone := phones[0]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer phone.Disconnect(100)
			end := time.Now().Add(dur)
			for k := 0; time.Now().Before(end) && sctx.Err() == nil; k++ {
				next := time.Now().Add(100 * time.Millisecond)
				lat0 := 45.5200 + float64(i)*0.001 + float64(k%5000)*1e-6
				payload := fmt.Sprintf(`{"latitude":%.6f,"longitude":-122.683000,"speed":24,"timestamp":"%s"}`, lat0, time.Now().UTC().Format(time.RFC3339Nano))
				sent := time.Now()
				tok := phone.Publish(mqttapi.TopicLocation(pr.driver), 1, false, payload)
				if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					errc <- fmt.Errorf("probe publish: %v", tok.Error())
					return
				}
				timeout := time.After(5 * time.Second)
			wait:
				for {
					select {
					case f, ok := <-frames:
						if !ok {
							errc <- errors.New("tracking stream closed")
							return
						}
						if math.Abs(f.lat-lat0) < 5e-7 {
							lat.add(f.at.Sub(sent))
							break wait
						}
					case <-timeout:
						errc <- fmt.Errorf("position %.6f of %s did not reach the tracking stream within 5s", lat0, pr.driver)
						return
					case <-sctx.Done():
						return
					}
				}
				benchSleep(sctx, time.Until(next))
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	return lat.sorted(), nil
}

type benchDriverFrame struct {
	lat float64
	at  time.Time
}

// benchDriverFrames follows an order's tracking stream and yields its
// "driver" frames with their arrival times.
func benchDriverFrames(ctx context.Context, e *benchEnv, orderID string) (<-chan benchDriverFrame, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.base+"/api/orders/"+orderID+"/track", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	res, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return nil, fmt.Errorf("track %s: %d", orderID, res.StatusCode)
	}
	out := make(chan benchDriverFrame, 64)
	go func() {
		defer close(out)
		defer res.Body.Close()
		br := bufio.NewReader(res.Body)
		for {
			ev, data, err := benchReadFrame(br)
			if err != nil {
				return
			}
			at := time.Now()
			if ev != "driver" {
				continue
			}
			var u struct {
				Latitude float64 `json:"latitude"`
			}
			if json.Unmarshal(data, &u) != nil {
				continue
			}
			select {
			case out <- benchDriverFrame{lat: u.Latitude, at: at}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// benchReadFrame reads one SSE frame (up to a blank line) and returns its
// event name and data (data lines joined). Comment-only frames come back
// with an empty name and no data.
func benchReadFrame(br *bufio.Reader) (string, []byte, error) {
	var event string
	var data []byte
	seen := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			full := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				full = append(full, line...)
			}
			line = full
		}
		if err != nil {
			return "", nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if seen {
				return event, data, nil
			}
			continue
		}
		seen = true
		switch {
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			d := line[len("data:"):]
			if len(d) > 0 && d[0] == ' ' {
				d = d[1:]
			}
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, d...)
		}
	}
}

// --- 4. fan-out ---

// The watchers run in a child process and are driven over JSON lines.
type benchWatchReq struct {
	Op        string   `json:"op"`
	Addr      string   `json:"addr,omitempty"`
	Count     int      `json:"count,omitempty"`
	Paths     []string `json:"paths,omitempty"`  // one per watcher, or one for all
	Tokens    []string `json:"tokens,omitempty"` // one per watcher, or none
	Marker    string   `json:"marker,omitempty"`
	TimeoutMS int64    `json:"timeoutMs,omitempty"`
}

type benchWatchResp struct {
	Op       string  `json:"op"`
	Opened   int     `json:"opened"`
	Err      string  `json:"err,omitempty"`
	Arrivals []int64 `json:"arrivals,omitempty"` // unix ns of the marked frame per watcher; 0: none
}

type benchWatchProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func benchStartWatchers() (*benchWatchProc, error) {
	cmd, err := benchWatchClientCommand()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the watcher process: %w", err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	return &benchWatchProc{cmd: cmd, in: in, out: sc}, nil
}

func (w *benchWatchProc) call(req benchWatchReq) (benchWatchResp, error) {
	b, _ := json.Marshal(req)
	if _, err := w.in.Write(append(b, '\n')); err != nil {
		return benchWatchResp{}, fmt.Errorf("watcher process: %w", err)
	}
	if !w.out.Scan() {
		return benchWatchResp{}, fmt.Errorf("watcher process ended: %v", w.out.Err())
	}
	var resp benchWatchResp
	if err := json.Unmarshal(w.out.Bytes(), &resp); err != nil {
		return resp, fmt.Errorf("watcher process said %q: %w", benchTrunc(w.out.Bytes()), err)
	}
	if resp.Err != "" {
		return resp, errors.New(resp.Err)
	}
	return resp, nil
}

func (w *benchWatchProc) stop() {
	_, _ = w.call(benchWatchReq{Op: "exit"})
	_ = w.in.Close()
	done := make(chan struct{})
	go func() { _ = w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = w.cmd.Process.Kill()
		<-done
	}
}

// benchMem is the process's resident memory and the Go runtime's view.
type benchMem struct {
	rss, heap, stacks int64
	goroutines        int64
}

func benchMemory() benchMem {
	runtime.GC()
	debug.FreeOSMemory()
	var m benchMem
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				m.rss = kb * 1024
			}
		}
	}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/sched/goroutines:goroutines"}}
	metrics.Read(s)
	for i, p := range []*int64{&m.heap, &m.stacks, &m.goroutines} {
		if s[i].Value.Kind() == metrics.KindUint64 {
			*p = int64(s[i].Value.Uint64())
		}
	}
	return m
}

// benchSettledMemory samples memory (after a GC) until the Go heap stops
// moving — caches of the servers (JetStream block caches, connection
// buffers) expire on timers and would otherwise be charged to the clients —
// for at most 20 s.
func benchSettledMemory(ctx context.Context) benchMem {
	prev := benchMemory()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		benchSleep(ctx, 500*time.Millisecond)
		m := benchMemory()
		d := m.heap + m.stacks - prev.heap - prev.stacks
		if d < 0 {
			d = -d
		}
		prev = m
		if d < 256<<10 {
			break
		}
	}
	return prev
}

func benchPerClient(m0, m1 benchMem, n int) benchMem {
	k := int64(n)
	return benchMem{rss: (m1.rss - m0.rss) / k, heap: (m1.heap - m0.heap) / k, stacks: (m1.stacks - m0.stacks) / k, goroutines: (m1.goroutines - m0.goroutines) / k}
}

// benchEach runs fn(i) for every i in [0, n) on at most workers
// goroutines, each taking the next index, until the indices run out, ctx
// ends or the deadline passes; fn returning false stops its worker. It
// returns how many indices were taken.
func benchEach(ctx context.Context, n, workers int, deadline time.Time, fn func(i int) bool) int {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil || time.Now().After(deadline) || !fn(i) {
					return
				}
			}
		}()
	}
	wg.Wait()
	return min(int(next.Load()), n)
}

// benchFanoutRun is one server's side of the fan-out scenario.
type benchFanoutRun struct {
	perOrder, broadcast []time.Duration
	// projected and delivered split perOrder at the Redis notification:
	// event → committed view, and notification → frame at the client.
	projected, delivered []time.Duration
	perOrderMissing      int
	broadcastMissing     int
	rounds               int
	eventRate            float64
	idle                 benchMem // per idle client
}

const benchCancelledMarker = `"status":"Cancelled"`

func benchFanout(ctx context.Context, o *benchOptions, r *benchRecorder) error {
	w, err := benchStartWatchers()
	if err != nil {
		return err
	}
	defer w.stop()
	n := o.watchers

	// The baseline's idle memory first, while the process is quiet; its
	// latencies after the platform's, at the event rate the platform
	// sustained.
	r.logf("baseline: bare Echo SSE broadcaster, %d idle clients", n)
	be, err := newBenchEcho(benchSyntheticSnapshot("Queued"))
	if err != nil {
		return err
	}
	defer be.close()
	var base benchFanoutRun
	if base.idle, err = be.idleMemory(ctx, w, n); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	r.logf("  idle: %.1f KiB RSS, %.1f KiB heap, %.1f KiB stacks per client", float64(base.idle.rss)/1024, float64(base.idle.heap)/1024, float64(base.idle.stacks)/1024)

	e, err := benchStart(ctx, o, "fanout", 1, false, o.drivers)
	if err != nil {
		return err
	}
	plat, snapshots, err := benchFanoutPlatform(ctx, e, w, r)
	e.close()
	if err != nil {
		return err
	}
	r.logf("baseline: bare Echo SSE broadcaster, latencies")
	be.b.mu.Lock()
	be.b.snapshot = snapshots.before
	be.b.mu.Unlock()
	if err := be.latencies(ctx, w, r, n, fmt.Appendf(nil, "id: 2\nevent: order\ndata: %s\n\n", snapshots.after), plat.eventRate, plat.rounds, &base); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	pctRow := func(metric string, v, b []time.Duration, q float64, note string) {
		r.addVs(metric, "ms", benchMS(benchPct(v, q)), benchMS(benchPct(b, q)), note)
	}
	r.add("concurrent SSE watchers", "clients", float64(n), "in a child process, spread over 127.0.0.0/8 source addresses")
	pctRow("one watcher per order: event → client p50", plat.perOrder, base.perOrder, .5,
		fmt.Sprintf("%d orders cancelled at %.0f/s; from the event on its NATS subject to the frame at the client; baseline: one event per topic at the same rate", len(plat.perOrder), plat.eventRate))
	pctRow("one watcher per order: event → client p99", plat.perOrder, base.perOrder, .99, "")
	r.add("one watcher per order: event → Redis notification p50", "ms", benchMS(benchPct(plat.projected, .5)), "the projector's part: the view committed and published")
	r.add("one watcher per order: event → Redis notification p99", "ms", benchMS(benchPct(plat.projected, .99)), "")
	r.add("one watcher per order: notification → client p50", "ms", benchMS(benchPct(plat.delivered, .5)), "the gateway's part: hub, SSE write, the client's read")
	r.add("one watcher per order: notification → client p99", "ms", benchMS(benchPct(plat.delivered, .99)), "")
	pctRow(fmt.Sprintf("broadcast to %d: event → client p50", n), plat.broadcast, base.broadcast, .5, fmt.Sprintf("%d rounds: one order, every watcher on it", plat.rounds))
	pctRow(fmt.Sprintf("broadcast to %d: event → client p99", n), plat.broadcast, base.broadcast, .99, "")
	r.add("frames that never arrived", "frames", float64(plat.perOrderMissing+plat.broadcastMissing), "")
	r.addVs("memory per idle client (Go heap + stacks)", "KiB", float64(plat.idle.heap+plat.idle.stacks)/1024, float64(base.idle.heap+base.idle.stacks)/1024,
		"runtime/metrics after GC, delta / watchers (server side only: the watchers are another process)")
	r.addVs("RSS per idle client", "KiB", float64(plat.idle.rss)/1024, float64(base.idle.rss)/1024, "VmRSS delta after GC and FreeOSMemory / watchers; in-process, so noisier than the line above")
	r.addVs("goroutines per idle client", "goroutines", float64(plat.idle.goroutines), float64(base.idle.goroutines), "")
	return nil
}

// benchSyntheticSnapshot is an order document of the usual size for the
// baseline's idle phase (it runs before any real order exists).
func benchSyntheticSnapshot(status string) []byte {
	driver := "downtown-driver-1"
	v := ordersapi.OrderView{OrderID: "01a21947-7625-7741-b763-5252be425224", CustomerID: "bench-cust-1", RestaurantID: "downtown", Status: status,
		Items:      []ordersapi.ItemView{{PizzaType: "Margherita", Size: "Large", Toppings: []string{"Basil"}, Quantity: 2, UnitPriceCents: 1499, LineTotalCents: 2998}},
		TotalCents: 3498, Currency: "USD", PaymentMethod: "CreditCard", DeliveryLocation: &ordersapi.LatLon{Latitude: 45.52, Longitude: -122.68},
		CreatedAt: time.Now().UTC(), LastUpdated: time.Now().UTC(), AssignedDriverID: &driver, Version: 3}
	for _, st := range []string{"Validated", "Queued"} {
		v.StatusHistory = append(v.StatusHistory, ordersapi.StatusChange{Status: st, At: time.Now().UTC()})
	}
	b, _ := json.Marshal(v)
	return b
}

type benchSnapshots struct{ before, after []byte }

// benchEventTimes records when each order's cancellation reaches its NATS
// subject (the append), by order id.
type benchEventTimes struct {
	mu sync.Mutex
	t  map[string]int64
}

func (et *benchEventTimes) get(id string) int64 {
	et.mu.Lock()
	defer et.mu.Unlock()
	return et.t[id]
}

func benchFanoutPlatform(ctx context.Context, e *benchEnv, w *benchWatchProc, r *benchRecorder) (benchFanoutRun, benchSnapshots, error) {
	var run benchFanoutRun
	var snaps benchSnapshots
	o := e.o
	n := o.watchers
	rid := make([]string, 0, len(e.p.cat.Restaurants))
	for _, rest := range e.p.cat.Restaurants {
		rid = append(rid, rest.ID)
	}
	// Every watcher is a manager of its own (the gateway caps streams per
	// user, not per order).
	tokens := make([]string, n)
	for i := range tokens {
		t, err := e.p.keys.Mint(auth.Principal{Subject: fmt.Sprintf("bench-watcher-%d", i), Role: auth.RoleManager, Restaurants: rid}, 24*time.Hour)
		if err != nil {
			return run, snaps, err
		}
		tokens[i] = t
	}
	// Event times: a plain subscription on the ORDERS subjects sees each
	// appended event as it is stored.
	nc, err := nats.Connect("", nats.InProcessServer(e.p.ns), nats.Name("bench-event-times"))
	if err != nil {
		return run, snaps, err
	}
	defer nc.Close()
	et := &benchEventTimes{t: map[string]int64{}}
	if _, err := nc.Subscribe(events.Orders.Wildcard(), func(m *nats.Msg) {
		if m.Header.Get(events.HeaderType) != "order_cancelled" {
			return
		}
		now := time.Now().UnixNano()
		if id, ok := events.Orders.AggregateID(m.Subject); ok {
			et.mu.Lock()
			et.t[id] = now
			et.mu.Unlock()
		}
	}); err != nil {
		return run, snaps, err
	}
	if err := nc.Flush(); err != nil {
		return run, snaps, err
	}
	// Notification times: a Redis subscriber on the orders read model's
	// channel sees each order's Cancelled view as the projector commits it,
	// splitting event → client into the projection and the gateway's part.
	nt := &benchEventTimes{t: map[string]int64{}}
	ps := e.rdb.Subscribe(ctx, ordersapi.Channel(e.keyspace))
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		return run, snaps, err
	}
	go func() {
		for m := range ps.Channel() {
			if !strings.Contains(m.Payload, benchCancelledMarker) {
				continue
			}
			now := time.Now().UnixNano()
			var note struct {
				OrderID string `json:"orderId"`
			}
			if json.Unmarshal([]byte(m.Payload), &note) != nil {
				continue
			}
			nt.mu.Lock()
			if _, seen := nt.t[note.OrderID]; !seen {
				nt.t[note.OrderID] = now
			}
			nt.mu.Unlock()
		}
	}()

	// N orders, one watcher each.
	r.logf("placing %d orders", n)
	bodies := benchOrderBodies(e.p.cat, 256, 5)
	ids := make([]string, n)
	var next atomic.Int64
	var perr error
	var pmu sync.Mutex
	var wg sync.WaitGroup
	placeDeadline := time.Now().Add(5 * time.Minute)
	benchEach(ctx, n, o.concurrency, placeDeadline, func(i int) bool {
		v, _, err := e.placeOrder(ctx, bodies[i%len(bodies)], nil)
		if err != nil {
			pmu.Lock()
			perr = err
			pmu.Unlock()
			return false
		}
		ids[i] = v.OrderID
		return true
	})
	if perr != nil {
		return run, snaps, perr
	}
	if slices.Contains(ids, "") {
		return run, snaps, errors.New("could not place the orders in time")
	}
	if b, err := e.rdb.Get(ctx, ordersapi.OrderKey(e.keyspace, ids[0])).Bytes(); err == nil {
		snaps.before = b
	}

	paths := make([]string, n)
	for i, id := range ids {
		paths[i] = "/api/orders/" + id + "/track"
	}
	e.quiet(ctx)
	m0 := benchSettledMemory(ctx)
	r.logf("opening %d tracking streams, one per order", n)
	if _, err := w.call(benchWatchReq{Op: "open", Addr: e.addr, Count: n, Paths: paths, Tokens: tokens}); err != nil {
		return run, snaps, err
	}
	e.quiet(ctx)
	m1 := benchSettledMemory(ctx)
	run.idle = benchPerClient(m0, m1, n)
	r.logf("  idle: %.1f KiB RSS, %.1f KiB heap, %.1f KiB stacks, %d goroutines per client", float64(run.idle.rss)/1024, float64(run.idle.heap)/1024, float64(run.idle.stacks)/1024, run.idle.goroutines)
	if _, err := w.call(benchWatchReq{Op: "listen", Marker: benchCancelledMarker}); err != nil {
		return run, snaps, err
	}
	stop := e.profile(r)
	t0 := time.Now()
	cancelDeadline := t0.Add(2*o.duration + 30*time.Second)
	next.Store(0)
	var cerr error
	cancel := func(i int) {
		st, _, b, err := e.do(ctx, http.MethodPost, "/api/orders/"+ids[i]+"/cancel", []byte(`{"reason":"bench"}`), nil)
		if err == nil && st != http.StatusOK {
			err = fmt.Errorf("cancel %s: %d %s", ids[i], st, benchTrunc(b))
		}
		if err != nil {
			pmu.Lock()
			cerr = err
			pmu.Unlock()
		}
	}
	if o.cancelRate > 0 {
		// Open loop: each cancellation starts on its schedule, whether or
		// not the earlier ones have finished (latency under a load the
		// platform carries, not queueing behind a saturating client).
		r.logf("cancelling the %d orders at %.0f/s, open loop", n, o.cancelRate)
		interval := time.Duration(float64(time.Second) / o.cancelRate)
		for i := range n {
			if d := time.Until(t0.Add(time.Duration(i) * interval)); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
				case <-t.C:
				}
			}
			if ctx.Err() != nil || time.Now().After(cancelDeadline) {
				break
			}
			next.Add(1)
			wg.Add(1)
			go func() { defer wg.Done(); cancel(i) }()
		}
	} else {
		r.logf("cancelling the %d orders (%d clients, closed loop)", n, o.concurrency)
		next.Store(int64(benchEach(ctx, n, o.concurrency, cancelDeadline, func(i int) bool { cancel(i); return true })))
	}
	wg.Wait()
	cancelled := min(int(next.Load()), n)
	run.eventRate = float64(cancelled) / time.Since(t0).Seconds()
	r.logf("  %d cancelled at %.0f/s", cancelled, run.eventRate)
	if cerr != nil {
		stop()
		return run, snaps, cerr
	}
	res, err := w.call(benchWatchReq{Op: "collect", TimeoutMS: 10_000})
	stop()
	if err != nil {
		return run, snaps, err
	}
	for i, at := range res.Arrivals {
		if ev := et.get(ids[i]); ev > 0 && at > 0 {
			run.perOrder = append(run.perOrder, time.Duration(max(at-ev, 0)))
			if nat := nt.get(ids[i]); nat > 0 {
				run.projected = append(run.projected, time.Duration(max(nat-ev, 0)))
				run.delivered = append(run.delivered, time.Duration(max(at-nat, 0)))
			}
		} else if i < cancelled {
			run.perOrderMissing++
		}
	}
	slices.Sort(run.perOrder)
	slices.Sort(run.projected)
	slices.Sort(run.delivered)
	r.logf("  %d frames, p50 %.2f ms, p99 %.2f ms, %d missing", len(run.perOrder), benchMS(benchPct(run.perOrder, .5)), benchMS(benchPct(run.perOrder, .99)), run.perOrderMissing)
	if b, err := e.rdb.Get(ctx, ordersapi.OrderKey(e.keyspace, ids[0])).Bytes(); err == nil {
		snaps.after = b
	}
	if _, err := w.call(benchWatchReq{Op: "close"}); err != nil {
		return run, snaps, err
	}

	// Broadcast: every watcher on one order, rounds until the duration is
	// used (at least one, at most five).
	bstart := time.Now()
	for round := 0; round < 5 && (round == 0 || time.Since(bstart) < o.duration) && ctx.Err() == nil; round++ {
		v, _, err := e.placeOrder(ctx, bodies[round%len(bodies)], nil)
		if err != nil {
			return run, snaps, err
		}
		r.logf("broadcast round %d: %d watchers on order %s", round+1, n, v.OrderID)
		if _, err := w.call(benchWatchReq{Op: "open", Addr: e.addr, Count: n, Paths: []string{"/api/orders/" + v.OrderID + "/track"}, Tokens: tokens}); err != nil {
			return run, snaps, err
		}
		if _, err := w.call(benchWatchReq{Op: "listen", Marker: benchCancelledMarker}); err != nil {
			return run, snaps, err
		}
		st, _, b, err := e.do(ctx, http.MethodPost, "/api/orders/"+v.OrderID+"/cancel", []byte(`{"reason":"bench"}`), nil)
		if err != nil || st != http.StatusOK {
			return run, snaps, fmt.Errorf("cancel %s: %d %v %s", v.OrderID, st, err, benchTrunc(b))
		}
		res, err := w.call(benchWatchReq{Op: "collect", TimeoutMS: 10_000})
		if err != nil {
			return run, snaps, err
		}
		ev := et.get(v.OrderID)
		for _, at := range res.Arrivals {
			if ev > 0 && at > 0 {
				run.broadcast = append(run.broadcast, time.Duration(max(at-ev, 0)))
			} else {
				run.broadcastMissing++
			}
		}
		if _, err := w.call(benchWatchReq{Op: "close"}); err != nil {
			return run, snaps, err
		}
		run.rounds++
	}
	slices.Sort(run.broadcast)
	r.logf("  broadcast: %d frames, p50 %.2f ms, p99 %.2f ms, %d missing", len(run.broadcast), benchMS(benchPct(run.broadcast, .5)), benchMS(benchPct(run.broadcast, .99)), run.broadcastMissing)
	if len(snaps.before) == 0 || len(snaps.after) == 0 {
		return run, snaps, errors.New("no order snapshot for the baseline")
	}
	return run, snaps, nil
}

// benchBroadcaster is the baseline: a bare Echo SSE endpoint whose
// publishers hand one preformatted frame to every subscriber of a topic
// (latest wins, like the gateway's hub).
type benchBroadcaster struct {
	mu       sync.Mutex
	subs     map[string]map[chan []byte]struct{}
	snapshot []byte
}

func (b *benchBroadcaster) handle(c echo.Context) error {
	topic := c.Param("id")
	ch := make(chan []byte, 1)
	b.mu.Lock()
	set := b.subs[topic]
	if set == nil {
		set = map[chan []byte]struct{}{}
		b.subs[topic] = set
	}
	set[ch] = struct{}{}
	snapshot := b.snapshot
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.subs[topic], ch)
		if len(b.subs[topic]) == 0 {
			delete(b.subs, topic)
		}
		b.mu.Unlock()
	}()
	res := c.Response()
	res.Header().Set(echo.HeaderContentType, "text/event-stream")
	res.Header().Set(echo.HeaderCacheControl, "no-cache")
	res.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(res, "retry: 2000\n\nid: 1\nevent: order\ndata: %s\n\n", snapshot); err != nil {
		return nil
	}
	res.Flush()
	ctx := c.Request().Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case frame := <-ch:
			if _, err := res.Write(frame); err != nil {
				return nil
			}
			res.Flush()
		}
	}
}

func (b *benchBroadcaster) publish(topic string, frame []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs[topic] {
		select {
		case ch <- frame:
		default:
		}
	}
}

// benchEcho serves the baseline broadcaster.
type benchEcho struct {
	b    *benchBroadcaster
	srv  *http.Server
	addr string
}

func newBenchEcho(snapshot []byte) (*benchEcho, error) {
	b := &benchBroadcaster{subs: map[string]map[chan []byte]struct{}{}, snapshot: snapshot}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/orders/:id/track", b.handle)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return &benchEcho{b: b, srv: srv, addr: l.Addr().String()}, nil
}

func (be *benchEcho) close() { _ = be.srv.Close() }

func (be *benchEcho) idleMemory(ctx context.Context, w *benchWatchProc, n int) (benchMem, error) {
	paths := make([]string, n)
	for i := range paths {
		paths[i] = fmt.Sprintf("/orders/idle%d/track", i)
	}
	m0 := benchSettledMemory(ctx)
	if _, err := w.call(benchWatchReq{Op: "open", Addr: be.addr, Count: n, Paths: paths}); err != nil {
		return benchMem{}, err
	}
	m1 := benchSettledMemory(ctx)
	_, err := w.call(benchWatchReq{Op: "close"})
	return benchPerClient(m0, m1, n), err
}

// latencies measures event → client with one watcher per topic (events
// at rate) and broadcasting to every watcher of one topic (rounds).
func (be *benchEcho) latencies(ctx context.Context, w *benchWatchProc, r *benchRecorder, n int, frame []byte, rate float64, rounds int, run *benchFanoutRun) error {
	paths := make([]string, n)
	for i := range paths {
		paths[i] = fmt.Sprintf("/orders/t%d/track", i)
	}
	if _, err := w.call(benchWatchReq{Op: "open", Addr: be.addr, Count: n, Paths: paths}); err != nil {
		return err
	}
	if _, err := w.call(benchWatchReq{Op: "listen", Marker: benchCancelledMarker}); err != nil {
		return err
	}
	sent := make([]int64, n)
	rate = max(rate, 1)
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			benchSleep(ctx, d)
		}
		sent[i] = time.Now().UnixNano()
		be.b.publish(fmt.Sprintf("t%d", i), frame)
	}
	res, err := w.call(benchWatchReq{Op: "collect", TimeoutMS: 10_000})
	if err != nil {
		return err
	}
	for i, at := range res.Arrivals {
		if at > 0 && sent[i] > 0 {
			run.perOrder = append(run.perOrder, time.Duration(max(at-sent[i], 0)))
		} else {
			run.perOrderMissing++
		}
	}
	slices.Sort(run.perOrder)
	r.logf("  one per topic: p50 %.2f ms, p99 %.2f ms", benchMS(benchPct(run.perOrder, .5)), benchMS(benchPct(run.perOrder, .99)))
	if _, err := w.call(benchWatchReq{Op: "close"}); err != nil {
		return err
	}
	for round := 0; round < max(rounds, 1) && ctx.Err() == nil; round++ {
		topic := fmt.Sprintf("hot%d", round)
		if _, err := w.call(benchWatchReq{Op: "open", Addr: be.addr, Count: n, Paths: []string{"/orders/" + topic + "/track"}}); err != nil {
			return err
		}
		if _, err := w.call(benchWatchReq{Op: "listen", Marker: benchCancelledMarker}); err != nil {
			return err
		}
		t := time.Now().UnixNano()
		be.b.publish(topic, frame)
		res, err := w.call(benchWatchReq{Op: "collect", TimeoutMS: 10_000})
		if err != nil {
			return err
		}
		for _, at := range res.Arrivals {
			if at > 0 {
				run.broadcast = append(run.broadcast, time.Duration(max(at-t, 0)))
			} else {
				run.broadcastMissing++
			}
		}
		if _, err := w.call(benchWatchReq{Op: "close"}); err != nil {
			return err
		}
		run.rounds++
	}
	slices.Sort(run.broadcast)
	r.logf("  broadcast: p50 %.2f ms, p99 %.2f ms", benchMS(benchPct(run.broadcast, .5)), benchMS(benchPct(run.broadcast, .99)))
	return nil
}

// benchWatchConn is one SSE client of the watcher process.
type benchWatchConn struct {
	body    io.ReadCloser
	br      *bufio.Reader
	arrived atomic.Int64
}

// benchWatchClientMain is the watcher process: it opens, follows and
// closes SSE streams as the bench asks over stdin, and reports when each
// stream delivered the marked frame.
func benchWatchClientMain(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	enc := json.NewEncoder(out)
	var seq atomic.Uint32
	tr := &http.Transport{
		// Spread the clients over loopback source addresses so that tens
		// of thousands of connections (and their TIME_WAITs) never run out
		// of ephemeral ports.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			i := seq.Add(1)
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+(i/250)%200), byte(2+i%250))}}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				var plain net.Dialer
				return plain.DialContext(ctx, network, addr)
			}
			return c, nil
		},
		DisableCompression:    true,
		MaxIdleConnsPerHost:   -1,
		ResponseHeaderTimeout: 60 * time.Second,
	}
	client := &http.Client{Transport: tr}
	var conns []*benchWatchConn
	var readers sync.WaitGroup
	closeAll := func() {
		for _, c := range conns {
			_ = c.body.Close()
		}
		readers.Wait()
		conns = nil
		tr.CloseIdleConnections()
	}
	defer closeAll()
	for sc.Scan() {
		var req benchWatchReq
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			return err
		}
		var resp benchWatchResp
		resp.Op = req.Op
		switch req.Op {
		case "open":
			opened, err := benchWatchOpen(client, req)
			conns = append(conns, opened...)
			resp.Opened = len(opened)
			if err != nil {
				resp.Err = err.Error()
			}
		case "listen":
			marker := []byte(req.Marker)
			for _, c := range conns {
				readers.Add(1)
				go func() {
					defer readers.Done()
					for {
						_, data, err := benchReadFrame(c.br)
						if err != nil {
							return
						}
						if len(marker) > 0 && c.arrived.Load() == 0 && bytes.Contains(data, marker) {
							c.arrived.Store(time.Now().UnixNano())
						}
					}
				}()
			}
		case "collect":
			deadline := time.Now().Add(time.Duration(req.TimeoutMS) * time.Millisecond)
			for {
				all := true
				for _, c := range conns {
					if c.arrived.Load() == 0 {
						all = false
						break
					}
				}
				if all || time.Now().After(deadline) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			resp.Arrivals = make([]int64, len(conns))
			for i, c := range conns {
				resp.Arrivals[i] = c.arrived.Load()
			}
		case "close":
			closeAll()
		case "exit":
			return enc.Encode(resp)
		default:
			resp.Err = "unknown op " + req.Op
		}
		if err := enc.Encode(resp); err != nil {
			return err
		}
	}
	return sc.Err()
}

// benchWatchOpen opens req.Count streams, 64 at a time, and reads each one's
// first data frame (the snapshot) before returning.
func benchWatchOpen(client *http.Client, req benchWatchReq) ([]*benchWatchConn, error) {
	conns := make([]*benchWatchConn, req.Count)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := 0; i < req.Count; i++ {
		path := req.Paths[0]
		if len(req.Paths) == req.Count {
			path = req.Paths[i]
		}
		token := ""
		if len(req.Tokens) == req.Count {
			token = req.Tokens[i]
		} else if len(req.Tokens) == 1 {
			token = req.Tokens[0]
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := benchWatchOne(client, req.Addr, path, token)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	out := slices.DeleteFunc(conns, func(c *benchWatchConn) bool { return c == nil })
	if firstErr != nil {
		for _, c := range out {
			_ = c.body.Close()
		}
		return nil, fmt.Errorf("opened %d of %d streams: %w", len(out), req.Count, firstErr)
	}
	return out, nil
}

func benchWatchOne(client *http.Client, addr, path, token string) (*benchWatchConn, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		res.Body.Close()
		return nil, fmt.Errorf("GET %s: %d %s", path, res.StatusCode, b)
	}
	c := &benchWatchConn{body: res.Body, br: bufio.NewReaderSize(res.Body, 4096)}
	// The first data frame is the current snapshot; give up after 30 s.
	t := time.AfterFunc(30*time.Second, func() { _ = res.Body.Close() })
	defer t.Stop()
	for {
		_, data, err := benchReadFrame(c.br)
		if err != nil {
			res.Body.Close()
			return nil, fmt.Errorf("GET %s: no snapshot: %w", path, err)
		}
		if len(data) > 0 {
			return c, nil
		}
	}
}

// --- 5. rebuild ---

func benchRebuild(ctx context.Context, o *benchOptions, r *benchRecorder) error {
	// Time scale 3000: orders reach the door in about a second.
	const scale = 3000
	e, err := benchStart(ctx, o, "rebuild", scale, false, o.drivers)
	if err != nil {
		return err
	}
	platformUp := true
	defer func() {
		if platformUp {
			e.close()
		}
	}()
	r.logf("generating orders through the platform for %s", o.duration)
	gen := benchLifecycleLoad(ctx, e, o.duration, time.Minute)
	r.logf("  %d placed", gen.placed)
	streams := map[string]bool{}
	for _, p := range ordersvc.Projectors(e.keyspace) {
		streams[p.Stream()] = true
	}
	for st := range streams {
		e.waitStable(ctx, st, 500*time.Millisecond, 20*time.Second)
	}
	liveConsumers := 0
	if st, err := e.p.js.Stream(ctx, events.Orders.Stream); err == nil {
		if info, err := st.Info(ctx); err == nil {
			liveConsumers = info.State.Consumers
		}
	}

	// The rebuild reads a copy of the log in a JetStream of its own (same
	// server version, file storage, same subjects, headers and order): the
	// live platform's background work and its leftover consumers (ORDERS
	// reaches nats-server's default limit of 1,000 consumers per stream
	// under load) would otherwise decide the figure.
	ns, err := server.NewServer(&server.Options{ServerName: "bench-rebuild", Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: filepath.Join(e.dir, "rebuild-js"), NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(30 * time.Second) {
		return errors.New("rebuild nats-server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("bench-rebuild"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{Storage: jetstream.FileStorage}, events.DomainContexts()...); err != nil {
		return err
	}
	targets := map[string]uint64{}
	for name := range streams {
		n, err := benchCopyStream(ctx, e.p.js, js, name)
		if err != nil {
			return fmt.Errorf("copy %s: %w", name, err)
		}
		targets[name] = n
	}
	target := targets[events.Orders.Stream]
	if target == 0 {
		return errors.New("ORDERS is empty")
	}
	platformUp = false
	e.close()
	opt, err := redis.ParseURL(o.redisURL)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	defer benchDeletePrefix(context.Background(), rdb, e.keyspace)
	r.logf("log copied (%v; the live ORDERS had %d consumers); platform stopped; rebuilding the orders read models from sequence 1", targets, liveConsumers)

	reg := events.NewRegistry()
	warnings := &benchWarnings{}
	type agg struct {
		events  uint64
		elapsed time.Duration
	}
	per := map[string]*agg{}
	var names []string
	total := agg{}
	// rebuildOne rebuilds one read model into scratch from sequence 1 and
	// returns the time it took.
	rebuildOne := func(scratch string, p projection.Projector) (time.Duration, error) {
		target := targets[p.Stream()]
		rt := projection.New(js, rdb, reg, p, projection.Options{Keyspace: scratch, Logger: slog.New(warnings), BatchSize: 512})
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		t0 := time.Now()
		go func() { defer close(done); _ = rt.Run(rctx) }()
		deadline := t0.Add(5 * time.Minute)
		for !(rt.CaughtUp() && rt.Checkpoint() >= target) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		elapsed := time.Since(t0)
		cancel()
		<-done
		if rt.Checkpoint() < target {
			warnings.mu.Lock()
			defer warnings.mu.Unlock()
			return 0, fmt.Errorf("%s rebuilt only to %d of %d (%d warnings, first: %s)", p.Name(), rt.Checkpoint(), target, warnings.n, warnings.first)
		}
		return elapsed, nil
	}
	stop := benchProfile(o, r)
	start := time.Now()
	rounds := 0
	var doc []byte // a rebuilt order document, for the baseline
	for round := 0; round < 20 && (round == 0 || time.Since(start) < o.duration) && ctx.Err() == nil; round++ {
		scratch := fmt.Sprintf("%srebuild-%d:", e.keyspace, round)
		for _, p := range ordersvc.Projectors(scratch) {
			target := targets[p.Stream()]
			elapsed, err := rebuildOne(scratch, p)
			if err != nil {
				stop()
				return err
			}
			a := per[p.Name()]
			if a == nil {
				a = &agg{}
				per[p.Name()] = a
				names = append(names, p.Name())
			}
			a.events += target
			a.elapsed += elapsed
			total.events += target
			total.elapsed += elapsed
		}
		if doc == nil {
			if iter := rdb.Scan(ctx, 0, ordersapi.OrderKey(scratch, "*"), 1000).Iterator(); iter.Next(ctx) {
				doc, _ = rdb.Get(ctx, iter.Val()).Bytes()
			}
		}
		benchDeletePrefix(ctx, rdb, scratch)
		rounds++
	}
	stop()
	// The same models rebuilt side by side (one runtime each, started
	// together): shows whether a rebuild gains from overlapping one
	// model's wait for Redis with another's applying.
	var parEvents uint64
	var parElapsed time.Duration
	for round := 0; round < min(rounds, 5) && ctx.Err() == nil; round++ {
		scratch := fmt.Sprintf("%srebuild-par-%d:", e.keyspace, round)
		ps := ordersvc.Projectors(scratch)
		errs := make([]error, len(ps))
		var wg sync.WaitGroup
		t0 := time.Now()
		for i, p := range ps {
			wg.Add(1)
			go func() { defer wg.Done(); _, errs[i] = rebuildOne(scratch, p) }()
			parEvents += targets[p.Stream()]
		}
		wg.Wait()
		parElapsed += time.Since(t0)
		if err := errors.Join(errs...); err != nil {
			return err
		}
		benchDeletePrefix(ctx, rdb, scratch)
	}
	// Baseline: as many document writes as events, pipelined SETs of a
	// real order document.
	if len(doc) == 0 {
		doc = benchSyntheticSnapshot("Delivered")
	}
	rawKeys := int(max(target/12, 1))
	var rawElapsed time.Duration
	var rawN uint64
	for round := 0; round < 3 && ctx.Err() == nil; round++ {
		t0 := time.Now()
		pipe := rdb.Pipeline()
		for j := uint64(0); j < target; j++ {
			pipe.Set(ctx, e.keyspace+"rawset:"+strconv.Itoa(int(j)%rawKeys), doc, 0)
			if j%512 == 511 {
				if _, err := pipe.Exec(ctx); err != nil {
					return err
				}
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		rawElapsed += time.Since(t0)
		rawN += target
	}
	rawRate := float64(rawN) / rawElapsed.Seconds()
	r.logf("  baseline: %.0f pipelined SETs/s (%d-byte documents)", rawRate, len(doc))
	r.add("events in ORDERS", "events", float64(target), fmt.Sprintf("generated by %d orders placed and delivered through the platform (time scale %d)", gen.placed, scale))
	r.addVs("rebuild, all orders read models", "events/s", float64(total.events)/total.elapsed.Seconds(), rawRate,
		fmt.Sprintf("%s one after another, like pizza rebuild, %d rounds; baseline: pipelined SETs (512 per round trip) of a %d-byte order document", strings.Join(names, ", "), rounds, len(doc)))
	if parElapsed > 0 {
		r.addVs("rebuild, all orders read models in parallel", "events/s", float64(parEvents)/parElapsed.Seconds(), rawRate,
			fmt.Sprintf("%s side by side, all started together, %d rounds", strings.Join(names, ", "), min(rounds, 5)))
	}
	r.add("rebuild interruptions", "warnings", float64(warnings.n), warnings.first)
	if warnings.n > 0 {
		r.logf("  %d warnings from the rebuild runtimes, first: %s", warnings.n, warnings.first)
	}
	for _, name := range names {
		a := per[name]
		r.addVs("rebuild "+name, "events/s", float64(a.events)/a.elapsed.Seconds(), rawRate, fmt.Sprintf("%d events per round", a.events/max(uint64(rounds), 1)))
	}
	r.add("consumers on the live ORDERS stream", "consumers", float64(liveConsumers), "nats-server's default limit is 1,000 per stream; eventstore.Load leaves an ordered consumer behind per aggregate load")
	return nil
}

// benchCopyStream copies a stream's messages (subjects, headers, data, in
// order) from one JetStream to another by direct gets, and returns the last
// sequence of the copy.
func benchCopyStream(ctx context.Context, from, to jetstream.JetStream, name string) (uint64, error) {
	src, err := from.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := src.Info(ctx)
	if err != nil {
		return 0, err
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := src.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		out := nats.NewMsg(m.Subject)
		out.Data = m.Data
		for k, v := range m.Header {
			if strings.HasPrefix(k, "Nats-Batch-") || strings.HasPrefix(k, "Nats-Expected-") {
				continue
			}
			out.Header[k] = v
		}
		if _, err := to.PublishMsgAsync(out); err != nil {
			return 0, err
		}
	}
	select {
	case <-to.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(time.Minute):
		return 0, errors.New("copy did not complete within a minute")
	}
	return eventstore.LastSeq(ctx, to, name)
}

// benchWarnings is a slog handler that counts warnings and keeps the
// first one (the rebuild runtimes report interruptions through it).
type benchWarnings struct {
	mu    sync.Mutex
	n     int
	first string
}

func (w *benchWarnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (w *benchWarnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	if w.first == "" {
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.String())
			return true
		})
		w.first = b.String()
	}
	return nil
}

func (w *benchWarnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *benchWarnings) WithGroup(string) slog.Handler      { return w }
