package app

import (
	"context"
	"fmt"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
)

// Projector builds the kitchen displays, each stored in parts (ADR 0023,
// kitchenapi.HeadKey): a head per restaurant (chefs, counts, version), a
// queue index and one key per ticket; and it announces each changed
// display once per batch. Chef names and capacities come from the
// catalogue.
type Projector struct {
	Catalog *catalog.Catalog
}

func (Projector) Name() string     { return kitchenapi.ReadModel }
func (Projector) Stream() string   { return events.Kitchen.Stream }
func (Projector) Filter() []string { return []string{events.Kitchen.Wildcard()} }

// Prefetch names the ticket of the event's order (a chef's id names no
// ticket and costs a missing key): a batch's tickets are read in one
// round trip.
func (Projector) Prefetch(tx *projection.Tx, subject string, key func(string)) {
	if id, ok := events.Kitchen.AggregateID(subject); ok {
		key(tx.Key("ticket", id))
	}
}

// Apply folds one kitchen event into its restaurant's display.
func (p Projector) Apply(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
	restaurantID := restaurantOf(rec.Event)
	if restaurantID == "" {
		return nil // a withdrawal before the ticket existed: nothing on any display
	}
	r, _ := p.Catalog.Restaurant(restaurantID)
	key := tx.Key("head", restaurantID)
	// The head is decoded once per batch (and carried to the next) and
	// encoded once at its commit; the batch's events change it in place.
	h, ok, err := projection.GetDoc[kitchenapi.StoredHead](ctx, tx, key)
	if err != nil {
		return fmt.Errorf("kitchen display %s: %w", restaurantID, err)
	}
	if !ok && h.Display.RestaurantID == "" {
		if r != nil {
			h.Display = kitchenapi.EmptyDisplay(r)
		} else {
			h.Display = kitchenapi.KitchenDisplay{RestaurantID: restaurantID}
		}
	}
	changed, err := applyToDisplay(h, txParts{ctx: ctx, tx: tx}, r, restaurantID, rec.Envelope.AggregateID, rec.Event, rec.Seq, rec.Envelope.OccurredAt)
	if err != nil {
		return fmt.Errorf("kitchen display %s: %w", restaurantID, err)
	}
	if !changed {
		return nil
	}
	tx.PutDoc(key, h)
	// The display is announced once per batch, as it stands after the
	// batch, and without its tickets (kitchenapi.Notification).
	seq := rec.Seq
	tx.NotifyLatest(restaurantID, func() (string, error) {
		b, err := codec.Marshal(kitchenapi.Notification{RestaurantID: restaurantID, Seq: seq, Counts: h.Display.Counts})
		return string(b), err
	})
	return nil
}

// txParts keeps a display's tickets in the projector's transaction.
type txParts struct {
	ctx context.Context
	tx  *projection.Tx
}

func (p txParts) ticket(orderID string) (*kitchenapi.StoredTicket, bool, error) {
	return projection.GetDoc[kitchenapi.StoredTicket](p.ctx, p.tx, p.tx.Key("ticket", orderID))
}

func (p txParts) put(t *kitchenapi.StoredTicket, added bool) {
	p.tx.PutDoc(p.tx.Key("ticket", t.OrderID), t)
	if added {
		p.tx.ZAdd(p.tx.Key("queue", t.RestaurantID), float64(t.QueueSeq), t.OrderID)
	}
}

func (p txParts) remove(t *kitchenapi.StoredTicket) {
	p.tx.Del(p.tx.Key("ticket", t.OrderID))
	p.tx.ZRem(p.tx.Key("queue", t.RestaurantID), t.OrderID)
}
