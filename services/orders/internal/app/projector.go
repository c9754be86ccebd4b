package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
)

// Projector builds the order read model: one JSON view per order, the
// per-restaurant listings (all and by status), the set of active orders
// for stuck detection, each restaurant's order dashboard, and a
// notification per change for live tracking.
type Projector struct {
	Keyspace string
}

func (Projector) Name() string     { return ordersapi.ReadModel }
func (Projector) Stream() string   { return events.Orders.Stream }
func (Projector) Filter() []string { return []string{events.Orders.Wildcard()} }

// Prefetch names the order's view, which Apply reads for every event: the
// runtime reads the views of a whole batch in one round trip.
func (Projector) Prefetch(tx *projection.Tx, subject string, key func(string)) {
	if id, ok := events.Orders.AggregateID(subject); ok {
		key(tx.Key("order", id))
	}
}

// Apply folds one order event into the model.
func (p Projector) Apply(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
	id := rec.Envelope.AggregateID
	key := tx.Key("order", id)
	// The view is decoded once per batch and encoded once at its commit;
	// the events of a batch change it in place.
	vp, _, err := projection.GetDoc[ordersapi.OrderView](ctx, tx, key)
	if err != nil {
		return err
	}
	// Work on a copy, so an event the projector rejects leaves the batch's
	// document as it was.
	view := *vp
	view.Items = slices.Clone(vp.Items)
	view.StatusHistory = slices.Clone(vp.StatusHistory)
	before := view.Status
	wasStuck := view.Stuck
	if err := applyToView(&view, rec.Envelope, rec.Event, rec.Seq); err != nil {
		return err
	}
	*vp = view
	tx.PutDoc(key, vp)

	rid := view.RestaurantID
	member := fmt.Sprintf("%013d:%s", view.CreatedAt.UnixMilli(), id)
	if before == "" {
		tx.ZAdd(ordersapi.RestaurantOrdersKey(p.Keyspace, rid, ""), 0, member)
	}
	if view.Status != before {
		if before != "" {
			tx.ZRem(ordersapi.RestaurantOrdersKey(p.Keyspace, rid, before), member)
		}
		tx.ZAdd(ordersapi.RestaurantOrdersKey(p.Keyspace, rid, view.Status), 0, member)
		if slices.Contains(ordersapi.TerminalStatuses, view.Status) {
			tx.ZRem(ordersapi.ActiveOrdersKey(p.Keyspace), id)
		} else {
			tx.ZAdd(ordersapi.ActiveOrdersKey(p.Keyspace), float64(view.LastUpdated.UnixMilli()), id)
		}
	}
	if err := p.updateDashboard(ctx, tx, view, before, wasStuck, rec.Seq); err != nil {
		return err
	}

	// One notification per order per batch, with the order as the batch
	// writes it (each holds the whole order, so a watcher misses nothing),
	// embedding the document already encoded for the write.
	seq := rec.Seq
	tx.NotifyLatestDoc(id, key, "orderId", seq, "order", func() any {
		return ordersapi.Notification{OrderID: id, Seq: seq, Order: *vp}
	})
	return nil
}

func (p Projector) updateDashboard(ctx context.Context, tx *projection.Tx, view ordersapi.OrderView, before string, wasStuck bool, seq uint64) error {
	key := ordersapi.DashboardKey(p.Keyspace, view.RestaurantID)
	// One restaurant's dashboard changes with most of a batch's events:
	// decoded once per batch, encoded once at its commit.
	d, _, err := projection.GetDoc[ordersapi.DashboardOrders](ctx, tx, key)
	if err != nil {
		return err
	}
	if d.RestaurantID == "" {
		d.RestaurantID = view.RestaurantID
	}
	if d.OrdersByStatus == nil {
		d.OrdersByStatus = map[string]int{}
	}
	if d.StuckOrders == nil {
		d.StuckOrders = []string{}
	}
	if view.Status != before {
		if before != "" {
			d.OrdersByStatus[before]--
			if d.OrdersByStatus[before] <= 0 {
				delete(d.OrdersByStatus, before)
			}
		}
		d.OrdersByStatus[view.Status]++
		switch view.Status {
		case "ReadyForPickup":
			if start, ok := firstAt(view.StatusHistory, "Preparing"); ok {
				d.AvgPrepSeconds = runningMean(d.AvgPrepSeconds, d.PrepSamples, view.LastUpdated.Sub(start))
				d.PrepSamples++
			}
		case "Delivered":
			if start, ok := firstAt(view.StatusHistory, "PickedUp"); ok {
				d.AvgDeliverySeconds = runningMean(d.AvgDeliverySeconds, d.DeliverySamples, view.LastUpdated.Sub(start))
				d.DeliverySamples++
			}
		}
	}
	if view.Stuck && !wasStuck {
		d.StuckOrders = append(d.StuckOrders, view.OrderID)
	} else if wasStuck && !view.Stuck {
		d.StuckOrders = slices.DeleteFunc(d.StuckOrders, func(s string) bool { return s == view.OrderID })
	}
	d.ActiveOrders = 0
	for st, n := range d.OrdersByStatus {
		if !slices.Contains(ordersapi.TerminalStatuses, st) {
			d.ActiveOrders += n
		}
	}
	d.Version = seq
	d.LastUpdated = view.LastUpdated
	tx.PutDoc(key, d)
	return nil
}

func getJSON(ctx context.Context, tx *projection.Tx, key string, dst any) error {
	raw, ok, err := tx.Get(ctx, key)
	if err != nil || !ok {
		return err
	}
	if err := codec.Unmarshal([]byte(raw), dst); err != nil {
		return fmt.Errorf("read model key %s is corrupt: %w", key, err)
	}
	return nil
}

func firstAt(h []ordersapi.StatusChange, status string) (time.Time, bool) {
	for _, c := range h {
		if c.Status == status {
			return c.At, true
		}
	}
	return time.Time{}, false
}

func runningMean(mean float64, n int, d time.Duration) float64 {
	return mean + (d.Seconds()-mean)/float64(n+1)
}
