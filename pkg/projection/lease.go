package projection

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// Projector leases (ADR 0018).
//
// Every instance of a service runs the service's projectors, and all of
// them write the same read models in the same Redis. The checkpoint check
// of applyScript keeps the model right whatever they do, but instances that
// race on one model waste each other's batches: the loser of every race
// starts again from the winner's checkpoint. A lease per model in Redis
// makes one instance the model's writer and the others standbys:
//
//   - the writer took the lease with SET NX PX and renews it every TTL/3
//     while it projects; applyScript refuses a batch unless the lease names
//     the writer (a fence: a writer that lost its lease, paused past the
//     TTL, cannot commit over its successor);
//   - a standby tries to take the lease every TTL/3 and meanwhile follows
//     the model's checkpoint, so its readiness and lag say how the model
//     (written by another instance) is doing;
//   - a writer that stops releases the lease, so a standby takes over at its
//     next try; a writer that dies leaves it to expire after the TTL.

// DefaultLeaseTTL is the lease time to live when Options.LeaseTTL is 0: the
// longest a model goes unprojected after its writer dies.
const DefaultLeaseTTL = 5 * time.Second

// LeaseKey is where the lease of a read model lives. It is outside the
// model's keys (KeyBase), so that deleting or switching a model leaves the
// lease alone.
func LeaseKey(keyspace, model string) string { return keyspace + "lease:projector:" + model }

// renewScript extends the lease if it is still the owner's. KEYS[1] lease
// key; ARGV[1] owner, ARGV[2] TTL in ms. Returns 1 if renewed, 0 if the
// lease is someone else's or gone.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// acquireScript takes the lease if it is free, or extends it if the owner
// already holds it (a writer that restarted its run). Returns 1 if held.
var acquireScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// releaseScript deletes the lease if it is the owner's.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

type lease struct {
	rdb   *redis.Client
	key   string
	owner string
	ttl   time.Duration
}

// newOwnerID names a runtime when the options do not: host, process and a
// random part, so two runtimes never share a name by accident.
func newOwnerID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "projector"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

func (l *lease) tryAcquire(ctx context.Context) (bool, error) {
	n, err := acquireScript.Run(ctx, l.rdb, []string{l.key}, l.owner, l.ttl.Milliseconds()).Int()
	return n == 1, err
}

func (l *lease) renew(ctx context.Context) (bool, error) {
	n, err := renewScript.Run(ctx, l.rdb, []string{l.key}, l.owner, l.ttl.Milliseconds()).Int()
	return n == 1, err
}

func (l *lease) release(ctx context.Context) error {
	return releaseScript.Run(ctx, l.rdb, []string{l.key}, l.owner).Err()
}

// holder returns who holds the lease ("" if nobody).
func (l *lease) holder(ctx context.Context) (string, error) {
	v, err := l.rdb.Get(ctx, l.key).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, err
}

// errLeaseLost ends a writer's run when its lease is gone or another's.
var errLeaseLost = errors.New("projector lease lost")

// hold renews the lease until ctx ends, and calls lost (once) when the lease
// is another owner's or could not be renewed for a whole TTL, after which
// another instance may hold it, or when check (run after each renewal)
// fails.
func (l *lease) hold(ctx context.Context, lost func(error), check func(context.Context) error) {
	every := l.ttl / 3
	t := time.NewTicker(every)
	defer t.Stop()
	lastRenewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, every)
		ok, err := l.renew(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && ok:
			lastRenewed = time.Now()
			cctx, cancel := context.WithTimeout(ctx, every)
			cerr := check(cctx)
			cancel()
			if cerr != nil && ctx.Err() == nil {
				lost(cerr)
				return
			}
		case err == nil:
			lost(errLeaseLost)
			return
		case time.Since(lastRenewed) >= l.ttl:
			lost(errors.Join(errLeaseLost, err))
			return
		}
	}
}
