package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// pizza dev's default data directory is relative (.pizza-data): the child
// redis-server must start from it and write its log there.
func TestRedisChildStartsFromARelativeDataDir(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not on PATH (.ci/run installs it): %v", err)
	}
	t.Chdir(t.TempDir())
	ctx := context.Background()
	r, err := startRedisChild(ctx, bin, filepath.Join(".pizza-data", "redis"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Client.Ping(ctx).Err(); err != nil {
		t.Fatalf("child redis-server: %v", err)
	}
	if _, err := os.Stat(filepath.Join(".pizza-data", "redis", "redis.log")); err != nil {
		t.Fatalf("no redis.log in the data directory: %v", err)
	}
}
