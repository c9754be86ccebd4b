// Package browser drives the web UI in headless Chromium against the real
// platform: `pizza dev` and `pizza sim` run as child processes of the
// tests (cmd/pizza is a main package and cannot be imported), and the
// pages are checked through the DOM, with screenshots as artifacts.
package browser

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const chromiumPath = "/usr/bin/chromium"

// requireChromium skips when Debian's Chromium is missing, except in CI
// ($CI = "true"), where the browser tests must run.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing; CI installs it (apt-get install -y chromium): %v", chromiumPath, err)
		}
		t.Skipf("%s is missing (apt-get install -y chromium); the browser tests are skipped outside CI", chromiumPath)
	}
}

// artifacts is where screenshots and logs go: $PIZZA_ARTIFACTS, or a
// temporary directory of the test.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PIZZA_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// platform is one `pizza dev` with `pizza sim` beside it, shared by the
// tests of the package (started by the first test that needs it).
type platform struct {
	base     string // http://127.0.0.1:<port>
	dataDir  string
	bin      string
	keyspace string
	dev, sim *exec.Cmd
	simDone  chan error
	tokens   sync.Map // "role:subject[:restaurant]" → token
	tmp      string
}

var (
	shared     *platform
	sharedErr  error
	sharedOnce sync.Once
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	os.Exit(code)
}

// simulated are the restaurants the simulator orders from and drives for;
// the others are left to the tests that drive a driver by hand.
const simulated = "downtown,pearl"

func startPlatform(t *testing.T) *platform {
	t.Helper()
	requireChromium(t)
	sharedOnce.Do(func() { shared, sharedErr = launch() })
	if sharedErr != nil {
		t.Fatalf("starting the platform: %v", sharedErr)
	}
	return shared
}

func redisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

func launch() (*platform, error) {
	tmp, err := os.MkdirTemp("", "pizza-browser-")
	if err != nil {
		return nil, err
	}
	p := &platform{tmp: tmp, dataDir: filepath.Join(tmp, "data"), bin: filepath.Join(tmp, "pizza")}
	ok := false
	defer func() {
		if !ok {
			p.stop()
		}
	}()
	logDir := os.Getenv("PIZZA_ARTIFACTS")
	if logDir == "" {
		logDir = tmp
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}

	// The binary, built from this checkout.
	_, here, _, _ := runtime.Caller(0)
	cmdDir := filepath.Join(filepath.Dir(here), "..", "..", "cmd", "pizza")
	build := exec.Command(goTool(), "build", "-o", p.bin, ".")
	build.Dir = cmdDir
	// Built as `go build ./cmd/pizza` would be from the checkout: with the
	// repository's go.work, whatever GOWORK this test module runs with.
	build.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GOWORK=") })
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/pizza: %v\n%s", err, out)
	}

	// Redis must answer; every key of this run sits under its own prefix.
	opt, err := redis.ParseURL(redisURL())
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis at REDIS_URL is not reachable (start redis-server or set REDIS_URL): %w", err)
	}
	p.keyspace = "test:browser-" + randomHex(6) + ":"

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	devLog, err := os.Create(filepath.Join(logDir, "pizza-dev.log"))
	if err != nil {
		return nil, err
	}
	p.dev = exec.Command(p.bin, "dev",
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", port), "--nats-addr", "127.0.0.1:0",
		"--mqtt-addr=", "--mqtt-ws-addr=",
		"--data-dir", p.dataDir, "--time-scale", "600", "--qc-failure-rate", "0", "--seed", "11",
		"--redis-url", redisURL(), "--keyspace", p.keyspace)
	p.dev.Stderr = devLog
	stdout, err := p.dev.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.dev.Start(); err != nil {
		return nil, err
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(devLog, "stdout:", sc.Text())
			if strings.Contains(sc.Text(), "Awesome Pizza is ready") {
				ready <- nil
			}
		}
		ready <- errors.New("pizza dev exited before it was ready; see pizza-dev.log")
	}()
	select {
	case err := <-ready:
		if err != nil {
			return nil, err
		}
	case <-time.After(90 * time.Second):
		return nil, errors.New("pizza dev was not ready within 90s; see pizza-dev.log")
	}
	if err := p.checkUI(); err != nil {
		return nil, err
	}

	// The simulator: customers and drivers of the simulated restaurants.
	simLog, err := os.Create(filepath.Join(logDir, "pizza-sim.log"))
	if err != nil {
		return nil, err
	}
	p.sim = exec.Command(p.bin, "sim", "--gateway-url", p.base, "--duration", "5m", "--rate", "20",
		"--time-scale", "100", "--gps-interval", "200ms", "--seed", "7", "--restaurants", simulated, "--data-dir", p.dataDir)
	p.sim.Stdout, p.sim.Stderr = simLog, simLog
	if err := p.sim.Start(); err != nil {
		return nil, err
	}
	p.simDone = make(chan error, 1)
	go func() { p.simDone <- p.sim.Wait() }()
	select {
	case err := <-p.simDone:
		p.simDone = nil
		b, _ := os.ReadFile(simLog.Name())
		if strings.Contains(string(b), "unknown command") {
			return nil, fmt.Errorf("`pizza sim` is not wired in cmd/pizza/main.go yet (case \"sim\": runSim): %s", b)
		}
		return nil, fmt.Errorf("pizza sim stopped at once (%v): %s", err, b)
	case <-time.After(2 * time.Second):
	}
	ok = true
	return p, nil
}

// checkUI fails early, and clearly, when the gateway does not serve the UI.
func (p *platform) checkUI() error {
	res, err := http.Get(p.base + "/")
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		return fmt.Errorf("GET / answered %d %q: the gateway does not serve the UI (routes.go must call g.registerUI(e))", res.StatusCode, res.Header.Get("Content-Type"))
	}
	return nil
}

func (p *platform) stop() {
	for _, c := range []*exec.Cmd{p.sim, p.dev} {
		if c == nil || c.Process == nil {
			continue
		}
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	if p.simDone != nil {
		select {
		case <-p.simDone:
		case <-time.After(10 * time.Second):
			_ = p.sim.Process.Kill()
		}
	}
	if p.dev != nil && p.dev.Process != nil {
		done := make(chan struct{})
		go func() { _ = p.dev.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = p.dev.Process.Kill()
		}
	}
	if p.keyspace != "" {
		if opt, err := redis.ParseURL(redisURL()); err == nil {
			rdb := redis.NewClient(opt)
			deletePrefix(rdb, p.keyspace)
			_ = rdb.Close()
		}
	}
	if p.tmp != "" {
		_ = os.RemoveAll(p.tmp)
	}
}

func deletePrefix(rdb *redis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var batch []string
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 500 {
			rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		rdb.Unlink(ctx, batch...)
	}
}

// token mints a bearer token with `pizza token` and the platform's
// development key.
func (p *platform) token(t *testing.T, role, subject, restaurant string) string {
	t.Helper()
	key := role + ":" + subject + ":" + restaurant
	if v, ok := p.tokens.Load(key); ok {
		return v.(string)
	}
	args := []string{"token", "--data-dir", p.dataDir, "--role", role, "--subject", subject, "--ttl", "1h"}
	if restaurant != "" {
		args = append(args, "--restaurant", restaurant)
	}
	out, err := exec.Command(p.bin, args...).Output()
	if err != nil {
		t.Fatalf("pizza %s: %v", strings.Join(args, " "), err)
	}
	tok := strings.TrimSpace(string(out))
	p.tokens.Store(key, tok)
	return tok
}

// api calls the gateway with a token and returns the status and body.
func (p *platform) api(t *testing.T, token, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, p.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func (p *platform) host() string {
	u, _ := url.Parse(p.base)
	return u.Host
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
