// Package driversapi is the public contract of the drivers service: the
// command subjects it serves over NATS request/reply (nats.go/micro), the
// command and reply bodies, the problem documents of its typed error
// replies, the read models it keeps in Redis (views, keys, notification
// channels) and the names of its durable consumers.
//
// Two read models, each written by one projector only:
//
//   - "drivers" (from stream DRIVERS): one DriverView per driver, an index
//     of driver ids per restaurant and for the chain, each restaurant's
//     dispatch queue (QueueView) and each order's delivery (DeliveryView).
//   - "driver-positions" (from stream TELEMETRY): each driver's last
//     position (PositionView) and a Redis GEO set per restaurant for
//     nearest-driver searches.
//
// A DriverView's Location is null as stored; readers merge the driver's
// PositionView into it (see DriverView.WithPosition).
package driversapi

import (
	"time"

	"github.com/awesome-pizza/pizza/pkg/projection"
)

// Service identity and command subjects. They sit outside the event
// subjects ("drivers.>", "telemetry.>") so no stream ever captures a command.
const (
	ServiceName     = "drivers"
	ServiceVersion  = "1.0.0"
	QueueGroup      = "drivers"
	SubjectRegister = "svc.drivers.register"
	SubjectStatus   = "svc.drivers.status"
	SubjectLocation = "svc.drivers.location"
	SubjectPickup   = "svc.drivers.pickup"
	SubjectDeliver  = "svc.drivers.deliver"
	SubjectAssign   = "svc.drivers.assign"
)

// Durable consumer names of the service. They are contracts: renaming one
// makes the server replay that stream's whole history to the new name.
const (
	// DurableKitchen reads KITCHEN: ticket_ready puts the order in its
	// restaurant's dispatch queue.
	DurableKitchen = "drivers-kitchen"
	// DurableOrders reads ORDERS: order_cancelled and order_failed take the
	// order out of the queue or away from its driver.
	DurableOrders = "drivers-orders"
)

// Read-model names (the projector names; keys live under "<keyspace>rm:<name>:").
const (
	ReadModel      = "drivers"
	PositionsModel = "driver-positions"
)

// DriverKey is the Redis string key of one driver's DriverView (JSON).
func DriverKey(keyspace, driverID string) string {
	return projection.KeyBase(keyspace, ReadModel) + "driver:" + driverID
}

// RestaurantDriversKey is a sorted set of a restaurant's driver ids, scored
// by registration time (Unix milliseconds).
func RestaurantDriversKey(keyspace, restaurantID string) string {
	return projection.KeyBase(keyspace, ReadModel) + "restaurant:" + restaurantID
}

// AllDriversKey is a sorted set of every driver id of the chain, scored by
// registration time (Unix milliseconds).
func AllDriversKey(keyspace string) string {
	return projection.KeyBase(keyspace, ReadModel) + "all"
}

// QueueKey is the Redis string key of a restaurant's QueueView (JSON).
func QueueKey(keyspace, restaurantID string) string {
	return projection.KeyBase(keyspace, ReadModel) + "queue:" + restaurantID
}

// DeliveryKey is the Redis string key of an order's DeliveryView (JSON),
// present once the order was ready for a driver.
func DeliveryKey(keyspace, orderID string) string {
	return projection.KeyBase(keyspace, ReadModel) + "delivery:" + orderID
}

// Channel is where the drivers projector announces every change (a
// Notification per event).
func Channel(keyspace string) string { return projection.Channel(keyspace, ReadModel) }

// PositionKey is the Redis string key of a driver's last PositionView (JSON).
func PositionKey(keyspace, driverID string) string {
	return projection.KeyBase(keyspace, PositionsModel) + "position:" + driverID
}

// GeoKey is a Redis GEO set (members: driver ids) of the last positions of
// a restaurant's drivers, for GEOSEARCH ... FROMLONLAT lon lat BYRADIUS r km ASC.
func GeoKey(keyspace, restaurantID string) string {
	return projection.KeyBase(keyspace, PositionsModel) + "geo:" + restaurantID
}

// PositionsChannel is where the positions projector announces every fix
// (a PositionNotification per event).
func PositionsChannel(keyspace string) string { return projection.Channel(keyspace, PositionsModel) }

// CheckpointKey is where a read model stores the last stream sequence it
// applied: DRIVERS sequences for ReadModel, TELEMETRY ones for
// PositionsModel. Wait for it to reach a reply's Seq for read-your-writes.
func CheckpointKey(keyspace, model string) string { return projection.CheckpointKey(keyspace, model) }

// Statuses of a driver. Busy is only ever set by an assignment.
const (
	StatusOffline    = "Offline"
	StatusAvailable  = "Available"
	StatusBusy       = "Busy"
	StatusOnBreak    = "OnBreak"
	StatusEndOfShift = "EndOfShift"
)

// Vehicles a driver can be registered with.
var Vehicles = []string{"scooter", "car", "bike"}

// Delivery statuses of an order, as seen by dispatch.
const (
	DeliveryWaiting   = "Waiting"   // ready, in the restaurant's queue
	DeliveryAssigned  = "Assigned"  // a driver holds it
	DeliveryPickedUp  = "PickedUp"  // on its way to the customer
	DeliveryDelivered = "Delivered" // handed over
	DeliveryCancelled = "Cancelled" // the order was cancelled before pickup
	DeliveryFailed    = "Failed"    // the order failed before pickup
)

// LatLon is a WGS84 coordinate in views.
type LatLon struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

// Location is a driver's last known position as merged into a DriverView.
type Location struct {
	Latitude  float64   `json:"latitude"`
	Longitude float64   `json:"longitude"`
	At        time.Time `json:"at"`
}

// DriverView is the driver read model, as served by GET /api/drivers/{id}.
type DriverView struct {
	DriverID       string  `json:"driverId"`
	Name           string  `json:"name"`
	RestaurantID   string  `json:"restaurantId"`
	Vehicle        string  `json:"vehicle"`
	Status         string  `json:"status"`
	CurrentOrderID *string `json:"currentOrderId"`
	// CurrentDelivery details the order the driver holds (null when none).
	CurrentDelivery *CurrentDelivery `json:"currentDelivery"`
	// Location is null as stored: the gateway merges the driver's
	// PositionView (PositionKey) into it with WithPosition.
	Location            *Location `json:"location"`
	DeliveriesCompleted int       `json:"deliveriesCompleted"`
	RegisteredAt        time.Time `json:"registeredAt"`
	Version             uint64    `json:"version"` // DRIVERS sequence of the driver's last event
	LastUpdated         time.Time `json:"lastUpdated"`
}

// CurrentDelivery is the order a driver holds.
type CurrentDelivery struct {
	OrderID             string     `json:"orderId"`
	Pickup              LatLon     `json:"pickup"`
	Dropoff             LatLon     `json:"dropoff"`
	AssignedAt          time.Time  `json:"assignedAt"`
	Manual              bool       `json:"manual"`
	AssignedBy          string     `json:"assignedBy,omitempty"`
	PickedUpAt          *time.Time `json:"pickedUpAt"`
	EstimatedDeliveryAt *time.Time `json:"estimatedDeliveryAt"`
}

// WithPosition returns the view with the position merged in as Location.
func (v DriverView) WithPosition(p *PositionView) DriverView {
	if p != nil {
		v.Location = &Location{Latitude: p.Latitude, Longitude: p.Longitude, At: p.At}
	}
	return v
}

// QueueView is a restaurant's dispatch queue: orders ready and waiting for
// a driver, oldest first.
type QueueView struct {
	RestaurantID string        `json:"restaurantId"`
	Waiting      []WaitingView `json:"waiting"`
	Version      uint64        `json:"version"` // DRIVERS sequence of the queue's last event
	LastUpdated  time.Time     `json:"lastUpdated"`
}

// WaitingView is one order in a dispatch queue.
type WaitingView struct {
	OrderID     string    `json:"orderId"`
	Pickup      LatLon    `json:"pickup"`
	Dropoff     LatLon    `json:"dropoff"`
	RequestedAt time.Time `json:"requestedAt"`
}

// DeliveryView is an order's delivery as dispatch sees it.
type DeliveryView struct {
	OrderID             string     `json:"orderId"`
	RestaurantID        string     `json:"restaurantId"`
	Status              string     `json:"status"` // Delivery* constants
	DriverID            *string    `json:"driverId"`
	Pickup              LatLon     `json:"pickup"`
	Dropoff             LatLon     `json:"dropoff"`
	RequestedAt         time.Time  `json:"requestedAt"`
	AssignedAt          *time.Time `json:"assignedAt"`
	PickedUpAt          *time.Time `json:"pickedUpAt"`
	EstimatedDeliveryAt *time.Time `json:"estimatedDeliveryAt"`
	DeliveredAt         *time.Time `json:"deliveredAt"`
	ClosedReason        string     `json:"closedReason,omitempty"`
	Version             uint64     `json:"version"`
	LastUpdated         time.Time  `json:"lastUpdated"`
}

// PositionView is a driver's last position fix.
type PositionView struct {
	DriverID     string    `json:"driverId"`
	RestaurantID string    `json:"restaurantId,omitempty"`
	Latitude     float64   `json:"latitude"`
	Longitude    float64   `json:"longitude"`
	SpeedKmh     *float64  `json:"speedKmh"`
	Heading      *float64  `json:"heading"`
	AccuracyM    *float64  `json:"accuracyM"`
	At           time.Time `json:"at"`  // when the device took the fix
	Seq          uint64    `json:"seq"` // TELEMETRY sequence of the fix
}

// Notification is published on Channel for every event the drivers
// projector applies. Kind says which view changed; that view is included.
type Notification struct {
	Kind         string        `json:"kind"` // "driver", "queue"
	Seq          uint64        `json:"seq"`
	RestaurantID string        `json:"restaurantId"`
	DriverID     string        `json:"driverId,omitempty"`
	OrderID      string        `json:"orderId,omitempty"`
	Driver       *DriverView   `json:"driver,omitempty"`
	Queue        *QueueView    `json:"queue,omitempty"`
	Delivery     *DeliveryView `json:"delivery,omitempty"`
}

// Notification kinds.
const (
	KindDriver = "driver"
	KindQueue  = "queue"
)

// PositionNotification is published on PositionsChannel for every fix.
type PositionNotification struct {
	Seq      uint64       `json:"seq"`
	Position PositionView `json:"position"`
}
