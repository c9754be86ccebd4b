package events

import (
	"encoding/json"
	"strings"
	"time"
)

// Kitchen events: produced by the kitchen service on stream KITCHEN. A
// ticket is the kitchen's aggregate for one order, on subject
// kitchen.<orderId>. Chefs' availability is an aggregate per chef on
// kitchen.<chefId>. The alerts a restaurant's kitchen devices raise are an
// aggregate per restaurant on kitchen.devices-<restaurantId>.

// KitchenDevicesPrefix starts the aggregate id of a restaurant's kitchen
// devices; no order id or chef id may start with it.
const KitchenDevicesPrefix = "devices-"

// KitchenDevicesAggregateID is the aggregate id of a restaurant's kitchen
// devices (their alerts).
func KitchenDevicesAggregateID(restaurantID string) string {
	return KitchenDevicesPrefix + restaurantID
}

// IsKitchenDevicesAggregate reports whether a KITCHEN aggregate id names a
// restaurant's kitchen devices rather than a ticket or a chef.
func IsKitchenDevicesAggregate(id string) bool { return strings.HasPrefix(id, KitchenDevicesPrefix) }

// TicketQueued opens a ticket for an order whose stock is reserved.
type TicketQueued struct {
	RestaurantID     string      `json:"restaurantId"`
	Lines            []OrderLine `json:"lines"`
	DeliveryLocation GeoPoint    `json:"deliveryLocation"`
}

func (TicketQueued) EventType() string { return "ticket_queued" }
func (TicketQueued) EventVersion() int { return 1 }

// TicketPreparationStarted: a chef started (or, after a failed check, restarted) the order.
type TicketPreparationStarted struct {
	RestaurantID string    `json:"restaurantId"`
	ChefID       string    `json:"chefId"`
	Attempt      int       `json:"attempt"` // 1, then 2… for remakes
	DueAt        time.Time `json:"dueAt"`
}

func (TicketPreparationStarted) EventType() string { return "ticket_preparation_started" }
func (TicketPreparationStarted) EventVersion() int { return 1 }

// TicketBakingStarted: the order went into the oven until DueAt.
type TicketBakingStarted struct {
	RestaurantID string    `json:"restaurantId"`
	DueAt        time.Time `json:"dueAt"`
}

func (TicketBakingStarted) EventType() string { return "ticket_baking_started" }
func (TicketBakingStarted) EventVersion() int { return 1 }

// TicketQualityCheckStarted: the baked order is being checked until DueAt.
type TicketQualityCheckStarted struct {
	RestaurantID string    `json:"restaurantId"`
	DueAt        time.Time `json:"dueAt"`
}

func (TicketQualityCheckStarted) EventType() string { return "ticket_quality_check_started" }
func (TicketQualityCheckStarted) EventVersion() int { return 1 }

// TicketQualityCheckFailed: the order goes back to preparation (a remake).
type TicketQualityCheckFailed struct {
	RestaurantID string `json:"restaurantId"`
	Reason       string `json:"reason"`
	Attempt      int    `json:"attempt"`
}

func (TicketQualityCheckFailed) EventType() string { return "ticket_quality_check_failed" }
func (TicketQualityCheckFailed) EventVersion() int { return 1 }

// TicketReady: the order waits at the pass for a driver.
type TicketReady struct {
	RestaurantID     string   `json:"restaurantId"`
	DeliveryLocation GeoPoint `json:"deliveryLocation"`
}

func (TicketReady) EventType() string { return "ticket_ready" }
func (TicketReady) EventVersion() int { return 1 }

// TicketWithdrawn: the order was cancelled or failed; the ticket leaves the queue.
type TicketWithdrawn struct {
	RestaurantID string `json:"restaurantId"`
	Reason       string `json:"reason"`
	FromStage    string `json:"fromStage"`
}

func (TicketWithdrawn) EventType() string { return "ticket_withdrawn" }
func (TicketWithdrawn) EventVersion() int { return 1 }

// ChefBreakStarted: the chef takes no new tickets until the break ends.
type ChefBreakStarted struct {
	RestaurantID string `json:"restaurantId"`
}

func (ChefBreakStarted) EventType() string { return "chef_break_started" }
func (ChefBreakStarted) EventVersion() int { return 1 }

// ChefBreakEnded: the chef takes tickets again.
type ChefBreakEnded struct {
	RestaurantID string `json:"restaurantId"`
}

func (ChefBreakEnded) EventType() string { return "chef_break_ended" }
func (ChefBreakEnded) EventVersion() int { return 1 }

// KitchenDeviceAlertRaised: a device of the restaurant's kitchen (an oven
// controller, a fridge probe) raised an alert, reported over MQTT on
// pizza/kitchen/{kitchenId}/alerts. The kitchen service records it on
// kitchen.devices-<restaurantId>; the device's raw message also stays in
// TELEMETRY (the bridge's kitchen_alert_raised).
type KitchenDeviceAlertRaised struct {
	RestaurantID string `json:"restaurantId"`
	// DeviceID is the device identity that raised it (the kitchen's MQTT
	// username, today the restaurant id).
	DeviceID string `json:"deviceId"`
	Alert    string `json:"alert"`
	Severity string `json:"severity"` // info, warning, critical
	// Details is the device's free-form JSON object, if any.
	Details  json.RawMessage `json:"details,omitempty"`
	RaisedAt time.Time       `json:"raisedAt"`
}

func (KitchenDeviceAlertRaised) EventType() string { return "kitchen_device_alert_raised" }
func (KitchenDeviceAlertRaised) EventVersion() int { return 1 }

// RegisterKitchenEvents adds every kitchen event to r.
func RegisterKitchenEvents(r *Registry) {
	Register[TicketQueued](r)
	Register[TicketPreparationStarted](r)
	Register[TicketBakingStarted](r)
	Register[TicketQualityCheckStarted](r)
	Register[TicketQualityCheckFailed](r)
	Register[TicketReady](r)
	Register[TicketWithdrawn](r)
	Register[ChefBreakStarted](r)
	Register[ChefBreakEnded](r)
	Register[KitchenDeviceAlertRaised](r)
}
