package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Leader election for work that one instance must do alone (the kitchen's
// scheduler, which counts every chef's load), with the same lease rules as
// the partitions (ADR 0015): a KV bucket whose TTL expires a dead
// leader's lease, a create-if-absent write to take it, updates on its last
// revision to renew it every TTL/4, and a local deadline before the server
// could expire it, at which the leader's work is cancelled.

// LeaderSpec names a role and its lease.
type LeaderSpec struct {
	// Role names the work, e.g. "kitchen-scheduler"; the lease lives in the
	// KV bucket leader_<role>.
	Role string
	// Member names this instance (the pod name). Default: a random id.
	Member string
	// TTL is how long a dead leader keeps the role. Default 10s, minimum 1s.
	TTL time.Duration
	// Replicas of the bucket (the streams' replicas). Default 1.
	Replicas int
	Logger   *slog.Logger
}

// Leadership is a member of a role's election, running.
type Leadership struct {
	leading atomic.Bool
	terms   atomic.Uint64
}

// Leading reports whether this member holds the role now.
func (l *Leadership) Leading() bool { return l.leading.Load() }

// Terms counts the times this member took the role.
func (l *Leadership) Terms() uint64 { return l.terms.Load() }

const leaderKey = "leader"

// Lead takes part in the election of spec.Role until ctx ends: whenever
// this member holds the role it runs work with a context that ends when
// the lease may be lost (or ctx ends), then releases the role and stands
// by again. It returns when ctx ends, or at once if the bucket cannot be
// made.
func Lead(ctx context.Context, js jetstream.JetStream, spec LeaderSpec, l *Leadership, work func(context.Context)) error {
	if spec.TTL <= 0 {
		spec.TTL = 10 * time.Second
	}
	spec.TTL = max(spec.TTL, time.Second)
	if spec.Replicas < 1 {
		spec.Replicas = 1
	}
	spec.Member = sanitizeMember(spec.Member)
	if spec.Member == "" {
		spec.Member = nuid.Next()
	}
	log := spec.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("role", spec.Role, "member", spec.Member)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      "leader_" + spec.Role,
		Description: fmt.Sprintf("lease of the %s role", spec.Role),
		History:     1,
		TTL:         spec.TTL,
		Storage:     jetstream.MemoryStorage,
		Replicas:    spec.Replicas,
	})
	if err != nil {
		return fmt.Errorf("leader %s: %w", spec.Role, err)
	}
	e := elector{kv: kv, spec: spec, log: log, l: l}
	announced := false
	for ctx.Err() == nil {
		rev, deadline, ok := e.take(ctx)
		if ok {
			announced = false
			e.term(ctx, rev, deadline, work)
			continue
		}
		if !announced {
			log.Info("another instance holds the role; standing by")
			announced = true
		}
		e.waitFree(ctx)
	}
	return nil
}

type elector struct {
	kv   jetstream.KeyValue
	spec LeaderSpec
	log  *slog.Logger
	l    *Leadership
}

// deadline is when a lease written at sent must be considered lost.
func (e *elector) deadline(sent time.Time) time.Time {
	return sent.Add(e.spec.TTL - max(e.spec.TTL/10, 100*time.Millisecond))
}

// take tries to take the role (or adopt it, if a lost reply left it this
// member's).
func (e *elector) take(ctx context.Context) (uint64, time.Time, bool) {
	sent := time.Now()
	rev, err := e.kv.Create(ctx, leaderKey, []byte(e.spec.Member))
	if errors.Is(err, jetstream.ErrKeyExists) {
		cur, gerr := e.kv.Get(ctx, leaderKey)
		if gerr != nil || string(cur.Value()) != e.spec.Member {
			return 0, time.Time{}, false
		}
		sent = time.Now()
		rev, err = e.kv.Update(ctx, leaderKey, []byte(e.spec.Member), cur.Revision())
	}
	if err != nil {
		if ctx.Err() == nil && !isRevisionConflict(err) {
			e.log.Warn("taking the role failed", "err", err)
		}
		return 0, time.Time{}, false
	}
	return rev, e.deadline(sent), true
}

// waitFree waits until the role's lease is deleted or expires, or TTL/4.
func (e *elector) waitFree(ctx context.Context) {
	wctx, cancel := context.WithTimeout(ctx, e.spec.TTL/4)
	defer cancel()
	w, err := e.kv.Watch(wctx, leaderKey, jetstream.UpdatesOnly())
	if err != nil {
		<-wctx.Done()
		return
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-wctx.Done():
			return
		case entry, ok := <-w.Updates():
			if !ok {
				<-wctx.Done()
				return
			}
			if entry != nil && entry.Operation() != jetstream.KeyValuePut {
				return
			}
		}
	}
}

// term runs work while the lease is renewed, then releases the role.
func (e *elector) term(ctx context.Context, rev uint64, deadline time.Time, work func(context.Context)) {
	e.l.leading.Store(true)
	e.l.terms.Add(1)
	defer e.l.leading.Store(false)
	e.log.Info("role taken")
	tctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(time.Until(deadline), func() { cancel(errors.New("lease may have expired")) })
	defer watchdog.Stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		work(tctx)
	}()
	t := time.NewTicker(e.spec.TTL / 4)
	defer t.Stop()
	for {
		select {
		case <-done:
			e.release(rev)
			return
		case <-tctx.Done():
			<-done
			if ctx.Err() != nil || context.Cause(tctx) == nil {
				e.release(rev)
			} else {
				e.log.Warn("role lost", "cause", context.Cause(tctx))
			}
			return
		case <-t.C:
			sent := time.Now()
			rctx, rcancel := context.WithTimeout(tctx, e.spec.TTL/4)
			next, err := e.kv.Update(rctx, leaderKey, []byte(e.spec.Member), rev)
			rcancel()
			switch {
			case err == nil:
				rev = next
				watchdog.Reset(time.Until(e.deadline(sent)))
			case isRevisionConflict(err):
				cancel(errors.New("lease taken by another member"))
			default:
				if tctx.Err() == nil {
					e.log.Warn("renewing the role failed", "err", err)
				}
			}
		}
	}
}

// release deletes the lease if it is still this term's, so a standby takes
// the role at once.
func (e *elector) release(rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := e.kv.Delete(ctx, leaderKey, jetstream.LastRevision(rev)); err != nil && !isRevisionConflict(err) {
		e.log.Warn("releasing the role failed; it expires instead", "err", err)
		return
	}
	e.log.Info("role released")
}
