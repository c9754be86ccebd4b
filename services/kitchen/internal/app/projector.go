package app

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
)

// Projector builds the kitchen display: one JSON document per restaurant
// (tickets, chefs, counts) and a notification per change for the live
// display. Chef names and capacities come from the catalogue.
type Projector struct {
	Catalog *catalog.Catalog
}

func (Projector) Name() string     { return kitchenapi.ReadModel }
func (Projector) Stream() string   { return events.Kitchen.Stream }
func (Projector) Filter() []string { return []string{events.Kitchen.Wildcard()} }

// Apply folds one kitchen event into its restaurant's display.
func (p Projector) Apply(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
	restaurantID := restaurantOf(rec.Event)
	if restaurantID == "" {
		return nil // a withdrawal before the ticket existed: nothing on any display
	}
	r, _ := p.Catalog.Restaurant(restaurantID)
	key := tx.Key("display", restaurantID)
	raw, ok, err := tx.Get(ctx, key)
	if err != nil {
		return err
	}
	var d kitchenapi.KitchenDisplay
	switch {
	case ok:
		if err := json.Unmarshal([]byte(raw), &d); err != nil {
			return fmt.Errorf("kitchen display %s is corrupt: %w", restaurantID, err)
		}
	case r != nil:
		d = kitchenapi.EmptyDisplay(r)
	default:
		d = kitchenapi.KitchenDisplay{RestaurantID: restaurantID}
	}
	if !applyToDisplay(&d, r, rec.Envelope.AggregateID, rec.Event, rec.Seq, rec.Envelope.OccurredAt) {
		return nil
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	tx.Set(key, string(b))
	note, err := json.Marshal(kitchenapi.Notification{RestaurantID: restaurantID, Seq: rec.Seq, Display: d})
	if err != nil {
		return err
	}
	tx.Notify(string(note))
	return nil
}
