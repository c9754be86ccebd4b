// Package ordersapi is the public contract of the orders service: the
// command subjects it serves over NATS request/reply, the request and reply
// bodies, the problem type of its typed error replies, and the order read
// model that the gateway serves from Redis. Field names follow the original
// specification of the platform so existing clients keep working.
package ordersapi

import (
	"encoding/json"
	"time"

	"github.com/awesome-pizza/pizza/pkg/projection"
)

// Service identity and command subjects (nats.go/micro endpoints). They sit
// outside the event subjects ("orders.>") so no stream ever captures a command.
const (
	ServiceName       = "orders"
	ServiceVersion    = "1.0.0"
	QueueGroup        = "orders"
	SubjectPlace      = "svc.orders.place"
	SubjectCancel     = "svc.orders.cancel"
	SubjectTransition = "svc.orders.transition"
)

// ReadModel is the name of the order read model in Redis.
const ReadModel = "orders"

// OrderKey is the Redis key of one order's view.
func OrderKey(keyspace, orderID string) string {
	return projection.KeyBase(keyspace, ReadModel) + "order:" + orderID
}

// RestaurantOrdersKey is a lexicographically ordered set (all scores 0) of
// a restaurant's orders, members "<createdAt unix ms, 13 digits>:<orderId>",
// newest last. With status set, only the orders currently in that status.
func RestaurantOrdersKey(keyspace, restaurantID, status string) string {
	base := projection.KeyBase(keyspace, ReadModel) + "byrestaurant:" + restaurantID
	if status == "" {
		return base + ":all"
	}
	return base + ":status:" + status
}

// ActiveOrdersKey is a sorted set of non-terminal orders scored by the unix
// ms of their last status change (for stuck-order detection).
func ActiveOrdersKey(keyspace string) string {
	return projection.KeyBase(keyspace, ReadModel) + "active"
}

// DashboardKey holds a restaurant's order statistics (DashboardOrders).
func DashboardKey(keyspace, restaurantID string) string {
	return projection.KeyBase(keyspace, ReadModel) + "dashboard:" + restaurantID
}

// DashboardOrders is the order part of a restaurant's dashboard.
type DashboardOrders struct {
	RestaurantID       string         `json:"restaurantId"`
	OrdersByStatus     map[string]int `json:"ordersByStatus"`
	ActiveOrders       int            `json:"activeOrders"`
	AvgPrepSeconds     float64        `json:"avgPrepSeconds"`
	AvgDeliverySeconds float64        `json:"avgDeliverySeconds"`
	PrepSamples        int            `json:"prepSamples"`
	DeliverySamples    int            `json:"deliverySamples"`
	StuckOrders        []string       `json:"stuckOrders"`
	Version            uint64         `json:"version"`
	LastUpdated        time.Time      `json:"lastUpdated"`
}

// SubjectErase erases a customer's personal data (EraseCommand).
const SubjectErase = "svc.orders.erase"

// EraseCommand asks to erase everything personal the platform holds of a
// customer (today: the delivery addresses of their orders).
type EraseCommand struct {
	CustomerID string `json:"customerId"`
	By         string `json:"by,omitempty"`
}

// EraseReply lists the orders whose personal data was erased.
type EraseReply struct {
	CustomerID string   `json:"customerId"`
	Orders     []string `json:"orders"`
}

// Audit queries (served by the orders service over micro, like commands).
const (
	SubjectHistory = "svc.orders.history"
	SubjectAsOf    = "svc.orders.asof"
)

// HistoryQuery asks for an order's events across every context.
type HistoryQuery struct {
	OrderID string `json:"orderId"`
}

// HistoryEvent is one stored event with its place in the log.
type HistoryEvent struct {
	Stream        string          `json:"stream"`
	Seq           uint64          `json:"seq"`
	Subject       string          `json:"subject"`
	StoredAt      time.Time       `json:"storedAt"`
	OccurredAt    time.Time       `json:"occurredAt"`
	EventID       string          `json:"eventId"`
	Type          string          `json:"type"`
	Version       int             `json:"version"`
	AggregateID   string          `json:"aggregateId"`
	CorrelationID string          `json:"correlationId,omitempty"`
	CausationID   string          `json:"causationId,omitempty"`
	Data          json.RawMessage `json:"data"`
}

// HistoryReply lists the events, oldest first (by the time they were stored).
type HistoryReply struct {
	OrderID string         `json:"orderId"`
	Events  []HistoryEvent `json:"events"`
}

// AsOfQuery asks for the order as it stood at a point of its history:
// after the ORDERS event with sequence Seq, or at time At (one of the two).
type AsOfQuery struct {
	OrderID string     `json:"orderId"`
	Seq     uint64     `json:"seq,omitempty"`
	At      *time.Time `json:"at,omitempty"`
}

// HistoryIndexModels are the read models indexing, per order, the events of
// contexts whose subjects are not named by the order (INVENTORY, DRIVERS).
const (
	HistoryInventoryModel = "history-inventory"
	HistoryDriversModel   = "history-drivers"
)

// HistoryIndexKey is the sorted set (score = stream sequence) of an
// order's events in one of the history index models.
func HistoryIndexKey(keyspace, model, orderID string) string {
	return projection.KeyBase(keyspace, model) + "order:" + orderID
}

// Statuses are the states of an order, happy path first.
var Statuses = []string{"Created", "Validated", "Queued", "Preparing", "Baking", "QualityCheck", "ReadyForPickup",
	"DriverAssigned", "PickedUp", "OutForDelivery", "Delivered", "Cancelled", "Failed"}

// TerminalStatuses end an order's life.
var TerminalStatuses = []string{"Delivered", "Cancelled", "Failed"}

// Channel is where the order projector announces the changes of orders:
// each order once per projector batch that changes it, with the whole
// order as stored after the batch, in stream order.
func Channel(keyspace string) string { return projection.Channel(keyspace, ReadModel) }

// PlaceOrderRequest is the body of POST /api/orders.
type PlaceOrderRequest struct {
	CustomerID    string        `json:"customerId"`
	RestaurantID  string        `json:"restaurantId"`
	Items         []ItemRequest `json:"items"`
	Address       *Address      `json:"address"`
	PaymentMethod string        `json:"paymentMethod"`
}

// ItemRequest is one line of an order request. Clients never send prices.
type ItemRequest struct {
	PizzaType string   `json:"pizzaType"`
	Size      string   `json:"size"`
	Toppings  []string `json:"toppings"`
	Quantity  int      `json:"quantity"`
}

// Address is where the order goes. The street address is personal data:
// it is kept in the orders service's vault, never in events.
type Address struct {
	Street      string       `json:"street"`
	City        string       `json:"city"`
	State       string       `json:"state"`
	ZipCode     string       `json:"zipCode"`
	Coordinates *Coordinates `json:"coordinates"`
}

// Coordinates are WGS84 degrees; pointers tell a missing value from zero.
type Coordinates struct {
	Latitude  *float64 `json:"latitude"`
	Longitude *float64 `json:"longitude"`
}

// PlaceCommand is what the gateway sends to SubjectPlace.
type PlaceCommand struct {
	Request        PlaceOrderRequest `json:"request"`
	IdempotencyKey string            `json:"idempotencyKey,omitempty"`
	CorrelationID  string            `json:"correlationId,omitempty"`
	TraceParent    string            `json:"traceparent,omitempty"`
}

// CancelCommand is what the gateway sends to SubjectCancel.
type CancelCommand struct {
	OrderID        string `json:"orderId"`
	Reason         string `json:"reason,omitempty"`
	CancelledBy    string `json:"cancelledBy,omitempty"`
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	CorrelationID  string `json:"correlationId,omitempty"`
	TraceParent    string `json:"traceparent,omitempty"`
}

// TransitionCommand moves an order to a new status (staff override, and the
// saga of the other services).
type TransitionCommand struct {
	OrderID  string `json:"orderId"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
	ChefID   string `json:"chefId,omitempty"`
	DriverID string `json:"driverId,omitempty"`
	TicketID string `json:"ticketId,omitempty"`
	By       string `json:"by,omitempty"`
	// Override marks a staff member forcing the transition by hand; it is
	// recorded as order_status_overridden next to the transition.
	Override       bool   `json:"override,omitempty"`
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	CorrelationID  string `json:"correlationId,omitempty"`
	TraceParent    string `json:"traceparent,omitempty"`
}

// CommandReply is the successful reply to every command: the order as the
// command left it, and the stream sequence of its last event, so callers
// can wait for read models to reach it (read-your-writes).
type CommandReply struct {
	Order    OrderView `json:"order"`
	Seq      uint64    `json:"seq"`
	Replayed bool      `json:"replayed,omitempty"`
}

// OrderView is the order read model, as served by GET /api/orders/{id}.
type OrderView struct {
	OrderID               string         `json:"orderId"`
	CustomerID            string         `json:"customerId"`
	RestaurantID          string         `json:"restaurantId"`
	Items                 []ItemView     `json:"items"`
	Status                string         `json:"status"`
	TotalCents            int64          `json:"totalCents"`
	Currency              string         `json:"currency"`
	PaymentMethod         string         `json:"paymentMethod"`
	DeliveryLocation      *LatLon        `json:"deliveryLocation,omitempty"`
	CreatedAt             time.Time      `json:"createdAt"`
	LastUpdated           time.Time      `json:"lastUpdated"`
	EstimatedDeliveryTime *time.Time     `json:"estimatedDeliveryTime"`
	AssignedChefID        *string        `json:"assignedChefId"`
	AssignedDriverID      *string        `json:"assignedDriverId"`
	CancellationReason    string         `json:"cancellationReason,omitempty"`
	FailureReason         string         `json:"failureReason,omitempty"`
	StatusHistory         []StatusChange `json:"statusHistory"`
	// PersonalDataErased is set once the customer's personal data (the
	// delivery address) was erased; the order itself stays.
	PersonalDataErased bool `json:"personalDataErased,omitempty"`
	// Stuck is set when the order made no progress for longer than its
	// status allows; the next status change clears it.
	Stuck bool `json:"stuck"`
	// DriverTracking is the driver's last position and the live ETA while
	// the order is with its driver (DriverAssigned, PickedUp,
	// OutForDelivery); null otherwise. It is folded in from TELEMETRY, so
	// it changes without changing Version.
	DriverTracking *DriverTracking `json:"driverTracking"`
	Version        uint64          `json:"version"` // stream sequence of the last applied ORDERS event
}

// TrackedStatuses are the statuses in which an order carries its driver's
// position (DriverTracking).
var TrackedStatuses = []string{"DriverAssigned", "PickedUp", "OutForDelivery"}

// DriverTracking is the live part of an order with its driver: the
// driver's last position fix and an ETA recomputed from it.
type DriverTracking struct {
	DriverID  string   `json:"driverId"`
	Latitude  float64  `json:"latitude"`
	Longitude float64  `json:"longitude"`
	SpeedKmh  *float64 `json:"speedKmh"`
	Heading   *float64 `json:"heading,omitempty"`
	AccuracyM *float64 `json:"accuracyM,omitempty"`
	// At is when the device recorded the fix.
	At time.Time `json:"at"`
	// DistanceKm is the straight-line distance left: to the delivery
	// address, or, before pickup, to the restaurant and from there to the
	// delivery address.
	DistanceKm float64 `json:"distanceKm"`
	// EtaAt is At plus DistanceKm at the reported speed (a typical
	// TrackingDefaultSpeedKmh when the driver reports 5 km/h or less, or
	// no speed), divided by the platform's time scale.
	EtaAt time.Time `json:"etaAt"`
	// Seq is the TELEMETRY sequence of the fix: it only grows.
	Seq uint64 `json:"seq"`
}

// TrackingDefaultSpeedKmh is the speed the live ETA assumes when the
// driver reports none (or 5 km/h or less: waiting at a light).
const TrackingDefaultSpeedKmh = 25.0

// ItemView is a priced order line.
type ItemView struct {
	PizzaType      string   `json:"pizzaType"`
	Size           string   `json:"size"`
	Toppings       []string `json:"toppings"`
	Quantity       int      `json:"quantity"`
	UnitPriceCents int64    `json:"unitPriceCents"`
	LineTotalCents int64    `json:"lineTotalCents"`
}

// LatLon is a plain coordinate in views.
type LatLon struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

// StatusChange is one step of the order's timeline.
type StatusChange struct {
	Status string    `json:"status"`
	At     time.Time `json:"at"`
}

// Notification is published on Channel when a batch of the projector has
// changed an order (Seq: the batch's last event of the order), or when the
// driver's position moved it (Tracking).
type Notification struct {
	OrderID string    `json:"orderId"`
	Seq     uint64    `json:"seq"`
	Order   OrderView `json:"order"`
	// Tracking marks a change of the driver's position only (the order's
	// events did not move): nothing restaurant-wide changed.
	Tracking bool `json:"tracking,omitempty"`
	// OrderJSON is Order as it was encoded in the notification, kept by a
	// reader that passes it on unchanged (the gateway writes it to every
	// tracking stream instead of encoding the order once per stream).
	// Never part of the message.
	OrderJSON json.RawMessage `json:"-"`
}
