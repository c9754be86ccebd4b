package app

import (
	"fmt"
	"slices"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/drivers/internal/domain"
)

func latLon(p events.GeoPoint) driversapi.LatLon {
	return driversapi.LatLon{Latitude: p.Latitude, Longitude: p.Longitude}
}

// applyDriverView folds one driver event into the driver's view. The
// projector and the command replies share it, so a reply shows exactly
// what the read model will show.
func applyDriverView(v *driversapi.DriverView, env events.Envelope, ev events.Event, seq uint64) error {
	at := env.OccurredAt
	switch e := ev.(type) {
	case events.DriverRegistered:
		*v = driversapi.DriverView{DriverID: env.AggregateID, Name: e.Name, RestaurantID: e.RestaurantID, Vehicle: e.Vehicle,
			Status: driversapi.StatusOffline, RegisteredAt: at}
	case events.DriverStatusChanged:
		v.Status = e.Status
	case events.DriverAssigned:
		orderID := e.OrderID
		v.Status = driversapi.StatusBusy
		v.CurrentOrderID = &orderID
		v.CurrentDelivery = &driversapi.CurrentDelivery{OrderID: e.OrderID, Pickup: latLon(e.Pickup), Dropoff: latLon(e.Dropoff),
			AssignedAt: at, Manual: e.Manual, AssignedBy: e.AssignedBy}
	case events.DeliveryPickedUp:
		if v.CurrentDelivery != nil {
			c := *v.CurrentDelivery
			pickedAt, eta := at, e.EstimatedDeliveryAt
			c.PickedUpAt, c.EstimatedDeliveryAt = &pickedAt, &eta
			v.CurrentDelivery = &c
		}
	case events.DriverUnassigned:
		v.Status = driversapi.StatusAvailable
		v.CurrentOrderID, v.CurrentDelivery = nil, nil
	case events.DeliveryCompleted:
		v.Status = driversapi.StatusAvailable
		v.CurrentOrderID, v.CurrentDelivery = nil, nil
		v.DeliveriesCompleted++
	default:
		return fmt.Errorf("driver view: unhandled event %s", events.Name(env.Type, env.Version))
	}
	if v.DriverID == "" {
		return fmt.Errorf("driver view: %s for driver %s before driver_registered", env.Type, env.AggregateID)
	}
	v.Version = seq
	v.LastUpdated = at
	return nil
}

// applyQueueView folds one dispatch-queue event into the queue's view.
func applyQueueView(v *driversapi.QueueView, restaurantID string, env events.Envelope, ev events.Event, seq uint64) error {
	switch e := ev.(type) {
	case events.DeliveryRequested:
		v.Waiting = append(slices.Clip(v.Waiting), driversapi.WaitingView{OrderID: e.OrderID, Pickup: latLon(e.Pickup), Dropoff: latLon(e.Dropoff), RequestedAt: env.OccurredAt})
	case events.DeliveryRequestClosed:
		v.Waiting = slices.DeleteFunc(slices.Clone(v.Waiting), func(w driversapi.WaitingView) bool { return w.OrderID == e.OrderID })
	default:
		return fmt.Errorf("queue view: unhandled event %s", events.Name(env.Type, env.Version))
	}
	v.RestaurantID = restaurantID
	if v.Waiting == nil {
		v.Waiting = []driversapi.WaitingView{}
	}
	v.Version = seq
	v.LastUpdated = env.OccurredAt
	return nil
}

// deliveryOrderID returns the order a driver or queue event concerns.
func deliveryOrderID(ev events.Event) (string, bool) {
	switch e := ev.(type) {
	case events.DeliveryRequested:
		return e.OrderID, true
	case events.DeliveryRequestClosed:
		return e.OrderID, true
	case events.DriverAssigned:
		return e.OrderID, true
	case events.DeliveryPickedUp:
		return e.OrderID, true
	case events.DriverUnassigned:
		return e.OrderID, true
	case events.DeliveryCompleted:
		return e.OrderID, true
	}
	return "", false
}

// applyDeliveryView folds an event that concerns one order's delivery
// (see deliveryOrderID) into its view.
func applyDeliveryView(v *driversapi.DeliveryView, env events.Envelope, ev events.Event, seq uint64) {
	at := env.OccurredAt
	switch e := ev.(type) {
	case events.DeliveryRequested:
		*v = driversapi.DeliveryView{OrderID: e.OrderID, RestaurantID: e.RestaurantID, Status: driversapi.DeliveryWaiting,
			Pickup: latLon(e.Pickup), Dropoff: latLon(e.Dropoff), RequestedAt: at}
	case events.DriverAssigned:
		driverID := env.AggregateID
		v.OrderID, v.RestaurantID = e.OrderID, e.RestaurantID
		v.Status, v.DriverID, v.AssignedAt = driversapi.DeliveryAssigned, &driverID, &at
		v.Pickup, v.Dropoff = latLon(e.Pickup), latLon(e.Dropoff)
		v.ClosedReason = ""
	case events.DeliveryRequestClosed:
		v.OrderID = e.OrderID
		switch e.Reason {
		case domain.ClosedAssigned:
			// The driver's driver_assigned, in the same batch, tells the rest.
			if v.Status == driversapi.DeliveryWaiting || v.Status == "" {
				driverID := e.DriverID
				v.Status, v.DriverID, v.AssignedAt = driversapi.DeliveryAssigned, &driverID, &at
			}
		case domain.ClosedFailed:
			v.Status, v.ClosedReason = driversapi.DeliveryFailed, e.Reason
		default:
			v.Status, v.ClosedReason = driversapi.DeliveryCancelled, e.Reason
		}
	case events.DeliveryPickedUp:
		pickedAt, eta := at, e.EstimatedDeliveryAt
		v.OrderID, v.Status, v.PickedUpAt, v.EstimatedDeliveryAt = e.OrderID, driversapi.DeliveryPickedUp, &pickedAt, &eta
	case events.DriverUnassigned:
		v.OrderID, v.DriverID, v.ClosedReason = e.OrderID, nil, e.Reason
		v.Status = driversapi.DeliveryCancelled
		if e.Reason == domain.ClosedFailed {
			v.Status = driversapi.DeliveryFailed
		}
	case events.DeliveryCompleted:
		deliveredAt := at
		v.OrderID, v.Status, v.DeliveredAt = e.OrderID, driversapi.DeliveryDelivered, &deliveredAt
	default:
		return
	}
	v.Version = seq
	v.LastUpdated = at
}
