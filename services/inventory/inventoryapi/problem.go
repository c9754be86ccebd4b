package inventoryapi

import "github.com/awesome-pizza/pizza/pkg/problem"

// The inventory service's errors are the platform's problem documents.
type (
	Problem    = problem.Problem
	FieldError = problem.FieldError
)

// Validation returns a 422 problem listing field errors.
func Validation(errs ...FieldError) *Problem { return problem.Validation(errs...) }

// Malformed returns a 400 problem for a body that cannot be decoded.
func Malformed(field, detail string) *Problem { return problem.Malformed(field, detail) }
