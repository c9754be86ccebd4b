package fault_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// productionStreams are the stream options production runs with, as
// pkg/eventstore defines them.
var productionStreams = eventstore.StreamOptions{Replicas: 3, Production: true}

// repoPath is a path relative to the repository root.
func repoPath(parts ...string) string {
	return filepath.Join(append([]string{"..", ".."}, parts...)...)
}

// Production configuration guard: the promises of the log rest on a few
// settings that a careless edit could drop. This test fails when one goes.
func TestProductionConfigurationGuard(t *testing.T) {
	// The summary counts the edits tried on the log (faults) and the
	// events still stored after them.
	edits, published, stored := 0, 0, 0
	t.Run("domain streams", func(t *testing.T) {
		for _, c := range events.DomainContexts() {
			cfg := eventstore.DomainStreamConfig(c, productionStreams)
			checkKeptForever(t, cfg)
			if cfg.Replicas != 3 {
				t.Errorf("%s: %d replicas with the production options, want 3", cfg.Name, cfg.Replicas)
			}
			if !cfg.DenyDelete || !cfg.DenyPurge {
				t.Errorf("%s: deny delete %v, deny purge %v with the production options; the log must never be edited", cfg.Name, cfg.DenyDelete, cfg.DenyPurge)
			}
			if cfg.Storage != jetstream.FileStorage {
				t.Errorf("%s: storage %v, want file storage", cfg.Name, cfg.Storage)
			}
			if cfg.Retention != jetstream.LimitsPolicy {
				t.Errorf("%s: retention %v: a work-queue or interest policy would delete consumed events", cfg.Name, cfg.Retention)
			}
		}
	})
	t.Run("dead-letter stream", func(t *testing.T) {
		cfg := eventstore.DeadLetterStreamConfig(productionStreams)
		checkKeptForever(t, cfg)
		if cfg.Replicas != 3 {
			t.Errorf("%s: %d replicas with the production options, want 3", cfg.Name, cfg.Replicas)
		}
	})
	t.Run("server refuses to edit the log", func(t *testing.T) {
		// The same options on one real server (one replica: a single node
		// cannot place three): purge and delete are refused.
		ctx := context.Background()
		js := testkit.JetStream(t, testkit.Connect(t, testkit.RunJetStream(t)))
		one := productionStreams
		one.Replicas = 1
		if err := eventstore.Provision(ctx, js, one, events.DomainContexts()...); err != nil {
			t.Fatal(err)
		}
		for _, c := range events.DomainContexts() {
			if _, err := js.Publish(ctx, c.Subject("guard"), []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			published++
			st, err := js.Stream(ctx, c.Stream)
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			checkKeptForever(t, info.Config)
			edits += 2
			if err := st.Purge(ctx); err == nil {
				t.Errorf("%s: purge succeeded", c.Stream)
			}
			if err := st.DeleteMsg(ctx, 1); err == nil {
				t.Errorf("%s: deleting an event succeeded", c.Stream)
			}
			info, err = st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != 1 {
				t.Errorf("%s: %d messages after refused edits, want 1", c.Stream, info.State.Msgs)
			}
			stored += int(info.State.Msgs)
		}
	})
	t.Run("prod NATS config", func(t *testing.T) {
		confs, _ := filepath.Glob(repoPath("k8s", "overlays", "prod", "*.conf"))
		var natsConf string
		for _, c := range confs {
			b, err := os.ReadFile(c)
			if err == nil && strings.Contains(string(b), "jetstream") {
				natsConf = c
			}
		}
		if natsConf == "" {
			t.Skip("no NATS config (*.conf with a jetstream block) in k8s/overlays/prod")
		}
		// The config includes files the base ConfigMap puts beside it
		// (authorization.conf): assemble the directory as the pod sees it.
		dir := t.TempDir()
		for _, src := range append(confs, mustGlob(t, repoPath("k8s", "base", "nats", "*.conf"))...) {
			if filepath.Base(src) == filepath.Base(natsConf) && src != natsConf {
				continue // the overlay's nats.conf replaces the base one
			}
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(src)), b, 0o600); err != nil {
				t.Fatal(err)
			}
			// Passwords come from the environment in the pod; any value parses.
			for _, m := range envRef.FindAllStringSubmatch(string(b), -1) {
				t.Setenv(m[1], "guard-test-password")
			}
		}
		natsConf = filepath.Join(dir, filepath.Base(natsConf))
		opts := loadNATSConfig(t, natsConf)
		if !opts.JetStream {
			t.Errorf("%s: JetStream is not enabled", natsConf)
		}
		if !opts.SyncAlways {
			t.Errorf("%s: jetstream.sync_interval is not \"always\": an acknowledged event could be lost when every node loses power at once", natsConf)
		}
		if opts.StoreDir == "" {
			t.Errorf("%s: no jetstream store_dir", natsConf)
		}
		if len(opts.Routes) < 3 {
			t.Errorf("%s: %d cluster routes, want the 3 nodes", natsConf, len(opts.Routes))
		}
	})
	t.Run("prod service settings", func(t *testing.T) {
		base, err := configLiterals(repoPath("k8s", "base", "kustomization.yaml"))
		if errors.Is(err, os.ErrNotExist) {
			t.Skip("no k8s/base/kustomization.yaml")
		}
		if err != nil {
			t.Fatal(err)
		}
		prod, err := configLiterals(repoPath("k8s", "overlays", "prod", "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range prod {
			base[k] = v
		}
		// The services provision their streams: in production with three
		// replicas and with delete and purge denied (--stream-replicas,
		// --production, read from PIZZA_* in the pizza-config ConfigMap).
		if got := base["PIZZA_STREAM_REPLICAS"]; got != "3" {
			t.Errorf("prod overlay: PIZZA_STREAM_REPLICAS=%q, want 3", got)
		}
		if got := base["PIZZA_PRODUCTION"]; got != "true" {
			t.Errorf("prod overlay: PIZZA_PRODUCTION=%q, want true: without it the services provision the domain streams without deny delete/purge", got)
		}
	})
	t.Run("prod Redis config", func(t *testing.T) {
		b, err := os.ReadFile(repoPath("k8s", "overlays", "prod", "redis.conf"))
		if errors.Is(err, os.ErrNotExist) {
			t.Skip("no k8s/overlays/prod/redis.conf")
		}
		if err != nil {
			t.Fatal(err)
		}
		// An evicted key is a hole in a read model that no checkpoint
		// notices: Redis must refuse writes instead.
		if !regexp.MustCompile(`(?m)^\s*maxmemory-policy\s+noeviction\s*$`).Match(b) {
			t.Error("k8s/overlays/prod/redis.conf: maxmemory-policy is not noeviction")
		}
	})
	summary{Test: "config-guard", Faults: edits, Acked: published, Stored: stored, Extra: []any{"checks", "streams,dead-letter,server-refuses-edits,nats-conf,service-settings,redis-conf"}}.print(t)
}

// checkKeptForever fails when a stream could drop events by itself.
func checkKeptForever(t *testing.T, cfg jetstream.StreamConfig) {
	t.Helper()
	if cfg.Discard != jetstream.DiscardNew {
		t.Errorf("%s: discard policy %v, want new: a full stream must refuse writes, not drop history", cfg.Name, cfg.Discard)
	}
	if cfg.MaxAge != 0 {
		t.Errorf("%s: MaxAge %v: events would expire", cfg.Name, cfg.MaxAge)
	}
	if cfg.MaxBytes > 0 || cfg.MaxMsgs > 0 || cfg.MaxMsgsPerSubject > 0 {
		t.Errorf("%s: limits MaxBytes %d MaxMsgs %d MaxMsgsPerSubject %d: the log must be kept whole", cfg.Name, cfg.MaxBytes, cfg.MaxMsgs, cfg.MaxMsgsPerSubject)
	}
}

// loadNATSConfig reads a nats-server config file the way the server does.
// Environment references ($NAME) the pod would supply get placeholders.
func loadNATSConfig(t *testing.T, path string) *server.Options {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(string(b), -1) {
		if _, ok := os.LookupEnv(m[1]); !ok {
			t.Setenv(m[1], "placeholder")
		}
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return opts
}

// configLiterals returns the KEY=value literals of the pizza-config
// ConfigMap generator of a kustomization file.
func configLiterals(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	literal := regexp.MustCompile(`^\s*-\s*(PIZZA_[A-Z0-9_]+)=(.*?)\s*$`)
	inPizza := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := regexp.MustCompile(`^\s*-\s*name:\s*(\S+)`).FindStringSubmatch(line); m != nil {
			inPizza = m[1] == "pizza-config"
			continue
		}
		if m := literal.FindStringSubmatch(line); m != nil && inPizza {
			out[m[1]] = strings.Trim(m[2], `"'`)
		}
	}
	return out, sc.Err()
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// envRef finds the environment variables a NATS config refers to ($NAME).
var envRef = regexp.MustCompile(`\$([A-Z][A-Z0-9_]*)`)
