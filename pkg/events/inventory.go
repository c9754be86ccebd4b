package events

// Inventory events: produced by the inventory service on subject
// inventory.<restaurantId> of stream INVENTORY. The aggregate is one
// restaurant's stock (on-hand and reserved units per ingredient).

// OrderLine is an order line without prices, as other contexts need it.
type OrderLine struct {
	PizzaType string   `json:"pizzaType"`
	Size      string   `json:"size"`
	Toppings  []string `json:"toppings,omitempty"`
	Quantity  int      `json:"quantity"`
}

// MissingIngredient names what a reservation lacked.
type MissingIngredient struct {
	Ingredient string `json:"ingredient"`
	Required   int64  `json:"required"`
	Available  int64  `json:"available"`
}

// StockInitialized opens a restaurant's stock (first event of the aggregate).
type StockInitialized struct {
	RestaurantID string           `json:"restaurantId"`
	OnHand       map[string]int64 `json:"onHand"`
	Thresholds   map[string]int64 `json:"thresholds"`
}

func (StockInitialized) EventType() string { return "stock_initialized" }
func (StockInitialized) EventVersion() int { return 1 }

// StockReserved sets ingredients aside for an order. It carries what the
// kitchen needs to open a ticket.
type StockReserved struct {
	OrderID          string           `json:"orderId"`
	RestaurantID     string           `json:"restaurantId"`
	Ingredients      map[string]int64 `json:"ingredients"`
	Lines            []OrderLine      `json:"lines"`
	DeliveryLocation GeoPoint         `json:"deliveryLocation"`
}

func (StockReserved) EventType() string { return "stock_reserved" }
func (StockReserved) EventVersion() int { return 1 }

// StockReservationRejected records that an order could not be served.
type StockReservationRejected struct {
	OrderID      string              `json:"orderId"`
	RestaurantID string              `json:"restaurantId"`
	Missing      []MissingIngredient `json:"missing"`
}

func (StockReservationRejected) EventType() string { return "stock_reservation_rejected" }
func (StockReservationRejected) EventVersion() int { return 1 }

// StockConsumed turns an order's reservation into used stock (preparation started).
type StockConsumed struct {
	OrderID     string           `json:"orderId"`
	Ingredients map[string]int64 `json:"ingredients"`
}

func (StockConsumed) EventType() string { return "stock_consumed" }
func (StockConsumed) EventVersion() int { return 1 }

// StockReleased returns an unused reservation (order cancelled or failed).
type StockReleased struct {
	OrderID     string           `json:"orderId"`
	Ingredients map[string]int64 `json:"ingredients"`
	Reason      string           `json:"reason"`
}

func (StockReleased) EventType() string { return "stock_released" }
func (StockReleased) EventVersion() int { return 1 }

// StockWasted records ingredients used for an order that was not delivered.
type StockWasted struct {
	OrderID     string           `json:"orderId"`
	Ingredients map[string]int64 `json:"ingredients"`
	Reason      string           `json:"reason"`
}

func (StockWasted) EventType() string { return "stock_wasted" }
func (StockWasted) EventVersion() int { return 1 }

// StockRestocked adds delivered goods.
type StockRestocked struct {
	Quantities map[string]int64 `json:"quantities"` // added units, all > 0
	By         string           `json:"by,omitempty"`
}

func (StockRestocked) EventType() string { return "stock_restocked" }
func (StockRestocked) EventVersion() int { return 1 }

// StockAdjusted corrects on-hand counts after a stock take (spoilage, counting).
type StockAdjusted struct {
	OnHand map[string]int64 `json:"onHand"` // new absolute on-hand units
	Reason string           `json:"reason"`
	By     string           `json:"by,omitempty"`
}

func (StockAdjusted) EventType() string { return "stock_adjusted" }
func (StockAdjusted) EventVersion() int { return 1 }

// StockRunningLow is an alert: available units fell to or below the threshold.
type StockRunningLow struct {
	Ingredient string `json:"ingredient"`
	Available  int64  `json:"available"`
	Threshold  int64  `json:"threshold"`
}

func (StockRunningLow) EventType() string { return "stock_running_low" }
func (StockRunningLow) EventVersion() int { return 1 }

// RegisterInventoryEvents adds every inventory event to r.
func RegisterInventoryEvents(r *Registry) {
	Register[StockInitialized](r)
	Register[StockReserved](r)
	Register[StockReservationRejected](r)
	Register[StockConsumed](r)
	Register[StockReleased](r)
	Register[StockWasted](r)
	Register[StockRestocked](r)
	Register[StockAdjusted](r)
	Register[StockRunningLow](r)
}
