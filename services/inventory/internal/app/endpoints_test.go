package app

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/services/inventory/internal/domain"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
)

func TestToProblem(t *testing.T) {
	cases := []struct {
		err    error
		status int
		typ    string
		field  string
	}{
		{&domain.ValidationError{Fields: []domain.FieldError{{Field: "items[0].quantity", Detail: "must be at least 1"}}}, 422, problem.TypeValidation, "items[0].quantity"},
		{inventoryapi.Validation(inventoryapi.FieldError{Field: "reason", Detail: "is required"}), 422, problem.TypeValidation, "reason"},
		{&domain.BelowReservedError{Ingredient: "dough", OnHand: 1, Reserved: 3}, 409, problem.TypeConflict, ""},
		{fmt.Errorf("adjust: %w", ErrUnknownRestaurant), 404, problem.TypeNotFound, ""},
		{ErrConcurrentUpdate, 409, problem.TypeConcurrentUpdate, ""},
		{fmt.Errorf("append: %w", eventstore.ErrUnavailable), 503, problem.TypeUnavailable, ""},
		{context.DeadlineExceeded, 503, problem.TypeUnavailable, ""},
		{errors.New("boom"), 500, problem.TypeInternal, ""},
	}
	for _, tc := range cases {
		t.Run(tc.err.Error(), func(t *testing.T) {
			p := ToProblem(tc.err)
			if p.Status != tc.status || p.Type != tc.typ || p.Title == "" {
				t.Fatalf("%+v, want status %d type %s", p, tc.status, tc.typ)
			}
			if tc.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tc.field) {
				t.Fatalf("fields %+v, want %s", p.Errors, tc.field)
			}
		})
	}
}
