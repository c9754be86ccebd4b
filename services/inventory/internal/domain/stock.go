package domain

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/awesome-pizza/pizza/pkg/events"
)

// ReservationState is where an order stands with this restaurant's stock.
type ReservationState int

// The states of an order's reservation.
const (
	NoReservation ReservationState = iota // the order is unknown here
	Reserved                              // ingredients set aside, preparation not started
	Consumed                              // preparation started: the ingredients are used
	Released                              // returned to stock before preparation
	Wasted                                // used for an order that was then cancelled or failed
	Rejected                              // not enough stock: nothing was set aside
)

func (s ReservationState) String() string {
	switch s {
	case Reserved:
		return "reserved"
	case Consumed:
		return "consumed"
	case Released:
		return "released"
	case Wasted:
		return "wasted"
	case Rejected:
		return "rejected"
	default:
		return "none"
	}
}

// Outcomes that leave the stock unchanged. Reactions to other contexts'
// events treat them as "nothing (more) to do"; they are not failures.
var (
	ErrNotInitialized      = errors.New("the restaurant's stock is not initialised")
	ErrAlreadyInitialized  = errors.New("the restaurant's stock is already initialised")
	ErrOrderAlreadyHandled = errors.New("the order already has a reservation or a rejection")
	ErrNoReservation       = errors.New("the order has no reservation")
	ErrReservationClosed   = errors.New("the order's reservation was already released or wasted")
	ErrAlreadyConsumed     = errors.New("the order's reservation is already consumed")
)

// FieldError names an invalid field of a command, JSON-path style.
type FieldError struct {
	Field  string
	Detail string
}

// ValidationError reports invalid command input.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Detail
	}
	return "invalid stock command: " + strings.Join(parts, "; ")
}

// BelowReservedError refuses an adjustment that would leave fewer units on
// hand than are reserved for orders not yet in preparation.
type BelowReservedError struct {
	Ingredient string
	OnHand     int64
	Reserved   int64
}

func (e *BelowReservedError) Error() string {
	return fmt.Sprintf("%s: an on-hand count of %d is below the %d units reserved for orders not yet in preparation",
		e.Ingredient, e.OnHand, e.Reserved)
}

// Quantity is one line of a restock (units to add) or an adjustment (new
// on-hand units).
type Quantity struct {
	Ingredient string
	Units      int64
}

type reservation struct {
	state       ReservationState
	ingredients map[string]int64 // while Reserved or Consumed
}

// Stock is one restaurant's stock aggregate: ingredient levels, every
// order's reservation, and open low-stock alerts. Its invariant: on-hand
// and available units are never negative.
type Stock struct {
	restaurantID string
	initialized  bool
	levels       Levels
	orders       map[string]reservation
	menu         map[string]bool // ingredients the catalogue knows
}

// New returns the empty stock of a restaurant. menuIngredients are the
// ingredients the catalogue knows; they may be restocked even before the
// restaurant holds any.
func New(restaurantID string, menuIngredients []string) *Stock {
	menu := make(map[string]bool, len(menuIngredients))
	for _, ing := range menuIngredients {
		menu[ing] = true
	}
	return &Stock{restaurantID: restaurantID, levels: Levels{}, orders: map[string]reservation{}, menu: menu}
}

// RestaurantID returns the restaurant the stock belongs to.
func (s *Stock) RestaurantID() string { return s.restaurantID }

// Levels returns a copy of every ingredient's level.
func (s *Stock) Levels() Levels { return s.levels.Clone() }

// Reservation returns where an order stands, and the reserved ingredients
// while the reservation is open or consumed.
func (s *Stock) Reservation(orderID string) (ReservationState, map[string]int64) {
	r, ok := s.orders[orderID]
	if !ok {
		return NoReservation, nil
	}
	return r.state, maps.Clone(r.ingredients)
}

// Knows reports whether an ingredient may be stocked here.
func (s *Stock) Knows(ingredient string) bool {
	_, stocked := s.levels[ingredient]
	return stocked || s.menu[ingredient]
}

// Initialize opens the stock with the restaurant's opening units; each
// ingredient's threshold is ThresholdPercent of its opening units, rounded up.
func (s *Stock) Initialize(opening map[string]int64) ([]events.Event, error) {
	if s.initialized {
		return nil, ErrAlreadyInitialized
	}
	onHand := make(map[string]int64, len(opening))
	thresholds := make(map[string]int64, len(opening))
	for ing, n := range opening {
		if n < 0 {
			return nil, fmt.Errorf("opening stock of %s is negative (%d)", ing, n)
		}
		onHand[ing] = n
		thresholds[ing] = Threshold(n)
	}
	return []events.Event{events.StockInitialized{RestaurantID: s.restaurantID, OnHand: onHand, Thresholds: thresholds}}, nil
}

// Reserve sets aside what an order needs. When every ingredient is
// available it returns stock_reserved followed by stock_running_low for
// each needed ingredient that the reservation leaves at or below its
// threshold without an open alert; otherwise stock_reservation_rejected
// naming every missing ingredient, and no stock moves. An order that was
// already reserved or rejected gets ErrOrderAlreadyHandled.
func (s *Stock) Reserve(orderID string, need map[string]int64, lines []events.OrderLine, to events.GeoPoint) ([]events.Event, error) {
	if !s.initialized {
		return nil, ErrNotInitialized
	}
	if _, ok := s.orders[orderID]; ok {
		return nil, ErrOrderAlreadyHandled
	}
	var missing []events.MissingIngredient
	for _, ing := range slices.Sorted(maps.Keys(need)) {
		n := need[ing]
		if n < 0 {
			return nil, fmt.Errorf("order %s needs a negative quantity of %s (%d)", orderID, ing, n)
		}
		if avail := s.levels[ing].Available(); avail < n {
			missing = append(missing, events.MissingIngredient{Ingredient: ing, Required: n, Available: max(avail, 0)})
		}
	}
	if len(missing) > 0 {
		return []events.Event{events.StockReservationRejected{OrderID: orderID, RestaurantID: s.restaurantID, Missing: missing}}, nil
	}
	reserved := events.StockReserved{
		OrderID: orderID, RestaurantID: s.restaurantID, Ingredients: maps.Clone(need),
		Lines: slices.Clone(lines), DeliveryLocation: to,
	}
	return s.withLowAlerts(reserved, slices.Collect(maps.Keys(need))), nil
}

// Consume turns an order's reservation into used stock (preparation
// started): on-hand units go down by the reservation.
func (s *Stock) Consume(orderID string) ([]events.Event, error) {
	r := s.orders[orderID]
	switch r.state {
	case Reserved:
		return []events.Event{events.StockConsumed{OrderID: orderID, Ingredients: maps.Clone(r.ingredients)}}, nil
	case Consumed:
		return nil, ErrAlreadyConsumed
	case Released, Wasted:
		return nil, ErrReservationClosed
	default:
		return nil, ErrNoReservation
	}
}

// Release settles the reservation of an order that was cancelled or failed:
// an unused reservation goes back to stock (stock_released), a consumed one
// is recorded as waste (stock_wasted).
func (s *Stock) Release(orderID, reason string) ([]events.Event, error) {
	r := s.orders[orderID]
	switch r.state {
	case Reserved:
		return []events.Event{events.StockReleased{OrderID: orderID, Ingredients: maps.Clone(r.ingredients), Reason: reason}}, nil
	case Consumed:
		return []events.Event{events.StockWasted{OrderID: orderID, Ingredients: maps.Clone(r.ingredients), Reason: reason}}, nil
	case Released, Wasted:
		return nil, ErrReservationClosed
	default:
		return nil, ErrNoReservation
	}
}

// Restock adds delivered units. Field errors name items[i].ingredient and
// items[i].quantity. An ingredient the restock leaves still at or below its
// threshold without an open alert gets one in the same decision.
func (s *Stock) Restock(items []Quantity, by string) ([]events.Event, error) {
	if !s.initialized {
		return nil, ErrNotInitialized
	}
	if fields := s.validate(items, "quantity", 1); len(fields) > 0 {
		return nil, &ValidationError{Fields: fields}
	}
	added := make(map[string]int64, len(items))
	for _, it := range items {
		added[it.Ingredient] = it.Units
	}
	return s.withLowAlerts(events.StockRestocked{Quantities: added, By: by}, slices.Collect(maps.Keys(added))), nil
}

// Adjust sets counted on-hand units after a stock take. It refuses a count
// below the units reserved for orders not yet in preparation
// (*BelowReservedError), so available never goes negative. Field errors
// name items[i].ingredient, items[i].onHand and reason.
func (s *Stock) Adjust(items []Quantity, reason, by string) ([]events.Event, error) {
	if !s.initialized {
		return nil, ErrNotInitialized
	}
	fields := s.validate(items, "onHand", 0)
	if strings.TrimSpace(reason) == "" {
		fields = append(fields, FieldError{Field: "reason", Detail: "is required for an adjustment"})
	}
	if len(fields) > 0 {
		return nil, &ValidationError{Fields: fields}
	}
	counted := make(map[string]int64, len(items))
	for _, it := range items {
		if reserved := s.levels[it.Ingredient].Reserved; it.Units < reserved {
			return nil, &BelowReservedError{Ingredient: it.Ingredient, OnHand: it.Units, Reserved: reserved}
		}
		counted[it.Ingredient] = it.Units
	}
	return s.withLowAlerts(events.StockAdjusted{OnHand: counted, Reason: reason, By: by}, slices.Collect(maps.Keys(counted))), nil
}

// CheckLow returns stock_running_low for every ingredient at or below its
// threshold that has no open alert (the periodic check).
func (s *Stock) CheckLow() []events.Event {
	if !s.initialized {
		return nil
	}
	return lowAlerts(s.levels, s.levels.Ingredients())
}

// withLowAlerts returns e followed by the alerts its effect calls for
// among the affected ingredients.
func (s *Stock) withLowAlerts(e events.Event, affected []string) []events.Event {
	after := s.levels.Clone()
	after.Apply(e)
	slices.Sort(affected)
	return append([]events.Event{e}, lowAlerts(after, affected)...)
}

func lowAlerts(ls Levels, ingredients []string) []events.Event {
	var out []events.Event
	for _, ing := range ingredients {
		if l := ls[ing]; l.Low() && !l.Alert {
			out = append(out, events.StockRunningLow{Ingredient: ing, Available: l.Available(), Threshold: l.Threshold})
		}
	}
	return out
}

func (s *Stock) validate(items []Quantity, unitsField string, minUnits int64) []FieldError {
	var fields []FieldError
	if len(items) == 0 {
		fields = append(fields, FieldError{Field: "items", Detail: "at least one item is required"})
	}
	seen := map[string]bool{}
	for i, it := range items {
		switch {
		case !s.Knows(it.Ingredient):
			fields = append(fields, FieldError{Field: fmt.Sprintf("items[%d].ingredient", i), Detail: fmt.Sprintf("unknown ingredient %q", it.Ingredient)})
		case seen[it.Ingredient]:
			fields = append(fields, FieldError{Field: fmt.Sprintf("items[%d].ingredient", i), Detail: fmt.Sprintf("%q is listed twice", it.Ingredient)})
		}
		seen[it.Ingredient] = true
		if it.Units < minUnits {
			fields = append(fields, FieldError{Field: fmt.Sprintf("items[%d].%s", i, unitsField), Detail: fmt.Sprintf("must be at least %d", minUnits)})
		}
	}
	return fields
}

// Apply changes the state by one event. It never fails: events are facts.
func (s *Stock) Apply(e events.Event) {
	s.levels.Apply(e)
	switch e := e.(type) {
	case events.StockInitialized:
		s.initialized = true
	case events.StockReserved:
		s.orders[e.OrderID] = reservation{state: Reserved, ingredients: maps.Clone(e.Ingredients)}
	case events.StockReservationRejected:
		s.orders[e.OrderID] = reservation{state: Rejected}
	case events.StockConsumed:
		s.orders[e.OrderID] = reservation{state: Consumed, ingredients: maps.Clone(e.Ingredients)}
	case events.StockReleased:
		s.orders[e.OrderID] = reservation{state: Released}
	case events.StockWasted:
		s.orders[e.OrderID] = reservation{state: Wasted}
	}
}
