package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/inventory/internal/domain"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
	"github.com/nats-io/nats.go/jetstream"
)

// aggregate is a restaurant's stock as of stream sequence seq, with what
// the view needs besides the levels.
type aggregate struct {
	stock       *domain.Stock
	seq         uint64
	lastUpdated time.Time
	alerts      []inventoryapi.AlertView
	commands    recentCommands
	// stale is set when an append's outcome is unknown: the next command
	// catches up with the log before deciding.
	stale bool
}

func newAggregate(restaurantID string, menu []string) *aggregate {
	return &aggregate{stock: domain.New(restaurantID, menu), commands: newRecentCommands(recentCommandsKept)}
}

func (a *aggregate) apply(rec eventstore.Record) {
	a.stock.Apply(rec.Event)
	a.seq = rec.Seq
	a.lastUpdated = rec.Envelope.OccurredAt
	switch e := rec.Event.(type) {
	case events.StockRunningLow:
		a.alerts = pushAlert(a.alerts, e, rec)
	case events.StockRestocked, events.StockAdjusted:
		a.commands.add(rec.CommandID)
	}
}

func (a *aggregate) view() inventoryapi.StockView {
	return buildView(a.stock.RestaurantID(), a.stock.Levels(), a.alerts, a.seq, a.lastUpdated)
}

// recentCommandsKept bounds the restock and adjustment command ids an
// aggregate remembers to recognise retries after the duplicate window.
const recentCommandsKept = 1024

// recentCommands is a bounded set of command ids, oldest evicted first.
// A command id of a keyed command is "<kind>:<restaurant>:<key hash>:<request
// hash>" (commandIDFor); the set is indexed by everything before the request
// hash, so a key reused with another request is recognised.
type recentCommands struct {
	ids   map[string]string // key part → request hash ("" for ids without one)
	order []string
	next  int
}

func newRecentCommands(n int) recentCommands {
	return recentCommands{ids: make(map[string]string, n), order: make([]string, 0, n)}
}

// splitCommandID separates a command id's request hash (its fourth
// field) from the rest. Ids written before requests were hashed, and ids
// of commands without an Idempotency-Key, have none.
func splitCommandID(id string) (key, request string) {
	if parts := strings.SplitN(id, ":", 4); len(parts) == 4 {
		return strings.Join(parts[:3], ":"), parts[3]
	}
	return id, ""
}

func (r *recentCommands) add(id string) {
	if id == "" {
		return
	}
	key, request := splitCommandID(id)
	if _, known := r.ids[key]; known {
		return
	}
	if len(r.order) < cap(r.order) {
		r.order = append(r.order, key)
	} else {
		delete(r.ids, r.order[r.next])
		r.order[r.next] = key
		r.next = (r.next + 1) % len(r.order)
	}
	r.ids[key] = request
}

// match reports whether the command was seen, and if so whether with the
// same request (an id without a request hash matches any).
func (r *recentCommands) match(id string) (seen, same bool) {
	key, request := splitCommandID(id)
	stored, seen := r.ids[key]
	if !seen {
		return false, false
	}
	return true, stored == "" || request == "" || stored == request
}

// entry serialises the commands on one restaurant's stock inside this
// process and holds its cached aggregate. Other instances are kept in
// check by the expected sequence of every append.
type entry struct {
	id  string
	mu  sync.Mutex
	agg *aggregate // nil until loaded; guarded by mu
}

// catchUp brings the entry's aggregate up to the log: a full load when
// nothing is cached, otherwise only the events after the cached sequence.
// The caller holds e.mu.
func (c *Commands) catchUp(ctx context.Context, e *entry) error {
	last, err := c.store.LastSeq(ctx, e.id)
	if err != nil {
		return err
	}
	agg := e.agg
	if agg == nil || last < agg.seq {
		// Nothing cached, or the stream was recreated behind the cache.
		agg = newAggregate(e.id, c.menu)
	}
	if last > agg.seq {
		recs, err := c.readAfter(ctx, e.id, agg.seq, last)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			agg.apply(rec)
		}
	}
	agg.stale = false
	e.agg = agg
	return nil
}

// readAfter returns the events of a restaurant's stock with sequences in
// (after, last].
func (c *Commands) readAfter(ctx context.Context, restaurantID string, after, last uint64) ([]eventstore.Record, error) {
	subject := events.Inventory.Subject(restaurantID)
	// Batched direct gets: nothing is created on the server, and ctx is
	// obeyed (an ordered consumer's reset retries forever, past any
	// deadline, when the server goes away).
	recs, err := c.store.LoadAfter(ctx, restaurantID, after)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", subject, err)
	}
	for i, rec := range recs {
		if rec.Seq >= last {
			return recs[:i+1], nil
		}
	}
	return nil, fmt.Errorf("read %s: %w: the log ended before sequence %d", subject, eventstore.ErrUnavailable, last)
}

// stream returns a (cached) handle on a stream; its cached info tells the
// client to use direct gets.
func (c *Commands) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	c.streamsMu.Lock()
	defer c.streamsMu.Unlock()
	if st, ok := c.streams[name]; ok {
		return st, nil
	}
	st, err := c.js.Stream(ctx, name)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("stream %s: %w: %v", name, eventstore.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	c.streams[name] = st
	return st, nil
}
