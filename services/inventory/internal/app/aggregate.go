package app

import (
	"context"
	"errors"
	"fmt"
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
type recentCommands struct {
	ids   map[string]bool
	order []string
	next  int
}

func newRecentCommands(n int) recentCommands {
	return recentCommands{ids: make(map[string]bool, n), order: make([]string, 0, n)}
}

func (r *recentCommands) add(id string) {
	if id == "" || r.ids[id] {
		return
	}
	if len(r.order) < cap(r.order) {
		r.order = append(r.order, id)
	} else {
		delete(r.ids, r.order[r.next])
		r.order[r.next] = id
		r.next = (r.next + 1) % len(r.order)
	}
	r.ids[id] = true
}

func (r *recentCommands) has(id string) bool { return r.ids[id] }

// entry serialises the commands on one restaurant's stock inside this
// process and holds its cached aggregate. Other instances are kept in
// check by the expected sequence of every append.
type entry struct {
	id  string
	mu  sync.Mutex
	agg *aggregate // nil until loaded; guarded by mu
}

// catchUpDirectMax is the largest gap read with direct gets, one message
// at a time; longer gaps are read with an ordered consumer.
const catchUpDirectMax = 32

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
	st, err := c.stream(ctx, events.Inventory.Stream)
	if err != nil {
		return nil, err
	}
	subject := events.Inventory.Subject(restaurantID)
	if last-after <= catchUpDirectMax {
		var recs []eventstore.Record
		for next := after + 1; next <= last; {
			m, err := st.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subject))
			if err != nil {
				return nil, fmt.Errorf("read %s after %d: %w", subject, next-1, err)
			}
			rec, err := eventstore.DecodeMessage(c.reg, m.Subject, m.Header, m.Data, events.Inventory.Stream, m.Sequence, m.Time)
			if err != nil {
				return nil, err
			}
			recs = append(recs, rec)
			next = m.Sequence + 1
		}
		return recs, nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cons, err := c.js.OrderedConsumer(ctx, events.Inventory.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", subject, err)
	}
	var recs []eventstore.Record
	for {
		batch, err := cons.Fetch(512, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", subject, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			rec, err := c.store.Decode(m)
			if err != nil {
				return nil, err
			}
			recs = append(recs, rec)
			if rec.Seq >= last {
				return recs, nil
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read %s: %w", subject, err)
		}
		if got == 0 {
			return nil, fmt.Errorf("read %s: %w: stream ended before sequence %d", subject, eventstore.ErrUnavailable, last)
		}
	}
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
