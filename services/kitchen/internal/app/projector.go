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
	// The display is decoded once per batch and encoded once at its
	// commit; the batch's events change it in place.
	d, ok, err := projection.GetDoc[kitchenapi.KitchenDisplay](ctx, tx, key)
	if err != nil {
		return fmt.Errorf("kitchen display %s: %w", restaurantID, err)
	}
	if !ok && d.RestaurantID == "" {
		if r != nil {
			*d = kitchenapi.EmptyDisplay(r)
		} else {
			*d = kitchenapi.KitchenDisplay{RestaurantID: restaurantID}
		}
	}
	if !applyToDisplay(d, r, rec.Envelope.AggregateID, rec.Event, rec.Seq, rec.Envelope.OccurredAt) {
		return nil
	}
	tx.PutDoc(key, d)
	// The display is announced once per batch, as it stands after the
	// batch, and without its tickets (kitchenapi.Notification).
	seq := rec.Seq
	tx.NotifyLatest(restaurantID, func() (string, error) {
		b, err := json.Marshal(kitchenapi.Notification{RestaurantID: restaurantID, Seq: seq, Counts: d.Counts})
		return string(b), err
	})
	return nil
}
