// Package app is the inventory service's application layer: the restaurant
// stock aggregates with their in-process serialisation and cache, command
// handling against the event store (optimistic concurrency with retries),
// the reactions to order and kitchen events, the stock read-model
// projector, and the NATS micro endpoints.
package app

import (
	"fmt"
	"slices"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/inventory/internal/domain"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
)

// buildView renders levels as the stock view. The projector and the
// command replies both use it, so a reply shows what the read model will.
func buildView(restaurantID string, levels domain.Levels, alerts []inventoryapi.AlertView, seq uint64, at time.Time) inventoryapi.StockView {
	v := inventoryapi.StockView{
		RestaurantID: restaurantID,
		Items:        make([]inventoryapi.ItemView, 0, len(levels)),
		LowStock:     []string{},
		RecentAlerts: slices.Clone(alerts),
		Version:      seq,
		LastUpdated:  at,
	}
	if v.RecentAlerts == nil {
		v.RecentAlerts = []inventoryapi.AlertView{}
	}
	for _, ing := range levels.Ingredients() {
		l := levels[ing]
		v.Items = append(v.Items, inventoryapi.ItemView{
			Ingredient: ing, OnHand: l.OnHand, Reserved: l.Reserved, Available: l.Available(),
			Threshold: l.Threshold, Low: l.Low(), AlertOpen: l.Alert,
		})
		if l.Low() {
			v.LowStock = append(v.LowStock, ing)
		}
	}
	return v
}

// levelsOf reads the levels back from a view.
func levelsOf(v inventoryapi.StockView) domain.Levels {
	ls := make(domain.Levels, len(v.Items))
	for _, it := range v.Items {
		ls[it.Ingredient] = domain.Level{OnHand: it.OnHand, Reserved: it.Reserved, Threshold: it.Threshold, Alert: it.AlertOpen}
	}
	return ls
}

// pushAlert puts the alert of a stock_running_low record first and keeps
// at most MaxRecentAlerts.
func pushAlert(alerts []inventoryapi.AlertView, e events.StockRunningLow, rec eventstore.Record) []inventoryapi.AlertView {
	a := inventoryapi.AlertView{Ingredient: e.Ingredient, Available: e.Available, Threshold: e.Threshold, At: rec.Envelope.OccurredAt, Seq: rec.Seq}
	out := make([]inventoryapi.AlertView, 0, min(len(alerts)+1, inventoryapi.MaxRecentAlerts))
	out = append(out, a)
	for _, old := range alerts {
		if len(out) == inventoryapi.MaxRecentAlerts {
			break
		}
		out = append(out, old)
	}
	return out
}

// applyToView folds one inventory event into a restaurant's view.
func applyToView(v *inventoryapi.StockView, rec eventstore.Record) error {
	if _, first := rec.Event.(events.StockInitialized); !first && v.RestaurantID == "" {
		return fmt.Errorf("stock view: %s for restaurant %s before stock_initialized", rec.Envelope.Type, rec.Envelope.AggregateID)
	}
	levels := levelsOf(*v)
	levels.Apply(rec.Event)
	alerts := v.RecentAlerts
	if e, ok := rec.Event.(events.StockRunningLow); ok {
		alerts = pushAlert(alerts, e, rec)
	}
	*v = buildView(rec.Envelope.AggregateID, levels, alerts, rec.Seq, rec.Envelope.OccurredAt)
	return nil
}
