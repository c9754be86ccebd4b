// Package inventoryapi is the public contract of the inventory service: the
// command subjects it serves over NATS request/reply, the command and reply
// bodies, the stock read model the gateway serves from Redis (keys, view
// types, notification channel), and the HTTP body the gateway accepts for
// stock updates.
package inventoryapi

import (
	"time"

	"github.com/awesome-pizza/pizza/pkg/projection"
)

// Service identity and command subjects (nats.go/micro endpoints). They sit
// outside the event subjects ("inventory.>") so no stream ever captures a
// command.
const (
	ServiceName    = "inventory"
	ServiceVersion = "1.0.0"
	QueueGroup     = "inventory"
	// SubjectRestock takes a RestockCommand and appends stock_restocked.
	SubjectRestock = "svc.inventory.restock"
	// SubjectAdjust takes an AdjustCommand and appends stock_adjusted.
	SubjectAdjust = "svc.inventory.adjust"
)

// Durable consumer names of the inventory service. They are contracts:
// renaming one makes the server replay the whole upstream stream into it.
const (
	// DurableOrders reads ORDERS (orders.>): reserves on order_placed,
	// releases or wastes on order_cancelled and order_failed.
	DurableOrders = "inventory-orders"
	// DurableKitchen reads KITCHEN (kitchen.>): consumes a reservation on
	// the first ticket_preparation_started of an order.
	DurableKitchen = "inventory-kitchen"
)

// ReadModel is the name of the stock read model in Redis.
const ReadModel = "inventory"

// StockKey is the Redis key of one restaurant's StockView (a JSON string).
func StockKey(keyspace, restaurantID string) string {
	return projection.KeyBase(keyspace, ReadModel) + "stock:" + restaurantID
}

// RestaurantsKey is a Redis set of the restaurant ids that have a StockView.
func RestaurantsKey(keyspace string) string {
	return projection.KeyBase(keyspace, ReadModel) + "restaurants"
}

// Channel is where the stock projector publishes a Notification after
// every applied event.
func Channel(keyspace string) string { return projection.Channel(keyspace, ReadModel) }

// Request limits.
const (
	MaxItems        = 100       // lines per restock or adjustment
	MaxUnits        = 1_000_000 // units per line
	MaxReasonLength = 500
	MaxByLength     = 200
	MaxIngredient   = 64
)

// RestockCommand adds delivered goods to a restaurant's stock. It is what
// the gateway sends to SubjectRestock.
type RestockCommand struct {
	RestaurantID string        `json:"restaurantId"`
	Items        []RestockItem `json:"items"`
	// By names who received the goods (staff id); optional.
	By string `json:"by,omitempty"`
	// IdempotencyKey makes a retried command land once (within the
	// stream's duplicate window, and while the aggregate remembers it).
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	CorrelationID  string `json:"correlationId,omitempty"`
	TraceParent    string `json:"traceparent,omitempty"`
}

// RestockItem is one delivered ingredient: Quantity units (> 0) are added.
type RestockItem struct {
	Ingredient string `json:"ingredient"`
	Quantity   int64  `json:"quantity"`
}

// AdjustCommand sets absolute on-hand counts after a stock take
// (spoilage, miscounts). It is what the gateway sends to SubjectAdjust.
// An on-hand below the units reserved for orders not yet in preparation
// is refused with 409.
type AdjustCommand struct {
	RestaurantID   string       `json:"restaurantId"`
	Items          []AdjustItem `json:"items"`
	Reason         string       `json:"reason"` // required
	By             string       `json:"by,omitempty"`
	IdempotencyKey string       `json:"idempotencyKey,omitempty"`
	CorrelationID  string       `json:"correlationId,omitempty"`
	TraceParent    string       `json:"traceparent,omitempty"`
}

// AdjustItem is one counted ingredient: OnHand (>= 0) is the new count.
type AdjustItem struct {
	Ingredient string `json:"ingredient"`
	OnHand     int64  `json:"onHand"`
}

// CommandReply is the successful reply to every command: the stock as the
// command left it, and the stream sequence of its last event, so callers
// can wait for the read model to reach it (StockView.Version >= Seq).
type CommandReply struct {
	Stock    StockView `json:"stock"`
	Seq      uint64    `json:"seq"`
	Replayed bool      `json:"replayed,omitempty"`
}

// StockView is the stock read model of one restaurant, as served by
// GET /api/inventory/{restaurantId}.
type StockView struct {
	RestaurantID string     `json:"restaurantId"`
	Items        []ItemView `json:"items"` // every ingredient, sorted by name
	// LowStock lists the ingredients whose available units are at or below
	// their threshold, sorted.
	LowStock []string `json:"lowStock"`
	// RecentAlerts are the latest low-stock alerts, newest first (at most
	// MaxRecentAlerts).
	RecentAlerts []AlertView `json:"recentAlerts"`
	Version      uint64      `json:"version"` // INVENTORY stream sequence of the last applied event
	LastUpdated  time.Time   `json:"lastUpdated"`
}

// ItemView is the stock of one ingredient, in units.
type ItemView struct {
	Ingredient string `json:"ingredient"`
	OnHand     int64  `json:"onHand"`    // physically in the restaurant
	Reserved   int64  `json:"reserved"`  // set aside for orders whose preparation has not started
	Available  int64  `json:"available"` // onHand - reserved: what new orders can take
	Threshold  int64  `json:"threshold"` // low when available <= threshold
	Low        bool   `json:"low"`       // available <= threshold
	// AlertOpen is set from the low-stock alert until a restock or an
	// adjustment brings available above the threshold.
	AlertOpen bool `json:"alertOpen"`
}

// MaxRecentAlerts bounds StockView.RecentAlerts.
const MaxRecentAlerts = 10

// AlertView is one stock_running_low alert.
type AlertView struct {
	Ingredient string    `json:"ingredient"`
	Available  int64     `json:"available"`
	Threshold  int64     `json:"threshold"`
	At         time.Time `json:"at"`
	Seq        uint64    `json:"seq"`
}

// Notification is published on Channel after every applied event.
type Notification struct {
	RestaurantID string    `json:"restaurantId"`
	Seq          uint64    `json:"seq"`
	Stock        StockView `json:"stock"`
}
