package fault_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/testkit"
)

// Service crash: the orders service and the gateway run as real child
// processes against an in-process nats-server (TCP) and the real Redis.
// Clients place N orders through the gateway's HTTP API, each with its own
// Idempotency-Key, retrying on errors and timeouts. In the middle of the
// load the orders process is killed with SIGKILL and a new one started.
// Afterwards ORDERS holds exactly N placements, no event twice, and every
// order is readable through the gateway.
func TestServiceCrashKeepsEveryOrderOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the services as child processes")
	}
	const (
		orderCount = 200
		clients    = 8
	)
	bins := buildServices(t, "orders", "gateway")
	ctx := context.Background()
	ns := testkit.RunJetStream(t)
	js := testkit.JetStream(t, testkit.Connect(t, ns))
	_, keyspace := testkit.Redis(t)
	common := []string{"--nats-url", ns.ClientURL(), "--redis-url", testkit.RedisURL(), "--keyspace", keyspace}

	ordersHealth := freeAddr(t)
	ordersArgs := append(append([]string{}, common...), "--health-addr", ordersHealth)
	first := startChild(t, bins["orders"], "orders-1", ordersArgs...)
	waitHTTP(t, "http://"+ordersHealth+"/readyz")
	gatewayAddr := freeAddr(t)
	startChild(t, bins["gateway"], "gateway", append(append([]string{}, common...), "--http-addr", gatewayAddr, "--read-your-writes-timeout", "300ms",
		// Authentication and the per-address rate limit are not what this
		// test is about: every client here comes from 127.0.0.1.
		"--insecure-no-auth", "--rate-limit", "1000")...)
	base := "http://" + gatewayAddr
	waitHTTP(t, base+"/readyz")

	// The clients.
	type outcome struct {
		orderID  string
		attempts int
		replayed bool
	}
	results := make([]outcome, orderCount)
	var placed, failures, throttled atomic.Int64
	work := make(chan int)
	loadCtx, cancelLoad := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelLoad()
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var loadErr error
	hc := &http.Client{Timeout: 5 * time.Second}
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				id, attempts, replayed, err := placeOverHTTP(loadCtx, hc, base, i, &failures, &throttled)
				if err != nil {
					errMu.Lock()
					loadErr = errors.Join(loadErr, err)
					errMu.Unlock()
					continue
				}
				results[i] = outcome{orderID: id, attempts: attempts, replayed: replayed}
				placed.Add(1)
			}
		}()
	}
	go func() {
		// A steady offered load (one order per 10 ms), so the crash a third
		// of the way in always finds requests in flight and more to come.
		defer close(work)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < orderCount; i++ {
			select {
			case <-tick.C:
			case <-loadCtx.Done():
				return
			}
			select {
			case work <- i:
			case <-loadCtx.Done():
				return
			}
		}
	}()

	// The crash, a third of the way in, with requests in flight.
	testkit.Eventually(t, 60*time.Second, func() error {
		if n := placed.Load(); n < orderCount/3 {
			return fmt.Errorf("%d of %d orders placed", n, orderCount)
		}
		return nil
	})
	placedAtKill := placed.Load()
	first.kill(t)
	killedAt := time.Now()
	startChild(t, bins["orders"], "orders-2", ordersArgs...)
	waitHTTP(t, "http://"+ordersHealth+"/readyz")
	// Convergence: from the kill until a new process serves with its read
	// model caught up with the log.
	restartTook := time.Since(killedAt)
	wg.Wait()
	if loadErr != nil {
		t.Fatalf("clients: %v", loadErr)
	}
	if n := placed.Load(); n != orderCount {
		t.Fatalf("%d of %d orders acknowledged", n, orderCount)
	}

	// Every order is readable through the gateway.
	loadDone := time.Now()
	readable := 0
	testkit.Eventually(t, 60*time.Second, func() error {
		for readable < len(results) {
			r := results[readable]
			resp, err := hc.Get(base + "/api/orders/" + r.orderID)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				readable++
			case http.StatusTooManyRequests:
				if err := pauseFor(ctx, retryAfter(resp)); err != nil {
					return err
				}
			default:
				return fmt.Errorf("order %d (%s): GET answered %d", readable, r.orderID, resp.StatusCode)
			}
		}
		return nil
	})
	readableAfter := time.Since(loadDone)

	// The log holds each order once.
	msgs := scanStream(ctx, t, js, events.Orders.Stream)
	a := auditLog(msgs)
	placedBy := map[string]int{}
	byCommand := map[string]int{}
	for _, m := range msgs {
		byCommand[m.CommandID+"/"+m.Type]++
		if m.Type == "order_placed" {
			id, _ := events.Orders.AggregateID(m.Subject)
			placedBy[id]++
		}
	}
	sameCommandTwice := 0
	for k, n := range byCommand {
		if n > 1 {
			sameCommandTwice += n - 1
			t.Errorf("command/event %s stored %d times", k, n)
		}
	}
	placedEvents := 0
	for _, n := range placedBy {
		placedEvents += n
	}
	ids := map[string]bool{}
	attempts, replayed := 0, 0
	for i, r := range results {
		ids[r.orderID] = true
		attempts += r.attempts
		if r.replayed {
			replayed++
		}
		if placedBy[r.orderID] != 1 {
			t.Errorf("order %d (%s) has %d order_placed events, want 1", i, r.orderID, placedBy[r.orderID])
		}
	}
	if len(ids) != orderCount || len(placedBy) != orderCount {
		t.Errorf("%d distinct orders acknowledged, %d placed in the log; want %d each", len(ids), len(placedBy), orderCount)
	}
	if a.Duplicates > 0 {
		t.Errorf("%d events stored twice (same Nats-Msg-Id)", a.Duplicates)
	}
	if failures.Load() == 0 {
		t.Error("no client saw the crash: the fault hit nothing in flight")
	}

	summary{
		Test: "service-crash", Faults: 1, Acked: orderCount, Stored: a.Stored, Duplicates: a.Duplicates + sameCommandTwice, Convergence: restartTook,
		Extra: []any{"orders", orderCount, "order_placed_events", placedEvents, "placed_before_kill", placedAtKill,
			"all_readable_after_last_ack", readableAfter, "http_attempts", attempts, "failed_requests", failures.Load(), "throttled_requests", throttled.Load(), "replayed_replies", replayed},
	}.print(t)
}

// placeOverHTTP places order i through the gateway, retrying with the same
// Idempotency-Key on transport errors, timeouts and 5xx answers, and
// after the Retry-After of a 429.
func placeOverHTTP(ctx context.Context, hc *http.Client, base string, i int, failures, throttled *atomic.Int64) (orderID string, attempts int, replayed bool, err error) {
	cmd := placeCommand(i)
	body, err := json.Marshal(cmd.Request)
	if err != nil {
		return "", 0, false, err
	}
	pause := 20 * time.Millisecond
	for attempts = 1; ; attempts++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/orders", bytes.NewReader(body))
		if err != nil {
			return "", attempts, false, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", cmd.IdempotencyKey)
		resp, err := hc.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode == http.StatusCreated:
				var o struct {
					OrderID string `json:"orderId"`
				}
				if err := json.Unmarshal(b, &o); err != nil || o.OrderID == "" {
					return "", attempts, false, fmt.Errorf("order %d: 201 without an order: %s", i, b)
				}
				return o.OrderID, attempts, resp.Header.Get("Idempotent-Replayed") == "true", nil
			case resp.StatusCode == http.StatusTooManyRequests:
				// Throttled, not failed: wait as told and send it again.
				throttled.Add(1)
				if err := pauseFor(ctx, retryAfter(resp)); err != nil {
					return "", attempts, false, fmt.Errorf("order %d: gave up while throttled: %w", i, err)
				}
				continue
			case resp.StatusCode < 500:
				return "", attempts, false, fmt.Errorf("order %d: %d %s", i, resp.StatusCode, b)
			default:
				err = fmt.Errorf("order %d: %d %s", i, resp.StatusCode, b)
			}
		}
		failures.Add(1)
		if ctx.Err() != nil {
			return "", attempts, false, fmt.Errorf("order %d: gave up after %d attempts: %w", i, attempts, err)
		}
		if perr := pauseFor(ctx, pause); perr != nil {
			return "", attempts, false, fmt.Errorf("order %d: gave up after %d attempts: %w", i, attempts, err)
		}
		pause = min(pause*2, 300*time.Millisecond)
	}
}

// retryAfter is how long a throttled client waits: the Retry-After
// seconds, or one second.
func retryAfter(resp *http.Response) time.Duration {
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	return time.Second
}

// buildServices builds the standalone binaries of the named services
// (services/<name>/cmd/<name>) into a temporary directory, in parallel.
func buildServices(t *testing.T, names ...string) map[string]string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := map[string]string{}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		bin := filepath.Join(dir, name)
		out[name] = bin
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkg := "github.com/awesome-pizza/pizza/services/" + name + "/cmd/" + name
			cmd := exec.Command(goBin, "build", "-o", bin, pkg)
			cmd.Dir = filepath.Join(root, "services", name)
			if b, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}

// child is a service running as a child process of the test.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startChild starts a binary with the given arguments; its output goes to
// a file that is printed when the test fails. It is killed when the test
// ends if it still runs.
func startChild(t *testing.T, bin, name string, args ...string) *child {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "PIZZA_LOG_LEVEL=info", "PIZZA_LOG_FORMAT=text")
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	c := &child{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-c.done
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8<<10 {
				b = b[len(b)-8<<10:]
			}
			t.Logf("%s output (tail):\n%s", name, b)
		}
	})
	return c
}

// kill ends the process with SIGKILL, as a crash or an OOM kill would, and
// waits until it is gone.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", c.name, err)
	}
	<-c.done
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitHTTP polls url until it answers 200.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	testkit.Eventually(t, 60*time.Second, func() error {
		resp, err := hc.Get(url)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %d %s", url, resp.StatusCode, b)
		}
		return nil
	})
}
