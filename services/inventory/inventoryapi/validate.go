package inventoryapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Validate checks a restock command's values that do not depend on the
// restaurant's stock. The restaurant id is checked by the service (404).
// Whether each ingredient exists is checked by the service too (422 on
// items[i].ingredient).
func (c RestockCommand) Validate() []FieldError {
	v := newValidator()
	v.items(len(c.Items))
	seen := map[string]int{}
	for i, it := range c.Items {
		v.ingredient(i, it.Ingredient, seen)
		if it.Quantity < 1 || it.Quantity > MaxUnits {
			v.add(fmt.Sprintf("items[%d].quantity", i), "must be between 1 and %d", MaxUnits)
		}
	}
	v.length("by", c.By, MaxByLength)
	return v.errs
}

// Validate checks an adjustment's values that do not depend on the
// restaurant's stock.
func (c AdjustCommand) Validate() []FieldError {
	v := newValidator()
	v.items(len(c.Items))
	seen := map[string]int{}
	for i, it := range c.Items {
		v.ingredient(i, it.Ingredient, seen)
		if it.OnHand < 0 || it.OnHand > MaxUnits {
			v.add(fmt.Sprintf("items[%d].onHand", i), "must be between 0 and %d", MaxUnits)
		}
	}
	v.reason(c.Reason)
	v.length("by", c.By, MaxByLength)
	return v.errs
}

// Modes of a stock update request.
const (
	ModeRestock = "restock"
	ModeAdjust  = "adjust"
)

// StockUpdateRequest is the body of PUT /api/inventory/{restaurantId}/stock.
// In mode "restock" each quantity is added to the on-hand units; in mode
// "adjust" each quantity is the new on-hand count and a reason is required.
type StockUpdateRequest struct {
	Mode   string            `json:"mode"`
	Items  []StockUpdateItem `json:"items"`
	Reason string            `json:"reason,omitempty"`
}

// StockUpdateItem is one line of a stock update.
type StockUpdateItem struct {
	Ingredient string `json:"ingredient"`
	Quantity   int64  `json:"quantity"`
}

// DecodeStockUpdate decodes a PUT /api/inventory/{restaurantId}/stock body
// strictly: one JSON object, no unknown fields, integer quantities. It
// returns a 400 *Problem naming the field on failure. Values are checked by
// Validate.
func DecodeStockUpdate(body []byte) (StockUpdateRequest, error) {
	var req StockUpdateRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return StockUpdateRequest{}, decodeProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return StockUpdateRequest{}, Malformed("", "the body must hold exactly one JSON object")
	}
	return req, nil
}

func decodeProblem(err error) *Problem {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return Malformed("", "the body is empty")
	case errors.As(err, &syn):
		return Malformed("", fmt.Sprintf("invalid JSON at byte %d: %v", syn.Offset, syn))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(root)"
		}
		return Malformed(field, fmt.Sprintf("expected %s, got JSON %s", typ.Type, typ.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return Malformed(name, "unknown field")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Malformed("", "the JSON body ends too early")
	default:
		return Malformed("", err.Error())
	}
}

// Validate checks the request with the field names of the HTTP body
// (items[i].quantity for both modes).
func (r StockUpdateRequest) Validate() []FieldError {
	v := newValidator()
	switch r.Mode {
	case ModeRestock, ModeAdjust:
	default:
		v.add("mode", "must be %q or %q", ModeRestock, ModeAdjust)
	}
	v.items(len(r.Items))
	seen := map[string]int{}
	for i, it := range r.Items {
		v.ingredient(i, it.Ingredient, seen)
		field := fmt.Sprintf("items[%d].quantity", i)
		switch {
		case r.Mode == ModeAdjust && (it.Quantity < 0 || it.Quantity > MaxUnits):
			v.add(field, "is the new on-hand count: must be between 0 and %d", MaxUnits)
		case r.Mode != ModeAdjust && (it.Quantity < 1 || it.Quantity > MaxUnits):
			v.add(field, "must be between 1 and %d", MaxUnits)
		}
	}
	if r.Mode == ModeAdjust {
		v.reason(r.Reason)
	} else {
		v.length("reason", r.Reason, MaxReasonLength)
	}
	return v.errs
}

// Subject is the command subject the request goes to.
func (r StockUpdateRequest) Subject() string {
	if r.Mode == ModeAdjust {
		return SubjectAdjust
	}
	return SubjectRestock
}

// Restock turns a restock request into its command.
func (r StockUpdateRequest) Restock(restaurantID, by, idempotencyKey, correlationID string) RestockCommand {
	items := make([]RestockItem, len(r.Items))
	for i, it := range r.Items {
		items[i] = RestockItem{Ingredient: it.Ingredient, Quantity: it.Quantity}
	}
	return RestockCommand{RestaurantID: restaurantID, Items: items, By: by, IdempotencyKey: idempotencyKey, CorrelationID: correlationID}
}

// Adjust turns an adjust request into its command: each quantity becomes
// the ingredient's new on-hand count.
func (r StockUpdateRequest) Adjust(restaurantID, by, idempotencyKey, correlationID string) AdjustCommand {
	items := make([]AdjustItem, len(r.Items))
	for i, it := range r.Items {
		items[i] = AdjustItem{Ingredient: it.Ingredient, OnHand: it.Quantity}
	}
	return AdjustCommand{RestaurantID: restaurantID, Items: items, Reason: r.Reason, By: by, IdempotencyKey: idempotencyKey, CorrelationID: correlationID}
}

// validator collects field errors.
type validator struct{ errs []FieldError }

func newValidator() *validator { return &validator{} }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
}

func (v *validator) items(n int) {
	switch {
	case n == 0:
		v.add("items", "at least one item is required")
	case n > MaxItems:
		v.add("items", "at most %d items per request", MaxItems)
	}
}

func (v *validator) ingredient(i int, name string, seen map[string]int) {
	field := fmt.Sprintf("items[%d].ingredient", i)
	switch {
	case name == "":
		v.add(field, "is required")
	case len(name) > MaxIngredient:
		v.add(field, "is longer than %d characters", MaxIngredient)
	default:
		if j, dup := seen[name]; dup {
			v.add(field, "%q is already listed in items[%d]", name, j)
			return
		}
		seen[name] = i
	}
}

func (v *validator) reason(reason string) {
	if strings.TrimSpace(reason) == "" {
		v.add("reason", "is required for an adjustment")
		return
	}
	v.length("reason", reason, MaxReasonLength)
}

func (v *validator) length(field, s string, max int) {
	if len(s) > max {
		v.add(field, "is longer than %d characters", max)
	}
}
