package ordersapi

import "github.com/awesome-pizza/pizza/pkg/problem"

// The orders service's errors are the platform's problem documents.
type (
	Problem    = problem.Problem
	FieldError = problem.FieldError
)

// Problem types, re-exported for the orders contract.
const (
	ProblemBase              = problem.ProblemBase
	TypeMalformedRequest     = problem.TypeMalformedRequest
	TypeValidation           = problem.TypeValidation
	TypeNotFound             = problem.TypeNotFound
	TypeInvalidTransition    = problem.TypeInvalidTransition
	TypeConcurrentUpdate     = problem.TypeConcurrentUpdate
	TypeIdempotencyKeyReused = problem.TypeIdempotencyKeyReused
	TypeUnavailable          = problem.TypeUnavailable
	TypeBodyTooLarge         = problem.TypeBodyTooLarge
	TypeUnsupportedMediaType = problem.TypeUnsupportedMediaType
	TypeInternal             = problem.TypeInternal
)

// Validation returns a 422 problem listing field errors.
func Validation(errs ...FieldError) *Problem { return problem.Validation(errs...) }

// Malformed returns a 400 problem for a body that cannot be decoded.
func Malformed(field, detail string) *Problem { return problem.Malformed(field, detail) }
