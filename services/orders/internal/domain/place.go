package domain

import (
	"errors"
	"fmt"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
)

// PlaceInput is a structurally valid order request (see
// ordersapi.PlaceOrderRequest.Validate), reduced to what the decision needs.
type PlaceInput struct {
	CustomerID    string
	RestaurantID  string
	Items         []ItemInput
	Location      events.GeoPoint
	AddressRef    string
	PaymentMethod string
	RequestHash   string
}

// ItemInput is one requested line.
type ItemInput struct {
	PizzaType string
	Size      string
	Toppings  []string
	Quantity  int
}

// FieldError names a request field that the menu rejects.
type FieldError struct {
	Field  string
	Detail string
}

// ValidationError lists every field the menu rejects.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("order rejected: %d invalid field(s), first %s: %s", len(e.Fields), e.Fields[0].Field, e.Fields[0].Detail)
}

// Delivery-time estimate used at placement, before the kitchen and drivers
// refine it.
const (
	basePrepTime    = 12 * time.Minute
	perPizzaTime    = 2 * time.Minute
	deliveryTime    = 20 * time.Minute
	maxPizzasForETA = 20
)

// Place decides a new order: every line is priced from the restaurant's
// menu (never from the client) and the order is accepted as validated, in
// one event (order_placed.v3 with validated set; ADR 0021): one message
// to store, no atomic batch.
func (o *Order) Place(in PlaceInput, menu *catalog.Catalog, now time.Time) ([]events.Event, error) {
	if o.Placed() {
		return nil, ErrAlreadyPlaced
	}
	var fields []FieldError
	restaurant, ok := menu.Restaurant(in.RestaurantID)
	if !ok {
		fields = append(fields, FieldError{"restaurantId", fmt.Sprintf("no restaurant %q", in.RestaurantID)})
		return nil, &ValidationError{Fields: fields}
	}
	items := make([]events.OrderItem, 0, len(in.Items))
	var subtotal int64
	pizzas := 0
	for i, it := range in.Items {
		unit, err := menu.Price(in.RestaurantID, it.PizzaType, it.Size, it.Toppings)
		switch {
		case errors.Is(err, catalog.ErrUnknownPizza):
			fields = append(fields, FieldError{fmt.Sprintf("items[%d].pizzaType", i), fmt.Sprintf("%q is not on the menu of %s", it.PizzaType, in.RestaurantID)})
			continue
		case errors.Is(err, catalog.ErrUnknownSize):
			fields = append(fields, FieldError{fmt.Sprintf("items[%d].size", i), fmt.Sprintf("%q is not a size", it.Size)})
			continue
		case errors.Is(err, catalog.ErrUnknownTopping):
			fields = append(fields, FieldError{fmt.Sprintf("items[%d].toppings", i), err.Error()})
			continue
		case err != nil:
			fields = append(fields, FieldError{fmt.Sprintf("items[%d]", i), err.Error()})
			continue
		}
		line := unit * int64(it.Quantity)
		subtotal += line
		pizzas += it.Quantity
		items = append(items, events.OrderItem{PizzaType: it.PizzaType, Size: it.Size, Toppings: it.Toppings, Quantity: it.Quantity, UnitPriceCents: unit, LineTotalCents: line})
	}
	if len(fields) > 0 {
		return nil, &ValidationError{Fields: fields}
	}
	eta := now.Add(basePrepTime + time.Duration(min(pizzas, maxPizzasForETA))*perPizzaTime + deliveryTime).UTC()
	return []events.Event{
		events.OrderPlaced{
			RestaurantID:        in.RestaurantID,
			CustomerID:          in.CustomerID,
			Items:               items,
			SubtotalCents:       subtotal,
			DeliveryFeeCents:    restaurant.DeliveryFeeCents,
			TotalCents:          subtotal + restaurant.DeliveryFeeCents,
			Currency:            menu.Currency,
			PaymentMethod:       in.PaymentMethod,
			DeliveryLocation:    in.Location,
			AddressRef:          in.AddressRef,
			EstimatedDeliveryAt: eta,
			RequestHash:         in.RequestHash,
			Validated:           true,
		},
	}, nil
}
