package app

import (
	"container/list"
	"maps"
	"sync"

	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/orders/internal/domain"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
)

// aggregate is an order's state as of stream sequence seq, with its view.
type aggregate struct {
	order domain.Order
	view  ordersapi.OrderView
	seq   uint64
	// commands are the ids of every command stored on the order: a retry
	// of any of them, however late, is recognised and not decided again.
	commands map[string]bool
}

func (a *aggregate) apply(rec eventstore.Record) error {
	if err := applyToView(&a.view, rec.Envelope, rec.Event, rec.Seq); err != nil {
		return err
	}
	a.order.Apply(rec.Event, rec.Envelope.OccurredAt)
	a.seq = rec.Seq
	if rec.CommandID != "" {
		if a.commands == nil {
			a.commands = map[string]bool{}
		}
		a.commands[rec.CommandID] = true
	}
	return nil
}

func (a *aggregate) clone() *aggregate {
	c := *a
	c.view = cloneView(a.view)
	c.commands = maps.Clone(a.commands)
	return &c
}

// cache keeps recently used aggregates so that a command on a known order
// needs no read from the log. It is only an optimisation: the server's
// expected-sequence check catches a stale entry, which is then reloaded.
type cache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[string]*list.Element
}

type cacheEntry struct {
	id  string
	agg *aggregate
}

func newCache(max int) *cache {
	return &cache{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *cache) get(id string) (*aggregate, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[id]; ok {
		c.ll.MoveToFront(el)
		return el.Value.(*cacheEntry).agg, true
	}
	return nil, false
}

// put stores agg unless a newer state of the same order is already cached.
func (c *cache) put(id string, agg *aggregate) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[id]; ok {
		e := el.Value.(*cacheEntry)
		if e.agg.seq < agg.seq {
			e.agg = agg
		}
		c.ll.MoveToFront(el)
		return
	}
	c.items[id] = c.ll.PushFront(&cacheEntry{id: id, agg: agg})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*cacheEntry).id)
	}
}

func (c *cache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[id]; ok {
		c.ll.Remove(el)
		delete(c.items, id)
	}
}
