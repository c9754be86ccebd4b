package ordersapi

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/awesome-pizza/pizza/pkg/problem"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
)

// Request limits. Generous for real orders, tight enough to refuse abuse.
const (
	MaxItems          = 25
	MaxQuantity       = 50
	MaxToppings       = 10
	MaxTextLength     = 200
	MaxReasonLength   = 500
	MaxIdempotencyKey = 200
)

// DecodePlaceOrder decodes a POST /api/orders body strictly: one JSON
// object, no unknown fields, the right types. It returns a 400 *Problem that
// names the field on failure. It does not check values: see Validate.
func DecodePlaceOrder(body []byte) (PlaceOrderRequest, error) {
	var req PlaceOrderRequest
	if err := decodeStrict(body, &req); err != nil {
		return PlaceOrderRequest{}, err
	}
	return req, nil
}

func decodeStrict(body []byte, dst any) error { return problem.DecodeStrict(body, dst) }

// Validate checks the values of a request that do not depend on the menu:
// required fields, enumerations, ranges, id safety. All problems are
// reported at once.
func (r PlaceOrderRequest) Validate() []FieldError {
	var errs []FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	checkID := func(field, v string) {
		if v == "" {
			add(field, "is required")
		} else if err := events.ValidateID(v); err != nil {
			add(field, "%v", err)
		}
	}
	checkID("customerId", r.CustomerID)
	checkID("restaurantId", r.RestaurantID)
	switch {
	case len(r.Items) == 0:
		add("items", "at least one item is required")
	case len(r.Items) > MaxItems:
		add("items", "at most %d items per order", MaxItems)
	}
	for i, it := range r.Items {
		p := fmt.Sprintf("items[%d]", i)
		if it.PizzaType == "" {
			add(p+".pizzaType", "is required")
		} else if len(it.PizzaType) > MaxTextLength {
			add(p+".pizzaType", "is too long")
		}
		if !slices.Contains(catalog.Sizes, it.Size) {
			add(p+".size", "must be one of %s", strings.Join(catalog.Sizes, ", "))
		}
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			add(p+".quantity", "must be between 1 and %d", MaxQuantity)
		}
		if len(it.Toppings) > MaxToppings {
			add(p+".toppings", "at most %d toppings", MaxToppings)
		}
		for j, tp := range it.Toppings {
			if tp == "" || len(tp) > MaxTextLength {
				add(fmt.Sprintf("%s.toppings[%d]", p, j), "must be a topping name")
			}
		}
	}
	if r.Address == nil {
		add("address", "is required")
	} else {
		a := r.Address
		if strings.TrimSpace(a.Street) == "" {
			add("address.street", "is required")
		}
		if strings.TrimSpace(a.City) == "" {
			add("address.city", "is required")
		}
		for field, v := range map[string]string{"address.street": a.Street, "address.city": a.City, "address.state": a.State, "address.zipCode": a.ZipCode} {
			if len(v) > MaxTextLength {
				add(field, "is longer than %d characters", MaxTextLength)
			}
		}
		switch c := a.Coordinates; {
		case c == nil:
			add("address.coordinates", "is required")
		default:
			if c.Latitude == nil {
				add("address.coordinates.latitude", "is required")
			} else if v := *c.Latitude; math.IsNaN(v) || v < -90 || v > 90 {
				add("address.coordinates.latitude", "must be between -90 and 90")
			}
			if c.Longitude == nil {
				add("address.coordinates.longitude", "is required")
			} else if v := *c.Longitude; math.IsNaN(v) || v < -180 || v > 180 {
				add("address.coordinates.longitude", "must be between -180 and 180")
			}
		}
	}
	if !slices.Contains(catalog.PaymentMethods, r.PaymentMethod) {
		add("paymentMethod", "must be one of %s", strings.Join(catalog.PaymentMethods, ", "))
	}
	slices.SortStableFunc(errs, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
	return errs
}

// DecodeCancel decodes a POST /api/orders/{id}/cancel body; an empty body
// is allowed.
func DecodeCancel(body []byte) (reason string, err error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return "", nil
	}
	var b struct {
		Reason string `json:"reason"`
	}
	if err := decodeStrict(body, &b); err != nil {
		return "", err
	}
	if len(b.Reason) > MaxReasonLength {
		return "", Validation(FieldError{Field: "reason", Detail: fmt.Sprintf("is longer than %d characters", MaxReasonLength)})
	}
	return b.Reason, nil
}
