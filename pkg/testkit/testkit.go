// Package testkit starts real, in-process infrastructure for tests: a
// nats-server with JetStream (single node or a cluster) on random ports with
// temporary storage, and a connection to the real Redis named by REDIS_URL.
// Nothing here is a fake: tests talk to the same servers production uses.
package testkit

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// RunJetStream starts a single in-process nats-server with JetStream on a
// random port and a temporary store. It is shut down when the test ends.
func RunJetStream(t testing.TB) *server.Server {
	t.Helper()
	return RunJetStreamIn(t, t.TempDir())
}

// RunJetStreamIn is RunJetStream with a given store directory (to restart a
// server on the same data).
func RunJetStreamIn(t testing.TB, storeDir string) *server.Server {
	t.Helper()
	opts := &server.Options{
		ServerName: "test-" + uuid.NewString()[:8],
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   storeDir,
		NoLog:      true,
		NoSigs:     true,
	}
	s := start(t, opts)
	t.Cleanup(s.Shutdown)
	return s
}

func start(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		t.Fatalf("nats-server %s not ready", opts.ServerName)
	}
	return s
}

// Connect opens a client connection to s, closed when the test ends.
func Connect(t testing.TB, s *server.Server, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on nc.
func JetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

// Eventually calls check until it returns nil or the timeout passes, then
// fails the test with the last error. It polls; it never sleeps blindly.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		timer := time.NewTimer(wait)
		<-timer.C
		if wait < 100*time.Millisecond {
			wait *= 2
		}
	}
}

// RedisURL returns REDIS_URL or the conventional local address.
func RedisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Redis connects to the real Redis of REDIS_URL and returns the client and
// a key prefix unique to this test, so tests can share one server. Keys
// under the prefix are removed when the test ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	opt, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at %s is not reachable (start redis-server or set REDIS_URL): %v", redact(RedisURL()), err)
	}
	prefix := fmt.Sprintf("test:%s:", uuid.NewString()[:12])
	t.Cleanup(func() {
		DeletePrefix(context.Background(), rdb, prefix)
		_ = rdb.Close()
	})
	return rdb, prefix
}

// DeletePrefix removes every key that starts with prefix.
func DeletePrefix(ctx context.Context, rdb *redis.Client, prefix string) {
	iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		rdb.Unlink(ctx, batch...)
	}
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return strings.Replace(u.Redacted(), u.User.String()+"@", "", 1)
}
