package projection

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Prefetcher is implemented by a projector that can tell, from an event's
// subject alone (before the event is decoded), which keys its Apply will
// read. The runtime then reads every such key of a batch with one MGET
// before applying the batch, instead of one GET round trip per key the
// first time Apply reads it.
//
// Prefetching changes no result: a key named but not read costs only its
// transfer; a key read but not named is read by itself, as without
// prefetching; and reads still see the batch's staged writes first.
type Prefetcher interface {
	// Prefetch calls key with the keys Apply will read (with Tx.Get or
	// GetDoc) for the event stored under subject. It must not read or
	// stage anything.
	Prefetch(tx *Tx, subject string, key func(key string))
}

// prefetch reads ahead, with one MGET, the keys p names for the batch's
// events. It does nothing for a projector that is not a Prefetcher.
func (tx *Tx) prefetch(ctx context.Context, p Projector, batch []jetstream.Msg) error {
	pf, ok := p.(Prefetcher)
	if !ok || len(batch) == 0 {
		return nil
	}
	subjects := make([]string, len(batch))
	for i, m := range batch {
		subjects[i] = m.Subject()
	}
	return tx.prefetchSubjects(ctx, pf, subjects)
}

// prefetchSubjects reads ahead the keys pf names for events stored under
// subjects, caching a missing key as missing.
func (tx *Tx) prefetchSubjects(ctx context.Context, pf Prefetcher, subjects []string) error {
	var keys []string
	seen := map[string]struct{}{}
	add := func(key string) {
		if _, dup := seen[key]; dup {
			return
		}
		if _, known := tx.read[key]; known {
			return
		}
		if _, known := tx.prev[key]; known {
			return
		}
		seen[key] = struct{}{}
		keys = append(keys, key)
	}
	for _, s := range subjects {
		pf.Prefetch(tx, s, add)
	}
	if len(keys) == 0 {
		return nil
	}
	vals, err := tx.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		tx.readErr = err
		return fmt.Errorf("prefetch %d keys: %w", len(keys), err)
	}
	if len(vals) != len(keys) {
		return fmt.Errorf("prefetch: MGET of %d keys returned %d values", len(keys), len(vals))
	}
	if tx.read == nil {
		tx.read = make(map[string]*string, len(keys))
	}
	for i, k := range keys {
		switch v := vals[i].(type) {
		case nil:
			tx.read[k] = nil
		case string:
			tx.read[k] = &v
		default:
			return fmt.Errorf("prefetch %s: unexpected reply %T", k, v)
		}
	}
	return nil
}
