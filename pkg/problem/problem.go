// Package problem is the error contract of every Awesome Pizza service: an
// RFC 9457 problem document. Services send it as the data of typed micro
// error replies (the error code is the HTTP status); the gateway passes it
// to clients as application/problem+json.
package problem

import (
	"fmt"
	"strings"
)

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type          string       `json:"type"`
	Title         string       `json:"title"`
	Status        int          `json:"status"`
	Detail        string       `json:"detail,omitempty"`
	Instance      string       `json:"instance,omitempty"`
	Errors        []FieldError `json:"errors,omitempty"`
	CurrentStatus string       `json:"currentStatus,omitempty"`
}

// FieldError names the offending field of a request, JSON-path style
// ("items[0].quantity").
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

func (p *Problem) Error() string {
	if len(p.Errors) > 0 {
		parts := make([]string, len(p.Errors))
		for i, e := range p.Errors {
			parts[i] = e.Field + ": " + e.Detail
		}
		return fmt.Sprintf("%s: %s", p.Title, strings.Join(parts, "; "))
	}
	if p.Detail != "" {
		return p.Title + ": " + p.Detail
	}
	return p.Title
}

// Stable problem types. Clients match on these, not on titles.
const (
	ProblemBase              = "https://awesome-pizza.dev/problems/"
	TypeMalformedRequest     = ProblemBase + "malformed-request"
	TypeValidation           = ProblemBase + "validation-failed"
	TypeNotFound             = ProblemBase + "not-found"
	TypeInvalidTransition    = ProblemBase + "invalid-transition"
	TypeConcurrentUpdate     = ProblemBase + "concurrent-update"
	TypeIdempotencyKeyReused = ProblemBase + "idempotency-key-reused"
	TypeUnavailable          = ProblemBase + "service-unavailable"
	TypeBodyTooLarge         = ProblemBase + "body-too-large"
	TypeUnsupportedMediaType = ProblemBase + "unsupported-media-type"
	TypeInternal             = ProblemBase + "internal-error"
	TypeRateLimited          = ProblemBase + "rate-limited"
	TypeMethodNotAllowed     = ProblemBase + "method-not-allowed"
	TypeConflict             = ProblemBase + "conflict"
)

// NotFound returns a 404 problem for a kind of resource ("Order").
func NotFound(what string) *Problem {
	return &Problem{Type: TypeNotFound, Title: what + " not found", Status: 404}
}

// Conflict returns a 409 problem.
func Conflict(detail string) *Problem {
	return &Problem{Type: TypeConflict, Title: "The request conflicts with the current state", Status: 409, Detail: detail}
}

// Validation returns a 422 problem listing field errors.
func Validation(errs ...FieldError) *Problem {
	return &Problem{Type: TypeValidation, Title: "The request is not valid", Status: 422, Errors: errs}
}

// Malformed returns a 400 problem for a body that cannot be decoded.
func Malformed(field, detail string) *Problem {
	p := &Problem{Type: TypeMalformedRequest, Title: "The request body is malformed", Status: 400, Detail: detail}
	if field != "" {
		p.Errors = []FieldError{{Field: field, Detail: detail}}
	}
	return p
}
