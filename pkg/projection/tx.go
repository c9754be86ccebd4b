// Package projection runs read-model projectors: it feeds a bounded
// context's events, in stream order, to one projector per read model and
// writes the projector's changes to Redis together with the checkpoint (the
// last applied stream sequence) in one atomic script. A redelivered event is
// therefore a no-op, the model never goes backwards, and an empty Redis
// simply means "rebuild from sequence 1", which the runtime does by itself.
package projection

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/redis/go-redis/v9"
)

// Projector builds one read model. It is the only writer of its keys.
type Projector interface {
	// Name names the read model; keys live under "<keyspace>rm:<name>:".
	// Changing it orphans the old keys and rebuilds from sequence 1.
	Name() string
	// Stream and Filter select the events the model is built from.
	Stream() string
	Filter() []string
	// Apply stages the changes one event makes. It must be deterministic:
	// a rebuild from sequence 1 has to produce the same model.
	Apply(ctx context.Context, tx *Tx, rec eventstore.Record) error
}

// Tx stages the Redis writes of a batch of events. Reads see staged writes,
// so a projector can read-modify-write the same key across events of one
// batch.
type Tx struct {
	rdb     redis.Cmdable
	base    string // "<keyspace>rm:<name>:"
	channel string
	seq     uint64
	staged  map[string]*string
	ops     [][]string
	readErr error
}

// Key returns the key of the read model for the given parts, joined by ":".
func (tx *Tx) Key(parts ...string) string { return tx.base + strings.Join(parts, ":") }

// Seq is the stream sequence of the event being applied.
func (tx *Tx) Seq() uint64 { return tx.seq }

// Get reads a string key, seeing writes staged earlier in the batch.
func (tx *Tx) Get(ctx context.Context, key string) (string, bool, error) {
	if v, ok := tx.staged[key]; ok {
		if v == nil {
			return "", false, nil
		}
		return *v, true, nil
	}
	v, err := tx.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		tx.readErr = err
		return "", false, err
	}
	return v, true, nil
}

// Set stages SET key value.
func (tx *Tx) Set(key, value string) {
	tx.staged[key] = &value
	tx.ops = append(tx.ops, []string{"SET", key, value})
}

// Del stages DEL key.
func (tx *Tx) Del(key string) {
	tx.staged[key] = nil
	tx.ops = append(tx.ops, []string{"DEL", key})
}

// ZAdd stages ZADD key score member.
func (tx *Tx) ZAdd(key string, score float64, member string) {
	tx.ops = append(tx.ops, []string{"ZADD", key, strconv.FormatFloat(score, 'f', -1, 64), member})
}

// ZRem stages ZREM key member.
func (tx *Tx) ZRem(key, member string) { tx.ops = append(tx.ops, []string{"ZREM", key, member}) }

// SAdd stages SADD key member.
func (tx *Tx) SAdd(key, member string) { tx.ops = append(tx.ops, []string{"SADD", key, member}) }

// SRem stages SREM key member.
func (tx *Tx) SRem(key, member string) { tx.ops = append(tx.ops, []string{"SREM", key, member}) }

// Notify stages a change notification on the read model's channel. It is
// published by the same script that writes the change, so a subscriber
// that reads after a notification sees the change.
func (tx *Tx) Notify(payload string) {
	tx.ops = append(tx.ops, []string{"PUBLISH", tx.channel, payload})
}
