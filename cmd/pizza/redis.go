package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/redis/go-redis/v9"
)

// redisBackend is the Redis the platform's read models live in, and how to
// let go of it at shutdown.
type redisBackend struct {
	Client *redis.Client
	URL    string
	Kind   string // "external", "child", "embedded"
	stop   func()
}

func (r *redisBackend) Close() {
	if r.Client != nil {
		_ = r.Client.Close()
	}
	if r.stop != nil {
		r.stop()
	}
}

// openRedis picks the read-model store: the URL when one is given; else a
// redis-server found on PATH, started as a child on a free loopback port
// with its files under dataDir; else an embedded in-memory Redis-protocol
// server. The last two start empty, which is safe: read models rebuild
// from the event log at start.
func openRedis(ctx context.Context, url, dataDir string, log *slog.Logger) (*redisBackend, error) {
	if url != "" {
		rdb, err := service.ConnectRedis(ctx, url, log)
		if err != nil {
			return nil, err
		}
		return &redisBackend{Client: rdb, URL: service.Redact(url), Kind: "external"}, nil
	}
	if bin, err := exec.LookPath("redis-server"); err == nil {
		return startRedisChild(ctx, bin, filepath.Join(dataDir, "redis"), log)
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	log.Warn("no REDIS_URL and no redis-server on PATH: using an embedded in-memory Redis-protocol server; read models are rebuilt from the log at every start", "addr", mr.Addr())
	u := "redis://" + mr.Addr()
	rdb, err := service.ConnectRedis(ctx, u, log)
	if err != nil {
		mr.Close()
		return nil, err
	}
	return &redisBackend{Client: rdb, URL: u, Kind: "embedded", stop: mr.Close}, nil
}

func startRedisChild(ctx context.Context, bin, dir string, log *slog.Logger) (*redisBackend, error) {
	// redis-server changes into --dir before it opens --logfile, so a
	// relative logfile would be looked up inside dir again: pass it whole.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--maxmemory-policy", "noeviction", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	u := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := rdb.Ping(pctx).Err()
		cancel()
		if err == nil {
			break
		}
		select {
		case <-exited:
			_ = rdb.Close()
			return nil, fmt.Errorf("redis-server exited at start; see %s", filepath.Join(dir, "redis.log"))
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = rdb.Close()
			stop()
			return nil, errors.Join(errors.New("redis-server did not answer within 10s"), err)
		}
		t := time.NewTimer(50 * time.Millisecond)
		<-t.C
	}
	log.Info("started redis-server as a child process (read models rebuild from the log)", "url", u, "pid", cmd.Process.Pid)
	return &redisBackend{Client: rdb, URL: u, Kind: "child", stop: stop}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
