package events

import (
	"encoding/json"
	"errors"
	"time"
)

// Order events: produced by the orders service on subject orders.<orderId>
// of stream ORDERS. Every state change of an order is one of these.

// OrderItem is one priced line of an order. Prices come from the menu at the
// time of placement and are stored so history never depends on later menus.
type OrderItem struct {
	PizzaType      string   `json:"pizzaType"`
	Size           string   `json:"size"`
	Toppings       []string `json:"toppings,omitempty"`
	Quantity       int      `json:"quantity"`
	UnitPriceCents int64    `json:"unitPriceCents"`
	LineTotalCents int64    `json:"lineTotalCents"`
}

// GeoPoint is a WGS84 coordinate.
type GeoPoint struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

// OrderPlaced records a new order, priced from the menu.
// Personal data is not in the payload: the street address is held in the
// personal-data vault under AddressRef so it can be erased without
// rewriting the log; the customer is a pseudonymous id.
//
// Version 2 splits the price into the items' subtotal and the delivery
// fee (TotalCents = SubtotalCents + DeliveryFeeCents). Stored v1 events are
// upcast on read: their total was the subtotal and no fee was charged.
type OrderPlaced struct {
	RestaurantID        string      `json:"restaurantId"`
	CustomerID          string      `json:"customerId"`
	Items               []OrderItem `json:"items"`
	SubtotalCents       int64       `json:"subtotalCents"`
	DeliveryFeeCents    int64       `json:"deliveryFeeCents"`
	TotalCents          int64       `json:"totalCents"`
	Currency            string      `json:"currency"`
	PaymentMethod       string      `json:"paymentMethod"`
	DeliveryLocation    GeoPoint    `json:"deliveryLocation"`
	AddressRef          string      `json:"addressRef,omitempty"`
	EstimatedDeliveryAt time.Time   `json:"estimatedDeliveryAt"`
	// RequestHash fingerprints the client's request, so a retry with the
	// same Idempotency-Key but a different body can be told apart.
	RequestHash string `json:"requestHash,omitempty"`
	// Validated (v3) says the placement also validated the order: it starts
	// in status Validated, and no order_validated follows. Orders placed
	// before v3 (false after the upcast) start Created, and their
	// order_validated comes next in the log.
	Validated bool `json:"validated,omitempty"`
}

func (OrderPlaced) EventType() string { return "order_placed" }
func (OrderPlaced) EventVersion() int { return 3 }

// Status is the order's status right after the placement.
func (e OrderPlaced) Status() string {
	if e.Validated {
		return "Validated"
	}
	return "Created"
}

// upcastOrderPlacedV2 turns an order_placed.v2 payload into v3: the same
// fields, without "validated" (an order_validated follows it in the log).
func upcastOrderPlacedV2(data json.RawMessage) (json.RawMessage, error) { return data, nil }

// upcastOrderPlacedV1 turns an order_placed.v1 payload into v2: the v1
// total becomes the subtotal, with no delivery fee. Unknown fields are kept.
func upcastOrderPlacedV1(data json.RawMessage) (json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, err
	}
	total, ok := fields["totalCents"]
	if !ok {
		return nil, errors.New("order_placed.v1 without totalCents")
	}
	fields["subtotalCents"] = total
	fields["deliveryFeeCents"] = json.RawMessage("0")
	return json.Marshal(fields)
}

// OrderValidated records that the order passed validation against the
// restaurant's menu and is accepted for fulfilment.
type OrderValidated struct{}

func (OrderValidated) EventType() string { return "order_validated" }
func (OrderValidated) EventVersion() int { return 1 }

// OrderQueued records that the kitchen has the order in its queue.
type OrderQueued struct {
	TicketID string `json:"ticketId,omitempty"`
}

func (OrderQueued) EventType() string { return "order_queued" }
func (OrderQueued) EventVersion() int { return 1 }

// OrderPreparationStarted records that a chef started the order; Remake is
// set when a failed quality check sent the pizza back.
type OrderPreparationStarted struct {
	ChefID string `json:"chefId,omitempty"`
	Remake bool   `json:"remake,omitempty"`
}

func (OrderPreparationStarted) EventType() string { return "order_preparation_started" }
func (OrderPreparationStarted) EventVersion() int { return 1 }

// OrderBakingStarted records that the order went into the oven.
type OrderBakingStarted struct {
	DueAt *time.Time `json:"dueAt,omitempty"`
}

func (OrderBakingStarted) EventType() string { return "order_baking_started" }
func (OrderBakingStarted) EventVersion() int { return 1 }

// OrderQualityCheckStarted records that the baked order is being checked.
type OrderQualityCheckStarted struct{}

func (OrderQualityCheckStarted) EventType() string { return "order_quality_check_started" }
func (OrderQualityCheckStarted) EventVersion() int { return 1 }

// OrderReadyForPickup records that the order waits for a driver.
type OrderReadyForPickup struct{}

func (OrderReadyForPickup) EventType() string { return "order_ready_for_pickup" }
func (OrderReadyForPickup) EventVersion() int { return 1 }

// OrderDriverAssigned records the driver who will deliver the order.
type OrderDriverAssigned struct {
	DriverID string `json:"driverId"`
}

func (OrderDriverAssigned) EventType() string { return "order_driver_assigned" }
func (OrderDriverAssigned) EventVersion() int { return 1 }

// OrderPickedUp records that the assigned driver collected the order.
type OrderPickedUp struct {
	DriverID string `json:"driverId"`
}

func (OrderPickedUp) EventType() string { return "order_picked_up" }
func (OrderPickedUp) EventVersion() int { return 1 }

// OrderOutForDelivery records that the driver is on the way.
type OrderOutForDelivery struct {
	DriverID            string     `json:"driverId"`
	EstimatedDeliveryAt *time.Time `json:"estimatedDeliveryAt,omitempty"`
}

func (OrderOutForDelivery) EventType() string { return "order_out_for_delivery" }
func (OrderOutForDelivery) EventVersion() int { return 1 }

// OrderDelivered records the hand-over to the customer.
type OrderDelivered struct {
	DriverID string `json:"driverId"`
}

func (OrderDelivered) EventType() string { return "order_delivered" }
func (OrderDelivered) EventVersion() int { return 1 }

// OrderCancelled records a cancellation and the state it happened in, so
// other contexts know what to compensate.
type OrderCancelled struct {
	Reason      string `json:"reason"`
	CancelledBy string `json:"cancelledBy,omitempty"`
	FromStatus  string `json:"fromStatus"`
}

func (OrderCancelled) EventType() string { return "order_cancelled" }
func (OrderCancelled) EventVersion() int { return 1 }

// OrderFailed records that the order cannot be fulfilled.
type OrderFailed struct {
	Reason     string `json:"reason"`
	FromStatus string `json:"fromStatus"`
}

func (OrderFailed) EventType() string { return "order_failed" }
func (OrderFailed) EventVersion() int { return 1 }

// OrderStuckDetected is an alert: the order made no progress in its
// status for longer than the status allows. It does not change the status.
type OrderStuckDetected struct {
	Status    string        `json:"status"`
	Since     time.Time     `json:"since"`
	Threshold time.Duration `json:"thresholdNs"`
}

func (OrderStuckDetected) EventType() string { return "order_stuck_detected" }
func (OrderStuckDetected) EventVersion() int { return 1 }

// OrderStatusOverridden records a staff member forcing a transition; it is
// appended together with the transition's own event.
type OrderStatusOverridden struct {
	Status string `json:"status"`
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
}

func (OrderStatusOverridden) EventType() string { return "order_status_overridden" }
func (OrderStatusOverridden) EventVersion() int { return 1 }

// OrderPersonalDataErased records that the personal data an order
// referenced (its delivery address in the vault) was erased on request.
// The order, its items and totals stay; only the reference no longer resolves.
type OrderPersonalDataErased struct {
	Fields []string `json:"fields"`
	By     string   `json:"by,omitempty"`
}

func (OrderPersonalDataErased) EventType() string { return "order_personal_data_erased" }
func (OrderPersonalDataErased) EventVersion() int { return 1 }

// RegisterOrderEvents adds every order event to r.
func RegisterOrderEvents(r *Registry) {
	Register[OrderPlaced](r)
	r.RegisterUpcaster("order_placed", 1, upcastOrderPlacedV1)
	r.RegisterUpcaster("order_placed", 2, upcastOrderPlacedV2)
	Register[OrderValidated](r)
	Register[OrderQueued](r)
	Register[OrderPreparationStarted](r)
	Register[OrderBakingStarted](r)
	Register[OrderQualityCheckStarted](r)
	Register[OrderReadyForPickup](r)
	Register[OrderDriverAssigned](r)
	Register[OrderPickedUp](r)
	Register[OrderOutForDelivery](r)
	Register[OrderDelivered](r)
	Register[OrderCancelled](r)
	Register[OrderFailed](r)
	Register[OrderStuckDetected](r)
	Register[OrderStatusOverridden](r)
	Register[OrderPersonalDataErased](r)
}
