// Package app is the orders service's application layer: command handling
// against the event store (with optimistic-concurrency retries and an
// aggregate cache), the order read-model projector, the personal-data vault
// and the NATS micro endpoints.
package app

import (
	"fmt"
	"slices"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/services/orders/internal/domain"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
)

// applyToView folds one event into the order's read model. The projector
// and the command replies share it, so a reply shows exactly what the
// read model will show.
func applyToView(v *ordersapi.OrderView, env events.Envelope, ev events.Event, seq uint64) error {
	at := env.OccurredAt
	status := ""
	switch e := ev.(type) {
	case events.OrderPlaced:
		items := make([]ordersapi.ItemView, len(e.Items))
		for i, it := range e.Items {
			tops := it.Toppings
			if tops == nil {
				tops = []string{}
			}
			items[i] = ordersapi.ItemView{PizzaType: it.PizzaType, Size: it.Size, Toppings: tops, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents, LineTotalCents: it.LineTotalCents}
		}
		eta := e.EstimatedDeliveryAt
		*v = ordersapi.OrderView{
			OrderID: env.AggregateID, CustomerID: e.CustomerID, RestaurantID: e.RestaurantID, Items: items,
			TotalCents: e.TotalCents, Currency: e.Currency, PaymentMethod: e.PaymentMethod,
			DeliveryLocation:      &ordersapi.LatLon{Latitude: e.DeliveryLocation.Latitude, Longitude: e.DeliveryLocation.Longitude},
			CreatedAt:             at,
			EstimatedDeliveryTime: &eta,
		}
		status = e.Status()
	case events.OrderValidated:
		status = string(domain.Validated)
	case events.OrderQueued:
		status = string(domain.Queued)
	case events.OrderPreparationStarted:
		status = string(domain.Preparing)
		if e.ChefID != "" {
			v.AssignedChefID = &e.ChefID
		}
	case events.OrderBakingStarted:
		status = string(domain.Baking)
	case events.OrderQualityCheckStarted:
		status = string(domain.QualityCheck)
	case events.OrderReadyForPickup:
		status = string(domain.ReadyForPickup)
	case events.OrderDriverAssigned:
		status = string(domain.DriverAssigned)
		v.AssignedDriverID = &e.DriverID
		if v.DriverTracking != nil && v.DriverTracking.DriverID != e.DriverID {
			v.DriverTracking = nil // another driver's position
		}
	case events.OrderPickedUp:
		status = string(domain.PickedUp)
	case events.OrderOutForDelivery:
		status = string(domain.OutForDelivery)
		if e.EstimatedDeliveryAt != nil {
			eta := *e.EstimatedDeliveryAt
			v.EstimatedDeliveryTime = &eta
		}
	case events.OrderDelivered:
		status = string(domain.Delivered)
	case events.OrderCancelled:
		status = string(domain.Cancelled)
		v.CancellationReason = e.Reason
	case events.OrderFailed:
		status = string(domain.Failed)
		v.FailureReason = e.Reason
	case events.OrderStuckDetected:
		v.Stuck = true
	case events.OrderPersonalDataErased:
		v.PersonalDataErased = true
	case events.OrderStatusOverridden:
		// Recorded next to the transition it explains; the view shows the
		// transition itself.
	default:
		return fmt.Errorf("order view: unhandled event %s", events.Name(env.Type, env.Version))
	}
	if v.OrderID == "" {
		return fmt.Errorf("order view: %s for order %s before order_placed", env.Type, env.AggregateID)
	}
	v.Version = seq
	if status == "" {
		return nil
	}
	v.Status = status
	v.Stuck = false
	if !slices.Contains(ordersapi.TrackedStatuses, status) {
		// The driver's whereabouts stop being the customer's business.
		v.DriverTracking = nil
	}
	v.LastUpdated = at
	v.StatusHistory = append(slices.Clip(v.StatusHistory), ordersapi.StatusChange{Status: status, At: at})
	return nil
}

// cloneView copies a view so that folding into the copy never touches the original.
func cloneView(v ordersapi.OrderView) ordersapi.OrderView {
	v.StatusHistory = slices.Clone(v.StatusHistory)
	return v
}
