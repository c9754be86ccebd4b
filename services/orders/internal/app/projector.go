package app

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
)

// Projector builds the order read model: one JSON view per order, an index
// of each restaurant's orders by creation time, and a notification per
// change for live tracking.
type Projector struct{}

func (Projector) Name() string     { return ordersapi.ReadModel }
func (Projector) Stream() string   { return events.Orders.Stream }
func (Projector) Filter() []string { return []string{events.Orders.Wildcard()} }

// Apply folds one order event into the order's view.
func (Projector) Apply(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
	id := rec.Envelope.AggregateID
	key := tx.Key("order", id)
	var view ordersapi.OrderView
	raw, ok, err := tx.Get(ctx, key)
	if err != nil {
		return err
	}
	if ok {
		if err := json.Unmarshal([]byte(raw), &view); err != nil {
			return fmt.Errorf("order view %s is corrupt: %w", id, err)
		}
	}
	if err := applyToView(&view, rec.Envelope, rec.Event, rec.Seq); err != nil {
		return err
	}
	b, err := json.Marshal(view)
	if err != nil {
		return err
	}
	tx.Set(key, string(b))
	if _, placed := rec.Event.(events.OrderPlaced); placed {
		tx.ZAdd(tx.Key("restaurant", view.RestaurantID), float64(view.CreatedAt.UnixMilli()), id)
	}
	note, err := json.Marshal(ordersapi.Notification{OrderID: id, Seq: rec.Seq, Order: view})
	if err != nil {
		return err
	}
	tx.Notify(string(note))
	return nil
}
