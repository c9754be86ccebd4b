package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/testkit"
)

// TestBenchWatchClientProcess is not a test: it is the fan-out scenario's
// watcher process when the bench runs inside the test binary.
func TestBenchWatchClientProcess(t *testing.T) {
	if os.Getenv("PIZZA_BENCH_WATCH_CLIENT") != "1" {
		t.Skip("helper process of TestBenchSmoke")
	}
	err := benchWatchClientMain(os.Stdin, os.Stdout)
	if err != nil {
		os.Stderr.WriteString("watch client: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(0)
}

// A short run of every scenario: the report has the right shape (every
// scenario, positive headline figures, JSON that decodes, a table), not
// any particular speed.
func TestBenchSmoke(t *testing.T) {
	_, _ = testkit.Redis(t) // skips nothing: fails clearly when Redis is missing
	prev := benchWatchClientCommand
	benchWatchClientCommand = func() (*exec.Cmd, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBenchWatchClientProcess$")
		cmd.Env = append(os.Environ(), "PIZZA_BENCH_WATCH_CLIENT=1")
		return cmd, nil
	}
	defer func() { benchWatchClientCommand = prev }()

	args := []string{"--duration", "1s", "--concurrency", "4", "--rates", "20,50", "--watchers", "20",
		"--drivers", "4", "--mqtt-clients", "6", "--redis-url", testkit.RedisURL(), "--json", "--trace-tail"}
	if testing.Short() {
		args = append(args, "--scenario", "intake,rebuild")
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	err := runBench(ctx, args, &stdout, &stderr)
	t.Logf("bench took %s", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	if testing.Verbose() {
		t.Log("\n" + stderr.String())
	}

	var rep benchReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("JSON report does not decode: %v\n%s", err, stdout.String())
	}
	if rep.Machine.CPUs < 1 || rep.Command == "" || len(rep.Failures) > 0 {
		t.Errorf("report header: %+v", rep)
	}
	for _, h := range []string{"SCENARIO", "METRIC", "VALUE", "BASELINE", "RATIO"} {
		if !strings.Contains(stderr.String(), h) {
			t.Errorf("the table (on stderr with --json) has no %s column", h)
		}
	}
	want := map[string][]string{ // scenario → metrics that must be positive (prefixes)
		"intake":    {"max sustained orders/s", "closed-loop p50 latency", "achieved orders/s @20/s", "p99 latency @50/s", "slowest 1% @20/s: read-your-writes wait"},
		"lifecycle": {"delivered orders/s", "placement → Delivered p99"},
		"telemetry": {"QoS 0 fixes/s into JetStream", "QoS 1 fixes/s into JetStream", "device → SSE p99"},
		"fanout":    {"concurrent SSE watchers", "one watcher per order: event → client p99", "broadcast to 20: event → client p99", "goroutines per idle client"},
		"rebuild":   {"events in ORDERS", "rebuild, all orders read models"},
	}
	if testing.Short() {
		delete(want, "lifecycle")
		delete(want, "telemetry")
		delete(want, "fanout")
	}
	seen := map[string]bool{}
	for _, r := range rep.Results {
		seen[r.Scenario] = true
		// Memory deltas of a few watchers are within the noise of a live
		// process: any finite value will do at this size.
		noisy := strings.Contains(r.Metric, "per idle client")
		if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) || (r.Value < 0 && !noisy) || r.Metric == "" {
			t.Errorf("%s %q = %v", r.Scenario, r.Metric, r.Value)
		}
		if r.Baseline != nil && ((*r.Baseline < 0 && !noisy) || r.Ratio == nil && *r.Baseline != 0) {
			t.Errorf("%s %q: baseline %v ratio %v", r.Scenario, r.Metric, *r.Baseline, r.Ratio)
		}
	}
	for scenario, metrics := range want {
		if !seen[scenario] {
			t.Errorf("no results for scenario %s", scenario)
			continue
		}
		for _, m := range metrics {
			i := slices.IndexFunc(rep.Results, func(r benchResult) bool { return r.Scenario == scenario && strings.HasPrefix(r.Metric, m) })
			if i < 0 {
				t.Errorf("%s: no metric %q", scenario, m)
				continue
			}
			if r := rep.Results[i]; r.Value <= 0 {
				t.Errorf("%s %q = %v, want > 0", scenario, r.Metric, r.Value)
			}
		}
	}
	// Baselines carry a ratio.
	for _, m := range []string{"max sustained orders/s", "QoS 1 fixes/s into JetStream", "memory per idle client", "rebuild, all orders read models"} {
		i := slices.IndexFunc(rep.Results, func(r benchResult) bool { return strings.HasPrefix(r.Metric, m) })
		if i >= 0 && (rep.Results[i].Baseline == nil || rep.Results[i].Ratio == nil) {
			t.Errorf("%q has no baseline or ratio", m)
		}
	}
}

func TestBenchFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--scenario", "nope"},
		{"--watchers", "20000"},
		{"--rates", "fast"},
		{"--duration", "0s"},
		{"--cancel-rate", "-1"},
		{"--restaurants", "-1"},
		{"--restaurants", "1001"},
		{"extra"},
	} {
		var out, errw bytes.Buffer
		if err := runBench(context.Background(), args, &out, &errw); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// TestBenchCatalogCopiesRestaurants: --restaurants adds copies of the
// seed's restaurants whose own ids, and their chefs' and drivers' ids, are
// unique, and the catalogue still parses.
func TestBenchCatalogCopiesRestaurants(t *testing.T) {
	b, err := benchCatalog(4, 8)
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalog.Parse(b)
	if err != nil {
		t.Fatalf("the bench catalogue does not parse: %v", err)
	}
	if len(c.Restaurants) != 8 {
		t.Fatalf("%d restaurants, want 8", len(c.Restaurants))
	}
	seen := map[string]bool{}
	for _, r := range c.Restaurants {
		ids := []string{"restaurant " + r.ID}
		for _, ch := range r.Chefs {
			ids = append(ids, "chef "+ch.ID)
		}
		for _, d := range r.Drivers {
			ids = append(ids, "driver "+d.ID)
		}
		if len(r.Drivers) < 4 || len(r.Chefs) == 0 {
			t.Errorf("%s: %d chefs, %d drivers", r.ID, len(r.Chefs), len(r.Drivers))
		}
		for _, id := range ids {
			if seen[id] {
				t.Errorf("%s twice", id)
			}
			seen[id] = true
		}
	}
}
