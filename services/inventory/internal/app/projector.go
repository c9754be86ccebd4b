package app

import (
	"context"
	"fmt"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
)

// Projector builds the stock read model: one JSON StockView per restaurant
// (inventoryapi.StockKey), the set of restaurants that have one
// (inventoryapi.RestaurantsKey), and a notification per applied event.
type Projector struct{}

func (Projector) Name() string     { return inventoryapi.ReadModel }
func (Projector) Stream() string   { return events.Inventory.Stream }
func (Projector) Filter() []string { return []string{events.Inventory.Wildcard()} }

// Apply folds one inventory event into its restaurant's view.
func (Projector) Apply(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
	id := rec.Envelope.AggregateID
	key := tx.Key("stock", id)
	var view inventoryapi.StockView
	raw, ok, err := tx.Get(ctx, key)
	if err != nil {
		return err
	}
	if ok {
		if err := codec.Unmarshal([]byte(raw), &view); err != nil {
			return fmt.Errorf("stock view %s is corrupt: %w", id, err)
		}
	}
	if err := applyToView(&view, rec); err != nil {
		return err
	}
	b, err := codec.Marshal(view)
	if err != nil {
		return err
	}
	tx.Set(key, string(b))
	if _, first := rec.Event.(events.StockInitialized); first {
		tx.SAdd(tx.Key("restaurants"), id)
	}
	note, err := codec.Marshal(inventoryapi.Notification{RestaurantID: id, Seq: rec.Seq, Stock: view})
	if err != nil {
		return err
	}
	tx.Notify(string(note))
	return nil
}
