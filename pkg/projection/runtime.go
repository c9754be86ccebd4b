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
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// applyScript applies a batch: it refuses unless the stored checkpoint is
// the one the batch was built on (another writer moved it, or Redis was
// wiped under the runtime), runs the staged commands, and moves the
// checkpoint, all atomically.
//
// KEYS[1] checkpoint key. ARGV[1] expected checkpoint, ARGV[2] last
// sequence of the batch, ARGV[3] number of commands, then per command its
// argument count and arguments.
var applyScript = redis.NewScript(`
local cp = tonumber(redis.call('GET', KEYS[1]) or '0')
if cp ~= tonumber(ARGV[1]) then
  return redis.error_reply('STALE checkpoint ' .. cp)
end
local i = 4
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
}

// Runtime runs one projector.
type Runtime struct {
	js   jetstream.JetStream
	rdb  *redis.Client
	reg  *events.Registry
	p    Projector
	opts Options
	log  *slog.Logger

	checkpoint atomic.Uint64
	caughtUp   atomic.Bool
	caughtCh   chan struct{}
	caughtOnce sync.Once
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
	return &Runtime{js: js, rdb: rdb, reg: reg, p: p, opts: opts, log: log.With("projector", p.Name()), caughtCh: make(chan struct{})}
}

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
	const firstBackoff = 50 * time.Millisecond
	backoff := firstBackoff
	for {
		before := r.checkpoint.Load()
		err := r.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if r.checkpoint.Load() != before {
			backoff = firstBackoff // it made progress: a new trouble starts small
		}
		r.log.Warn("projection interrupted; resuming from checkpoint", "checkpoint", r.checkpoint.Load(), "retry_in", backoff, "err", err)
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
		r.log.Warn("checkpoint is ahead of the stream; rebuilding the read model", "checkpoint", cp, "stream_last_seq", info.State.LastSeq)
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
		pendingAfter, err := r.apply(ctx, cpKey, batch)
		if err != nil {
			return err
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
	tx := &Tx{rdb: r.rdb, base: KeyBase(r.opts.Keyspace, r.p.Name()), channel: Channel(r.opts.Keyspace, r.p.Name()), staged: map[string]*string{}}
	var first, last, pending uint64
	cp := r.checkpoint.Load()
	for _, m := range batch {
		md, err := m.Metadata()
		if err != nil {
			return 0, err
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
		rec, err := eventstore.DecodeMessage(r.reg, m.Subject(), m.Headers(), m.Data(), md.Stream, seq, md.Timestamp)
		if err == nil {
			tx.seq = seq
			err = r.p.Apply(ctx, tx, rec)
		}
		if err != nil {
			if tx.readErr != nil {
				return 0, fmt.Errorf("apply seq %d: %w", seq, tx.readErr)
			}
			// The event cannot be projected (malformed, unknown version,
			// rejected by the projector): park it, raise the alert, and go on.
			if perr := r.park(ctx, m, md, err); perr != nil {
				return 0, perr
			}
		}
	}
	if first == 0 {
		return pending, nil
	}
	args := make([]any, 0, 3+len(tx.ops)*4)
	args = append(args, cp, last, len(tx.ops))
	for _, op := range tx.ops {
		args = append(args, len(op))
		for _, a := range op {
			args = append(args, a)
		}
	}
	if err := applyScript.Run(ctx, r.rdb, []string{cpKey}, args...).Err(); err != nil {
		if strings.HasPrefix(err.Error(), "STALE") {
			return 0, fmt.Errorf("another writer advanced the read model: %w", err)
		}
		return 0, fmt.Errorf("commit seq %d..%d: %w", first, last, err)
	}
	r.checkpoint.Store(last)
	return pending, nil
}

func (r *Runtime) park(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata, cause error) error {
	dl := eventstore.DeadLetter{Stream: md.Stream, Consumer: "projector-" + r.p.Name(), Subject: m.Subject(), Seq: md.Sequence.Stream, Deliveries: 1, Error: cause.Error()}
	stored, err := eventstore.Park(ctx, r.js, dl, m.Headers(), m.Data())
	if err != nil {
		return err
	}
	if stored {
		r.log.Error("ALERT: event skipped by projector and dead-lettered", "alert", "dead_letter", "seq", dl.Seq, "subject", dl.Subject, "err", cause)
		if r.opts.OnDeadLetter != nil {
			r.opts.OnDeadLetter(dl)
		}
	}
	return nil
}
