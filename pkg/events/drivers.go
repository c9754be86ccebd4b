package events

import "time"

// Driver events: produced by the drivers service on stream DRIVERS. Each
// driver is an aggregate on drivers.<driverId>; each restaurant's dispatch
// queue (orders ready and waiting for a driver) is an aggregate on
// drivers.dispatch-<restaurantId>. An assignment changes both at once, in
// one atomic append, so no driver gets two orders and no order two drivers.

// DispatchAggregateID is the aggregate id of a restaurant's dispatch queue.
func DispatchAggregateID(restaurantID string) string { return "dispatch-" + restaurantID }

// Driver statuses.
const (
	DriverOffline    = "Offline"
	DriverAvailable  = "Available"
	DriverBusy       = "Busy"
	DriverOnBreak    = "OnBreak"
	DriverEndOfShift = "EndOfShift"
)

// DriverRegistered adds a driver to a restaurant's fleet (status Offline).
type DriverRegistered struct {
	RestaurantID string `json:"restaurantId"`
	Name         string `json:"name"`
	Vehicle      string `json:"vehicle,omitempty"`
}

func (DriverRegistered) EventType() string { return "driver_registered" }
func (DriverRegistered) EventVersion() int { return 1 }

// DriverStatusChanged records a status the driver (or a manager) set.
type DriverStatusChanged struct {
	Status   string `json:"status"`
	Previous string `json:"previous"`
}

func (DriverStatusChanged) EventType() string { return "driver_status_changed" }
func (DriverStatusChanged) EventVersion() int { return 1 }

// DeliveryRequested puts a ready order in its restaurant's dispatch queue.
type DeliveryRequested struct {
	OrderID      string   `json:"orderId"`
	RestaurantID string   `json:"restaurantId"`
	Pickup       GeoPoint `json:"pickup"`
	Dropoff      GeoPoint `json:"dropoff"`
}

func (DeliveryRequested) EventType() string { return "delivery_requested" }
func (DeliveryRequested) EventVersion() int { return 1 }

// DeliveryRequestClosed takes an order out of the dispatch queue.
type DeliveryRequestClosed struct {
	OrderID  string `json:"orderId"`
	Reason   string `json:"reason"` // "assigned", "cancelled", "failed"
	DriverID string `json:"driverId,omitempty"`
}

func (DeliveryRequestClosed) EventType() string { return "delivery_request_closed" }
func (DeliveryRequestClosed) EventVersion() int { return 1 }

// DriverAssigned gives a driver an order (the driver becomes Busy).
type DriverAssigned struct {
	OrderID      string   `json:"orderId"`
	RestaurantID string   `json:"restaurantId"`
	Pickup       GeoPoint `json:"pickup"`
	Dropoff      GeoPoint `json:"dropoff"`
	Manual       bool     `json:"manual,omitempty"`
	AssignedBy   string   `json:"assignedBy,omitempty"`
}

func (DriverAssigned) EventType() string { return "driver_assigned" }
func (DriverAssigned) EventVersion() int { return 1 }

// DriverUnassigned frees a driver whose order was cancelled before pickup.
type DriverUnassigned struct {
	OrderID string `json:"orderId"`
	Reason  string `json:"reason"`
}

func (DriverUnassigned) EventType() string { return "driver_unassigned" }
func (DriverUnassigned) EventVersion() int { return 1 }

// DeliveryPickedUp: the assigned driver collected the order.
type DeliveryPickedUp struct {
	OrderID             string    `json:"orderId"`
	EstimatedDeliveryAt time.Time `json:"estimatedDeliveryAt"`
}

func (DeliveryPickedUp) EventType() string { return "delivery_picked_up" }
func (DeliveryPickedUp) EventVersion() int { return 1 }

// DeliveryCompleted: the order was handed over; the driver is Available again.
type DeliveryCompleted struct {
	OrderID string `json:"orderId"`
}

func (DeliveryCompleted) EventType() string { return "delivery_completed" }
func (DeliveryCompleted) EventVersion() int { return 1 }

// DriverLocationReported is a position fix. It is telemetry: stored in
// TELEMETRY on telemetry.drivers.<driverId> (bounded retention), not in the
// DRIVERS domain stream.
type DriverLocationReported struct {
	Latitude   float64   `json:"latitude"`
	Longitude  float64   `json:"longitude"`
	SpeedKmh   *float64  `json:"speedKmh,omitempty"`
	Heading    *float64  `json:"heading,omitempty"`
	AccuracyM  *float64  `json:"accuracyM,omitempty"`
	RecordedAt time.Time `json:"recordedAt"`
}

func (DriverLocationReported) EventType() string { return "driver_location_reported" }
func (DriverLocationReported) EventVersion() int { return 1 }

// DriverLocationSubject is where a driver's position fixes are stored.
func DriverLocationSubject(driverID string) string {
	return Telemetry.SubjectPrefix + ".drivers." + driverID
}

// RegisterDriverEvents adds every driver event to r.
func RegisterDriverEvents(r *Registry) {
	Register[DriverRegistered](r)
	Register[DriverStatusChanged](r)
	Register[DeliveryRequested](r)
	Register[DeliveryRequestClosed](r)
	Register[DriverAssigned](r)
	Register[DriverUnassigned](r)
	Register[DeliveryPickedUp](r)
	Register[DeliveryCompleted](r)
	Register[DriverLocationReported](r)
}
