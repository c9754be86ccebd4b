package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/tracing"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// applyScript applies a batch: it refuses unless the stored checkpoint is
// the one the batch was built on (another writer moved it, or Redis was
// wiped under the runtime), runs the staged commands, and moves the
// checkpoint, all atomically.
//
// A leased writer also names its lease: the batch is refused unless the
// lease is still the writer's (see lease.go).
//
// KEYS[1] checkpoint key, KEYS[2] lease key. ARGV[1] expected checkpoint,
// ARGV[2] last sequence of the batch, ARGV[3] number of commands, ARGV[4]
// the lease owner ("" without a lease), then per command its argument
// count and arguments.
var applyScript = redis.NewScript(`
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[4] then
  return redis.error_reply('LEASE not held')
end
local cp = tonumber(redis.call('GET', KEYS[1]) or '0')
if cp ~= tonumber(ARGV[1]) then
  return redis.error_reply('STALE checkpoint ' .. cp)
end
local i = 5
for _ = 1, tonumber(ARGV[3]) do
  local argc = tonumber(ARGV[i])
  local args = {}
  for a = 1, argc do args[a] = ARGV[i + a] end
  i = i + argc + 1
  redis.call(unpack(args))
end
redis.call('SET', KEYS[1], ARGV[2])
return tonumber(ARGV[2])
`)

// Options tune a Runtime.
type Options struct {
	// Keyspace prefixes every key and channel; lets several platforms (or a
	// rebuild next to the live model) share one Redis. Default "pizza:".
	Keyspace string
	// BatchSize bounds the events applied in one script. Default 256.
	BatchSize int
	Logger    *slog.Logger
	// OnDeadLetter is called when an event the projector cannot apply is
	// parked in the dead-letter stream and skipped.
	OnDeadLetter func(eventstore.DeadLetter)
	// LagInterval is how often a running projector measures how far it is
	// behind its stream, for the lag metrics (see metrics.go). Default
	// 10s; negative turns it off.
	LagInterval time.Duration
	// LeaseOwner names this runtime among the runtimes of the same model in
	// the same keyspace (the service instance). Default: a random name.
	LeaseOwner string
	// LeaseTTL is how long the model's lease outlives its writer (lease.go):
	// one runtime per model and keyspace writes, the others stand by.
	// Default DefaultLeaseTTL; negative runs without a lease (the caller
	// knows it is the only writer, as a rebuild into a scratch keyspace is).
	LeaseTTL time.Duration
}

// Runtime runs one projector.
type Runtime struct {
	js   jetstream.JetStream
	rdb  *redis.Client
	reg  *events.Registry
	p    Projector
	opts Options
	log  *slog.Logger

	lease      *lease // nil without one
	leased     atomic.Bool
	checkpoint atomic.Uint64
	counters   *projectorCounters // in the process's telemetry
	caughtUp   atomic.Bool
	caughtCh   chan struct{}
	caughtOnce sync.Once
	overlapped atomic.Uint64 // commits that ran while the next batch was applied
	// Test hooks: hookPrepared is called when a batch has been prepared;
	// hookOverlapCommit when a commit is sent to the background, and what
	// it returns runs first in that background commit.
	hookPrepared      func()
	hookOverlapCommit func() func()
}

// New returns a runtime for projector p.
func New(js jetstream.JetStream, rdb *redis.Client, reg *events.Registry, p Projector, opts Options) *Runtime {
	if opts.Keyspace == "" {
		opts.Keyspace = "pizza:"
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 256
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Runtime{js: js, rdb: rdb, reg: reg, p: p, opts: opts, log: log.With("projector", p.Name()), caughtCh: make(chan struct{}),
		counters: countersOf(p.Name(), p.Stream())}
	if opts.LeaseTTL >= 0 {
		ttl := opts.LeaseTTL
		if ttl == 0 {
			ttl = DefaultLeaseTTL
		}
		owner := opts.LeaseOwner
		if owner == "" {
			owner = newOwnerID()
		}
		r.lease = &lease{rdb: rdb, key: LeaseKey(opts.Keyspace, p.Name()), owner: owner, ttl: max(ttl, 300*time.Millisecond)}
	}
	return r
}

// Writing reports whether this runtime holds the model's lease and
// projects (always true while running without a lease).
func (r *Runtime) Writing() bool { return r.leased.Load() }

// KeyBase is the prefix of every key of a read model in a keyspace.
func KeyBase(keyspace, model string) string { return keyspace + "rm:" + model + ":" }

// CheckpointKey is where a read model's checkpoint lives.
func CheckpointKey(keyspace, model string) string { return KeyBase(keyspace, model) + "_checkpoint" }

// Channel is the change-notification channel of a read model.
func Channel(keyspace, model string) string { return keyspace + "notify:" + model }

// Checkpoint returns the last stream sequence applied (as last seen by this runtime).
func (r *Runtime) Checkpoint() uint64 { return r.checkpoint.Load() }

// CaughtUp reports whether the model has applied every event that existed
// when the runtime started (the start-up rebuild is done).
func (r *Runtime) CaughtUp() bool { return r.caughtUp.Load() }

// WaitCaughtUp blocks until CaughtUp or ctx ends.
func (r *Runtime) WaitCaughtUp(ctx context.Context) error {
	select {
	case <-r.caughtCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Runtime) markCaughtUp() {
	r.caughtOnce.Do(func() {
		r.caughtUp.Store(true)
		close(r.caughtCh)
		r.log.Info("read model caught up", "checkpoint", r.checkpoint.Load())
	})
}

// Reset deletes the read model's keys and checkpoint, so the next Run
// rebuilds it from sequence 1.
func (r *Runtime) Reset(ctx context.Context) error {
	return DeleteModel(ctx, r.rdb, r.opts.Keyspace, r.p.Name())
}

// DeleteModel removes every key of a read model in a keyspace.
func DeleteModel(ctx context.Context, rdb *redis.Client, keyspace, model string) error {
	iter := rdb.Scan(ctx, 0, KeyBase(keyspace, model)+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return rdb.Unlink(ctx, batch...).Err()
	}
	return nil
}

// Run applies events until ctx ends. Transient failures (Redis or NATS
// unavailable) are retried with backoff from the last checkpoint; Run
// returns only when ctx is done.
func (r *Runtime) Run(ctx context.Context) error {
	stopLag := r.watchLag(ctx)
	defer stopLag()
	const firstBackoff = 50 * time.Millisecond
	backoff := firstBackoff
	for {
		if err := r.standBy(ctx); err != nil {
			return nil
		}
		before := r.checkpoint.Load()
		err := r.runLeased(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errLeaseLost) {
			r.log.WarnContext(ctx, "projector lease lost; standing by", "checkpoint", r.checkpoint.Load(), "err", err)
			continue
		}
		if r.checkpoint.Load() != before {
			backoff = firstBackoff // it made progress: a new trouble starts small
		}
		r.log.WarnContext(ctx, "projection interrupted; resuming from checkpoint", "checkpoint", r.checkpoint.Load(), "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// standBy returns once this runtime holds the model's lease (at once
// without a lease), or with ctx's error. Meanwhile it follows the model's
// checkpoint, written by the lease holder, and counts the model caught up
// once it reaches the stream's last sequence as of the wait's start.
func (r *Runtime) standBy(ctx context.Context) error {
	if r.lease == nil {
		r.leased.Store(true)
		return nil
	}
	var target uint64
	targetKnown := false
	announced := false
	every := r.lease.ttl / 3
	for {
		ok, err := r.lease.tryAcquire(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil && ok {
			r.leased.Store(true)
			r.log.InfoContext(ctx, "projector lease taken; writing the read model", "owner", r.lease.owner)
			return nil
		}
		if err == nil {
			if !announced {
				holder, _ := r.lease.holder(ctx)
				r.log.InfoContext(ctx, "read model written by another instance; standing by", "owner", r.lease.owner, "holder", holder)
				announced = true
			}
			r.followCheckpoint(ctx, &target, &targetKnown)
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// followCheckpoint, for a standby, reads the model's checkpoint and marks
// the model caught up when it reaches the target (found on first call).
func (r *Runtime) followCheckpoint(ctx context.Context, target *uint64, known *bool) {
	cp, err := r.readCheckpoint(ctx, CheckpointKey(r.opts.Keyspace, r.p.Name()))
	if err != nil {
		return
	}
	r.checkpoint.Store(cp)
	if !*known {
		last, err := eventstore.LastSeq(ctx, r.js, r.p.Stream())
		if err != nil {
			return
		}
		*target, *known = last, true
	}
	if cp >= *target {
		r.markCaughtUp()
	}
}

// runLeased runs the projection while the lease is held: a lost lease
// cancels the run and runLeased returns errLeaseLost. When the run ends
// otherwise (ctx ended, or an error), the lease is released for a standby
// to take.
func (r *Runtime) runLeased(ctx context.Context) error {
	if r.lease == nil {
		return r.runOnce(ctx)
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	held := make(chan struct{})
	go func() {
		defer close(held)
		r.lease.hold(runCtx, cancel, r.checkIntact)
	}()
	err := r.runOnce(runCtx)
	cancel(nil)
	<-held
	cause := context.Cause(runCtx)
	switch {
	case errors.Is(cause, errLeaseLost):
		r.leased.Store(false)
		return cause
	case errors.Is(err, errLeaseLost): // the commit was refused: the lease is another's
		r.leased.Store(false)
		return err
	case errors.Is(cause, errModelReset):
		err = cause
	}
	// Stopping, or interrupted (NATS or Redis unreachable from here): let
	// another instance, which may reach them, take the model over. This
	// one competes for it again after its backoff.
	r.leased.Store(false)
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer rcancel()
	if rerr := r.lease.release(rctx); rerr != nil {
		r.log.Warn("projector lease not released; it expires by itself", "err", rerr)
	}
	return err
}

// errModelReset interrupts a writer whose model was deleted or replaced
// under it while it had nothing to commit.
var errModelReset = errors.New("read model reset under the projector")

// checkIntact fails when the stored checkpoint is behind what this writer
// committed: the model was deleted (or a rebuilt one switched in) while the
// writer was idle, and it has to start again from the stored checkpoint.
// (While a commit is in flight the stored checkpoint can only be ahead.)
func (r *Runtime) checkIntact(ctx context.Context) error {
	cp, err := r.readCheckpoint(ctx, CheckpointKey(r.opts.Keyspace, r.p.Name()))
	if err != nil {
		return nil // unknown: the next commit or renewal tells
	}
	if mine := r.checkpoint.Load(); cp < mine {
		return fmt.Errorf("%w: stored checkpoint %d, committed %d", errModelReset, cp, mine)
	}
	return nil
}

type delivery struct {
	msg jetstream.Msg
	err error
}

func (r *Runtime) runOnce(ctx context.Context) error {
	cpKey := CheckpointKey(r.opts.Keyspace, r.p.Name())
	cp, err := r.readCheckpoint(ctx, cpKey)
	if err != nil {
		return err
	}
	st, err := r.js.Stream(ctx, r.p.Stream())
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	if cp > info.State.LastSeq {
		// The stream is behind the model: it was recreated or restored.
		r.log.WarnContext(ctx, "checkpoint is ahead of the stream; rebuilding the read model", "checkpoint", cp, "stream_last_seq", info.State.LastSeq)
		if err := r.Reset(ctx); err != nil {
			return err
		}
		cp = 0
	}
	r.checkpoint.Store(cp)
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: r.p.Filter(), DeliverPolicy: jetstream.DeliverAllPolicy}
	if cp > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = cp + 1
	}
	cons, err := r.js.OrderedConsumer(ctx, r.p.Stream(), cfg)
	if err != nil {
		return err
	}
	if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
		r.markCaughtUp()
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(r.opts.BatchSize * 2))
	if err != nil {
		return err
	}
	defer it.Stop()
	ch := make(chan delivery, r.opts.BatchSize)
	go func() {
		defer close(ch)
		for {
			m, err := it.Next()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			select {
			case ch <- delivery{m, err}:
			case <-ctx.Done():
				return
			}
			if err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoHeartbeat) {
				return
			}
		}
	}()

	// While catching up, a batch's commit runs in Redis while the next
	// batch is applied (its reads see the committing batch's writes through
	// Tx.prev); the next commit starts only after the previous one
	// succeeded, so commits stay in order and a failed one stops the run
	// before anything after it is written. Once caught up, every batch is
	// committed before the runtime says so.
	var inflight *commitJob
	wait := func() error {
		if inflight == nil {
			return nil
		}
		err := <-inflight.done
		inflight = nil
		return err
	}
	defer func() { _ = wait() }()
	prepared := cp
	var carried map[string]*doc // the last prepared batch's documents (Tx.carried)
	batch := make([]jetstream.Msg, 0, r.opts.BatchSize)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d, ok := <-ch:
			if !ok {
				return errors.New("message iterator closed")
			}
			if d.err != nil {
				if errors.Is(d.err, nats.ErrTimeout) || errors.Is(d.err, jetstream.ErrNoHeartbeat) {
					continue
				}
				return d.err
			}
			batch = append(batch, d.msg)
		}
	fill:
		for len(batch) < r.opts.BatchSize {
			select {
			case d, ok := <-ch:
				if !ok || d.err != nil {
					break fill
				}
				batch = append(batch, d.msg)
			default:
				break fill
			}
		}
		var prev map[string]*string
		if inflight != nil {
			prev = inflight.staged
		}
		j, pendingAfter, err := r.prepare(ctx, batch, prepared, prev, carried)
		if err != nil {
			return err
		}
		if j != nil {
			carried = j.docs
		}
		if r.hookPrepared != nil {
			r.hookPrepared()
		}
		if err := wait(); err != nil {
			return err
		}
		if j != nil {
			prepared = j.last
			if pendingAfter > 0 {
				j.done = make(chan error, 1)
				inflight = j
				r.overlapped.Add(1)
				before := func() {}
				if r.hookOverlapCommit != nil {
					before = r.hookOverlapCommit()
				}
				go func() {
					before()
					j.done <- r.commit(ctx, cpKey, j)
				}()
				continue
			}
			if err := r.commit(ctx, cpKey, j); err != nil {
				return err
			}
		}
		if pendingAfter == 0 {
			r.markCaughtUp()
		}
	}
}

func (r *Runtime) readCheckpoint(ctx context.Context, key string) (uint64, error) {
	v, err := r.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read checkpoint: %w", err)
	}
	return strconv.ParseUint(v, 10, 64)
}

// apply projects a batch and commits it with the checkpoint. It returns the
// number of events still pending in the stream after the batch.
func (r *Runtime) apply(ctx context.Context, cpKey string, batch []jetstream.Msg) (uint64, error) {
	j, pending, err := r.prepare(ctx, batch, r.checkpoint.Load(), nil, nil)
	if err != nil || j == nil {
		return pending, err
	}
	return pending, r.commit(ctx, cpKey, j)
}

// commitJob is a batch applied and ready to commit: the apply script's
// arguments, and the final values the batch writes.
type commitJob struct {
	first, last, n uint64
	args           []any
	staged         map[string]*string
	docs           map[string]*doc
	done           chan error
}

// prepare applies a batch after sequence cp, reading through prev (the
// writes of a batch still committing) and reusing the documents carried
// from the previous batch, and returns its commit (nil when
// every event was at or below cp) and the events pending after the batch.
func (r *Runtime) prepare(ctx context.Context, batch []jetstream.Msg, cp uint64, prev map[string]*string, carried map[string]*doc) (*commitJob, uint64, error) {
	tx := &Tx{rdb: r.rdb, base: KeyBase(r.opts.Keyspace, r.p.Name()), channel: Channel(r.opts.Keyspace, r.p.Name()), staged: map[string]*string{}, prev: prev, carried: carried}
	var first, last, pending, n uint64
	if err := tx.prefetch(ctx, r.p, batch); err != nil {
		return nil, 0, err
	}
	for _, m := range batch {
		md, err := m.Metadata()
		if err != nil {
			return nil, 0, err
		}
		seq := md.Sequence.Stream
		pending = md.NumPending
		if seq <= cp {
			continue // already applied: redelivery is a no-op
		}
		if first == 0 {
			first = seq
		}
		last = seq
		n++
		rec, err := eventstore.DecodeMessage(r.reg, m.Subject(), m.Headers(), m.Data(), md.Stream, seq, md.Timestamp)
		if err == nil {
			tx.seq = seq
			err = r.p.Apply(ctx, tx, rec)
		}
		if err != nil {
			if tx.readErr != nil {
				return nil, 0, fmt.Errorf("apply seq %d: %w", seq, tx.readErr)
			}
			// The event cannot be projected (malformed, unknown version,
			// rejected by the projector): park it, raise the alert, and go on.
			if perr := r.park(ctx, m, md, err); perr != nil {
				return nil, 0, perr
			}
		}
	}
	if first == 0 {
		return nil, pending, nil
	}
	ops, err := tx.writes()
	if err != nil {
		return nil, 0, fmt.Errorf("commit seq %d..%d: %w", first, last, err)
	}
	args := make([]any, 0, 4+len(ops)*4)
	owner := ""
	if r.lease != nil && r.leased.Load() {
		owner = r.lease.owner
	}
	args = append(args, cp, last, len(ops), owner)
	for _, op := range ops {
		args = append(args, len(op))
		for _, a := range op {
			args = append(args, a)
		}
	}
	return &commitJob{first: first, last: last, n: n, args: args, staged: tx.staged, docs: carryDocs(tx)}, pending, nil
}

// maxCarriedDocs bounds the decoded documents kept from batch to batch.
const maxCarriedDocs = 1024

// carryDocs returns the documents the next batch may reuse: this batch's,
// and those carried into it that it did not use or overwrite, while they
// number at most maxCarriedDocs (past that, only this batch's). It updates
// the carried map in place: the batch that received it is done with it.
func carryDocs(tx *Tx) map[string]*doc {
	c := tx.carried
	if c == nil || len(c)+len(tx.docs) > maxCarriedDocs {
		c = make(map[string]*doc, len(tx.docs))
	}
	for k := range tx.staged {
		delete(c, k) // written by this batch: its own document (if any) replaces it below
	}
	for k, d := range tx.docs {
		c[k] = d
	}
	return c
}

// commit runs a prepared batch's apply script: the writes and the
// checkpoint, atomically, fenced by the lease and the expected checkpoint.
func (r *Runtime) commit(ctx context.Context, cpKey string, j *commitJob) error {
	leaseKey := LeaseKey(r.opts.Keyspace, r.p.Name())
	if err := applyScript.Run(ctx, r.rdb, []string{cpKey, leaseKey}, j.args...).Err(); err != nil {
		if strings.HasPrefix(err.Error(), "LEASE") {
			return fmt.Errorf("commit seq %d..%d: %w: %w", j.first, j.last, errLeaseLost, err)
		}
		if strings.HasPrefix(err.Error(), "STALE") {
			return fmt.Errorf("another writer advanced the read model: %w", err)
		}
		return fmt.Errorf("commit seq %d..%d: %w", j.first, j.last, err)
	}
	r.checkpoint.Store(j.last)
	r.counters.applied.Add(j.n)
	return nil
}

func (r *Runtime) park(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata, cause error) error {
	dl := eventstore.DeadLetter{Stream: md.Stream, Consumer: "projector-" + r.p.Name(), Subject: m.Subject(), Seq: md.Sequence.Stream, Deliveries: 1, Error: cause.Error()}
	stored, err := eventstore.Park(ctx, r.js, dl, m.Headers(), m.Data())
	if err != nil {
		return err
	}
	if stored {
		r.counters.parked.Add(1)
		// The alert names the event's trace and order.
		if env, err := events.UnmarshalEnvelope(m.Data()); err == nil {
			ctx = tracing.FromTraceParent(ctx, env.TraceParent)
			if md.Stream == events.Orders.Stream {
				ctx = tracing.WithOrderID(ctx, env.AggregateID)
			} else {
				ctx = tracing.WithOrderID(ctx, tracing.OrderIDFromJSON(env.Data))
			}
		}
		r.log.ErrorContext(ctx, "ALERT: event skipped by projector and dead-lettered", "alert", "dead_letter", "seq", dl.Seq, "subject", dl.Subject, "err", cause)
		if r.opts.OnDeadLetter != nil {
			r.opts.OnDeadLetter(dl)
		}
	}
	return nil
}
