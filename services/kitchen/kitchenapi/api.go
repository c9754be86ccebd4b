// Package kitchenapi is the public contract of the kitchen service: the
// command it serves over NATS request/reply (chef breaks), the request and
// reply bodies, its problem documents, the durable consumer names it owns,
// and the kitchen-display read model the gateway serves from Redis and
// streams over SSE.
package kitchenapi

import (
	"encoding/json"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/projection"
)

// Service identity and command subjects (nats.go/micro endpoints). They sit
// outside the event subjects ("kitchen.>") so no stream captures a command.
const (
	ServiceName      = "kitchen"
	ServiceVersion   = "1.0.0"
	QueueGroup       = "kitchen"
	SubjectChefBreak = "svc.kitchen.chef-break"
	// SubjectAlert records an alert raised by a kitchen device (AlertCommand).
	SubjectAlert = "svc.kitchen.alert"
)

// Durable consumer names of the kitchen's reactions to other contexts.
// They are contracts: renaming one replays its stream from the start.
const (
	// DurableInventory turns stock_reserved (stream INVENTORY) into ticket_queued.
	DurableInventory = "kitchen-inventory"
	// DurableOrders turns order_cancelled and order_failed (stream ORDERS)
	// into ticket_withdrawn.
	DurableOrders = "kitchen-orders"
)

// Stages of a ticket as the display shows them.
const (
	StageQueued       = "Queued"
	StagePreparing    = "Preparing"
	StageBaking       = "Baking"
	StageQualityCheck = "QualityCheck"
	StageReady        = "Ready"
)

// ReadyTicketsKept is how many Ready tickets (the most recent) a display
// keeps: the kitchen does not learn when a driver picks an order up.
const ReadyTicketsKept = 50

// ReadModel is the name of the kitchen-display read model in Redis. It
// was "kitchen" while a display was one JSON document (ADR 0023): the new
// name makes an upgraded projector build the new keys from the start of
// KITCHEN by itself.
const ReadModel = "kitchen-display"

// A restaurant's display is stored in parts (ADR 0023), so that an event
// writes what it changes and not the whole display:
//
//   - HeadKey: a JSON KitchenDisplay without tickets (chefs, counts,
//     version, lastUpdated) and the bookkeeping of the Ready tickets kept;
//   - QueueKey: a sorted set of the order ids on the display, scored by
//     their ticket_queued sequence (queue order);
//   - TicketKey: one JSON StoredTicket per order on the display.
//
// LoadDisplay reads the parts in one atomic step and assembles the
// display. A missing head means no kitchen event for the restaurant yet:
// serve EmptyDisplay for a restaurant of the catalogue, 404 otherwise.
func HeadKey(keyspace, restaurantID string) string {
	return projection.KeyBase(keyspace, ReadModel) + "head:" + restaurantID
}

// QueueKey is the sorted set of the order ids on a restaurant's display.
func QueueKey(keyspace, restaurantID string) string {
	return projection.KeyBase(keyspace, ReadModel) + "queue:" + restaurantID
}

// TicketKey is the stored ticket of an order on its restaurant's display.
func TicketKey(keyspace, orderID string) string {
	return ticketPrefix(keyspace) + orderID
}

func ticketPrefix(keyspace string) string {
	return projection.KeyBase(keyspace, ReadModel) + "ticket:"
}

// CheckpointKey holds the KITCHEN stream sequence the read model has
// applied; wait for it to reach a command reply's Seq (read-your-writes).
func CheckpointKey(keyspace string) string { return projection.CheckpointKey(keyspace, ReadModel) }

// Channel is where the projector publishes a Notification after every
// change of a display.
func Channel(keyspace string) string { return projection.Channel(keyspace, ReadModel) }

// ChefBreakRequest is the body of
// POST /api/kitchen/{restaurantId}/chefs/{chefId}/break.
type ChefBreakRequest struct {
	// OnBreak is required: true starts a break, false ends it.
	OnBreak *bool `json:"onBreak"`
}

// ChefBreakCommand is what the gateway sends to SubjectChefBreak.
type ChefBreakCommand struct {
	ChefID string `json:"chefId"`
	// RestaurantID, when set, must be the chef's restaurant (404 otherwise).
	RestaurantID string `json:"restaurantId,omitempty"`
	// OnBreak is required: true starts a break, false ends it.
	OnBreak *bool `json:"onBreak"`
	// By names who set the break (the staff member); it is logged.
	By             string `json:"by,omitempty"`
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	CorrelationID  string `json:"correlationId,omitempty"`
	TraceParent    string `json:"traceparent,omitempty"`
}

// ChefBreakReply is the successful reply: the chef as the command left it
// and the KITCHEN stream sequence of the chef's last event.
type ChefBreakReply struct {
	ChefID       string `json:"chefId"`
	RestaurantID string `json:"restaurantId"`
	OnBreak      bool   `json:"onBreak"`
	Seq          uint64 `json:"seq"`
	// Replayed is true when the command (same idempotency key) had already
	// been applied and nothing new was stored.
	Replayed bool `json:"replayed,omitempty"`
}

// AlertSeverities are the severities of a kitchen device alert.
var AlertSeverities = []string{"info", "warning", "critical"}

// Limits of an alert's fields.
const (
	MaxAlertLength        = 100  // characters of Alert
	MaxAlertDetailsBytes  = 2048 // bytes of Details
	MaxAlertDeviceIDBytes = 64
)

// AlertCommand records an alert raised by one of a restaurant's kitchen
// devices (today: sent by the MQTT bridge for pizza/kitchen/{id}/alerts).
// It becomes kitchen_device_alert_raised on kitchen.devices-<restaurantId>.
// With an IdempotencyKey, the same alert sent again is stored once.
type AlertCommand struct {
	RestaurantID string `json:"restaurantId"`
	// DeviceID is the device identity that raised the alert; default the
	// restaurant id (a kitchen device authenticates as its kitchen).
	DeviceID string `json:"deviceId,omitempty"`
	Alert    string `json:"alert"`
	Severity string `json:"severity"` // one of AlertSeverities
	// Details is any JSON value (usually an object), at most
	// MaxAlertDetailsBytes.
	Details json.RawMessage `json:"details,omitempty"`
	// RaisedAt defaults to when the kitchen service receives the command;
	// it may be at most 24 h old and 5 min ahead.
	RaisedAt       *time.Time `json:"raisedAt,omitempty"`
	IdempotencyKey string     `json:"idempotencyKey,omitempty"`
	CorrelationID  string     `json:"correlationId,omitempty"`
	TraceParent    string     `json:"traceparent,omitempty"`
}

// AlertReply is the successful reply: the KITCHEN stream sequence of the
// stored alert.
type AlertReply struct {
	RestaurantID string    `json:"restaurantId"`
	AggregateID  string    `json:"aggregateId"` // devices-<restaurantId>
	Severity     string    `json:"severity"`
	RaisedAt     time.Time `json:"raisedAt"`
	Seq          uint64    `json:"seq"`
	// Replayed is true when the same alert (same idempotency key) had
	// already been stored and nothing new was appended.
	Replayed bool `json:"replayed,omitempty"`
}

// KitchenDisplay is a restaurant's kitchen display, served by
// GET /api/kitchen/{restaurantId}/queue and streamed by the gateway; the
// projector stores it in parts (HeadKey).
type KitchenDisplay struct {
	RestaurantID string `json:"restaurantId"`
	// Tickets in progress and the most recent Ready ones, in queue order
	// (the order their stock was reserved in).
	Tickets []TicketView `json:"tickets"`
	Chefs   []ChefView   `json:"chefs"`
	Counts  StageCounts  `json:"counts"`
	// Version is the KITCHEN stream sequence of the last event applied to
	// this display (the SSE event id).
	Version     uint64    `json:"version"`
	LastUpdated time.Time `json:"lastUpdated"`
}

// TicketView is one order on the kitchen display.
type TicketView struct {
	OrderID string     `json:"orderId"`
	Stage   string     `json:"stage"` // Queued, Preparing, Baking, QualityCheck, Ready
	Lines   []LineView `json:"lines"`
	// ChefID is the chef preparing (or who prepared) the current attempt;
	// empty while Queued.
	ChefID string `json:"chefId,omitempty"`
	// Attempt is 1, then 2, 3… after failed quality checks.
	Attempt int `json:"attempt"`
	// Remake is true once a quality check failed; remakes go first.
	Remake bool `json:"remake"`
	// QueuePosition is the 1-based place in the queue while Queued.
	QueuePosition  int       `json:"queuePosition,omitempty"`
	QueuedAt       time.Time `json:"queuedAt"`
	StageStartedAt time.Time `json:"stageStartedAt"`
	// DueAt is when the current stage ends (Preparing, Baking, QualityCheck).
	DueAt *time.Time `json:"dueAt,omitempty"`
}

// LineView is one line of the order (pizza, size, toppings, quantity).
type LineView struct {
	PizzaType string   `json:"pizzaType"`
	Size      string   `json:"size"`
	Toppings  []string `json:"toppings"`
	Quantity  int      `json:"quantity"`
}

// ChefView is a chef of the restaurant.
type ChefView struct {
	ChefID  string `json:"chefId"`
	Name    string `json:"name"`
	OnBreak bool   `json:"onBreak"`
	// ActiveTickets is how many tickets the chef is preparing now.
	ActiveTickets int `json:"activeTickets"`
	// Capacity is how many tickets the chef prepares at once.
	Capacity int `json:"capacity"`
}

// StageCounts counts the display's tickets per stage.
type StageCounts struct {
	Queued       int `json:"Queued"`
	Preparing    int `json:"Preparing"`
	Baking       int `json:"Baking"`
	QualityCheck int `json:"QualityCheck"`
	Ready        int `json:"Ready"`
}

// Notification is published on Channel once per batch of the projector that
// changes a display: the restaurant, the display's version after the batch
// (Seq) and its counts. It does not carry the display: a busy kitchen's
// display holds thousands of tickets, every gateway receives every
// notification through one subscription, and the live display reads the
// display again when told (GET /api/kitchen/{restaurantId}/queue serves
// the same document).
type Notification struct {
	RestaurantID string      `json:"restaurantId"`
	Seq          uint64      `json:"seq"`
	Counts       StageCounts `json:"counts"`
}

// EmptyDisplay is the display of a restaurant before its first kitchen
// event: no tickets, every chef of the catalogue working and idle.
func EmptyDisplay(r *catalog.Restaurant) KitchenDisplay {
	d := KitchenDisplay{RestaurantID: r.ID, Tickets: []TicketView{}, Chefs: []ChefView{}}
	for _, c := range r.Chefs {
		d.Chefs = append(d.Chefs, ChefView{ChefID: c.ID, Name: c.Name, Capacity: ChefCapacity(c)})
	}
	return d
}

// ChefCapacity is the number of tickets a catalogue chef prepares at once;
// a capacity below 1 counts as 1.
func ChefCapacity(c catalog.Chef) int { return max(c.Capacity, 1) }
