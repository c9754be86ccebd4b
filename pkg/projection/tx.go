// Package projection runs read-model projectors: it feeds a bounded
// context's events, in stream order, to one projector per read model and
// writes the projector's changes to Redis together with the checkpoint (the
// last applied stream sequence) in one atomic script. A redelivered event is
// therefore a no-op, the model never goes backwards, and an empty Redis
// simply means "rebuild from sequence 1", which the runtime does by itself.
package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/awesome-pizza/pizza/pkg/events/codec"
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
	// docs holds the documents read with GetDoc, decoded once per batch;
	// dirty ones are encoded once, when the batch commits.
	docs map[string]*doc
	// read holds the values of keys read ahead for the batch (see
	// Prefetcher), nil for a key that does not exist. Staged writes take
	// precedence over it.
	read map[string]*string
	// prev holds the final values the previous batch wrote, whose commit
	// may still be running in Redis while this batch is applied (the
	// runtime overlaps them while catching up). It comes before read and
	// Redis: the projector is the only writer of its keys.
	prev map[string]*string
	// latest holds, per subject of NotifyLatest, the payload builder of
	// the batch's last change and when it was staged (latestN counts the
	// calls): notifications go out in the order of their last change.
	latest  map[string]latestNote
	latestN int
	// carried holds the documents of the previous batch, decoded and equal
	// to what that batch wrote (or read): a document a busy model changes
	// in every batch (a restaurant's dashboard or kitchen display) is then
	// decoded once per run instead of once per batch.
	carried map[string]*doc
}

// doc is a decoded JSON document of the batch.
type doc struct {
	v      any
	dirty  bool
	exists bool // stored (read from the model, or written by the batch)
}

// Key returns the key of the read model for the given parts, joined by ":".
func (tx *Tx) Key(parts ...string) string { return tx.base + strings.Join(parts, ":") }

// Seq is the stream sequence of the event being applied.
func (tx *Tx) Seq() uint64 { return tx.seq }

// Get reads a string key, seeing writes staged earlier in the batch.
func (tx *Tx) Get(ctx context.Context, key string) (string, bool, error) {
	if err := tx.flushDoc(key); err != nil {
		return "", false, err
	}
	if v, ok := tx.staged[key]; ok {
		if v == nil {
			return "", false, nil
		}
		return *v, true, nil
	}
	if v, ok := tx.prev[key]; ok {
		if v == nil {
			return "", false, nil
		}
		return *v, true, nil
	}
	if v, ok := tx.read[key]; ok {
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

// Set stages SET key value. Only the last value a batch sets for a key is
// written.
func (tx *Tx) Set(key, value string) {
	delete(tx.docs, key)
	tx.staged[key] = &value
}

// Del stages DEL key.
func (tx *Tx) Del(key string) {
	delete(tx.docs, key)
	tx.staged[key] = nil
}

// GetDoc returns the JSON document stored at key, decoded into a *T once
// per batch: later calls in the same batch return the same pointer, with
// the changes made to it since. Change the document in place and call
// PutDoc to have it written; it is encoded once, when the batch commits.
// For a missing key it returns a new zero T and false.
func GetDoc[T any](ctx context.Context, tx *Tx, key string) (*T, bool, error) {
	if d, ok := tx.docs[key]; ok {
		v, isT := d.v.(*T)
		if !isT {
			return nil, false, fmt.Errorf("read model key %s: read as %T and as %T in one batch", key, d.v, new(T))
		}
		return v, d.exists, nil
	}
	if d, ok := tx.carried[key]; ok {
		if _, restaged := tx.staged[key]; !restaged {
			if v, isT := d.v.(*T); isT && d.exists {
				delete(tx.carried, key)
				if tx.docs == nil {
					tx.docs = map[string]*doc{}
				}
				tx.docs[key] = &doc{v: v, exists: true}
				return v, true, nil
			}
		}
	}
	raw, ok, err := tx.Get(ctx, key)
	if err != nil {
		return nil, false, err
	}
	v := new(T)
	if ok {
		if err := codec.Unmarshal([]byte(raw), v); err != nil {
			return nil, false, fmt.Errorf("read model key %s is corrupt: %w", key, err)
		}
	}
	if tx.docs == nil {
		tx.docs = map[string]*doc{}
	}
	tx.docs[key] = &doc{v: v, exists: ok}
	return v, ok, nil
}

// PutDoc stages v (the pointer GetDoc returned, or a new document) as the
// JSON document at key.
func (tx *Tx) PutDoc(key string, v any) {
	if tx.docs == nil {
		tx.docs = map[string]*doc{}
	}
	tx.docs[key] = &doc{v: v, dirty: true, exists: true}
}

// flushDoc encodes a dirty document of key into the staged writes.
func (tx *Tx) flushDoc(key string) error {
	d, ok := tx.docs[key]
	if !ok || !d.dirty {
		return nil
	}
	b, err := codec.Marshal(d.v)
	if err != nil {
		return fmt.Errorf("read model key %s: %w", key, err)
	}
	s := string(b)
	tx.staged[key] = &s
	d.dirty = false
	return nil
}

// writes returns the batch's commands: the final value of every key set
// or deleted (in a stable order), then the other commands in the order
// they were staged.
func (tx *Tx) writes() ([][]string, error) {
	for key := range tx.docs {
		if err := tx.flushDoc(key); err != nil {
			return nil, err
		}
	}
	keys := make([]string, 0, len(tx.staged))
	for k := range tx.staged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	subjects := make([]string, 0, len(tx.latest))
	for id := range tx.latest {
		subjects = append(subjects, id)
	}
	sort.Slice(subjects, func(i, j int) bool { return tx.latest[subjects[i]].at < tx.latest[subjects[j]].at })
	for _, id := range subjects {
		payload, err := tx.latest[id].build()
		if err != nil {
			return nil, fmt.Errorf("notification %s: %w", id, err)
		}
		tx.ops = append(tx.ops, []string{"PUBLISH", tx.channel, payload})
	}
	tx.latest = nil
	out := make([][]string, 0, len(keys)+len(tx.ops))
	for _, k := range keys {
		if v := tx.staged[k]; v != nil {
			out = append(out, []string{"SET", k, *v})
		} else {
			out = append(out, []string{"DEL", k})
		}
	}
	return append(out, tx.ops...), nil
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

// latestNote is a subject's last notification in a batch.
type latestNote struct {
	build func() (string, error)
	at    int
}

// NotifyLatest stages one notification per subject per batch: of a
// subject's changes in a batch only the last one is announced, its payload
// built when the batch commits (after the batch's other notifications, in
// the order of each subject's last change, so the notifications of a
// model that carry the event's sequence still go out in stream order).
// For a model whose notification carries a whole document that many
// events of a batch change (a restaurant's kitchen display), this encodes
// the document once per batch instead of once per event; a subscriber sees
// the document as it stood after each batch.
func (tx *Tx) NotifyLatest(subject string, build func() (string, error)) {
	if tx.latest == nil {
		tx.latest = map[string]latestNote{}
	}
	tx.latestN++
	tx.latest[subject] = latestNote{build: build, at: tx.latestN}
}

// NotifyLatestDoc is NotifyLatest for a notification that carries a
// document the batch writes: {"<idField>":<subject>,"seq":<seq>,"<docField>":
// <the value written at key>}, the document embedded as written, so it is
// encoded once. When the batch does not write key, fallback's value is
// encoded instead.
func (tx *Tx) NotifyLatestDoc(subject, key, idField string, seq uint64, docField string, fallback func() any) {
	tx.NotifyLatest(subject, func() (string, error) {
		doc, ok := tx.Written(key)
		if !ok {
			note, err := codec.Marshal(fallback())
			return string(note), err
		}
		id, err := json.Marshal(subject)
		if err != nil {
			return "", err
		}
		field, _ := json.Marshal(idField)
		docName, _ := json.Marshal(docField)
		return "{" + string(field) + ":" + string(id) + `,"seq":` + strconv.FormatUint(seq, 10) + "," + string(docName) + ":" + doc + "}", nil
	})
}

// Written returns the value the batch writes to key, once the batch's
// documents are encoded: inside a NotifyLatest builder it is the document
// as the batch leaves it, so a notification can embed it without encoding
// it again.
func (tx *Tx) Written(key string) (string, bool) {
	v, ok := tx.staged[key]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}
