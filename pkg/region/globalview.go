package region

import (
	"context"
	"log/slog"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// GlobalViewService keeps the chain-wide dashboard: it provisions
// ORDERS_GLOBAL in the GLOBAL account and projects it into Redis, and
// reads the view back. `pizza dev --regions` runs one; in Kubernetes the
// gateways of the global home region run it (one writes, the others stand
// by: projector leases, ADR 0018) and serve GET /api/global/dashboard.
type GlobalViewService struct {
	js       jetstream.JetStream // a connection to the GLOBAL account
	rdb      *redis.Client
	topology Topology
	keyspace string
	opts     GlobalOptions
	log      *slog.Logger
	rt       *projection.Runtime
	watch    *SourceWatch
}

// GlobalKeyspace is the keyspace of the chain-wide view under a platform's
// keyspace.
func GlobalKeyspace(keyspace string) string { return keyspace + "global:" }

// NewGlobalView prepares the chain-wide view of the topology's regions in
// rdb under GlobalKeyspace(keyspace). owner names this process among the
// view's writers (its instance id; "" for a random one).
func NewGlobalView(gjs jetstream.JetStream, rdb *redis.Client, t Topology, keyspace, owner string, o GlobalOptions, log *slog.Logger) *GlobalViewService {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "global-view")
	ks := GlobalKeyspace(keyspace)
	g := &GlobalViewService{js: gjs, rdb: rdb, topology: t, keyspace: ks, opts: o, log: log,
		rt: projection.New(gjs, rdb, events.NewRegistry(), GlobalDashboard{}, projection.Options{Keyspace: ks, Logger: log, LeaseOwner: owner})}
	// The writer of the view also watches its completeness (SourceWatch,
	// ADR 0020): a lost acknowledgement or a hole is repaired at once; a
	// region GLOBAL stays behind is reported after 30 s, and its source
	// re-seeded after 3 minutes, past nats-server's own retry backoff.
	g.watch = &SourceWatch{JS: gjs, Topology: t, Log: log, Active: g.rt.Writing, Reseed: 3 * time.Minute}
	return g
}

// Sources is what the view's source watch last saw of every region, how
// many sources it repaired, and how many holes it found; empty in a
// process that does not write the view.
func (g *GlobalViewService) Sources() ([]SourceStatus, int, int) {
	return g.watch.Statuses(), g.watch.Reseeds(), g.watch.Holes()
}

// Provision creates or updates ORDERS_GLOBAL.
func (g *GlobalViewService) Provision(ctx context.Context) error {
	return ProvisionGlobal(ctx, g.js, g.topology, g.opts)
}

// Run provisions ORDERS_GLOBAL, retrying while the GLOBAL account's
// JetStream is not reachable (a region starting), then projects it until
// ctx ends.
func (g *GlobalViewService) Run(ctx context.Context) error {
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 30*time.Second) {
		err := g.Provision(ctx)
		if err == nil {
			break
		}
		g.log.Warn("chain-wide stream not provisioned yet; retrying", "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	gctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = g.watch.Run(gctx) }()
	defer func() { stop(); <-done }()
	return g.rt.Run(ctx)
}

// View reads the chain-wide dashboard.
func (g *GlobalViewService) View(ctx context.Context) (GlobalView, error) {
	return ReadGlobalView(ctx, g.rdb, g.keyspace, g.topology.Names())
}

// CaughtUp reports whether the view includes every event ORDERS_GLOBAL
// held when its projector started.
func (g *GlobalViewService) CaughtUp() bool { return g.rt.CaughtUp() }

// Runtime exposes the view's projector (lag, waits).
func (g *GlobalViewService) Runtime() *projection.Runtime { return g.rt }
