package kitchenapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/awesome-pizza/pizza/pkg/problem"
)

// The kitchen service's errors are the platform's problem documents.
type (
	Problem    = problem.Problem
	FieldError = problem.FieldError
)

// Problem types, re-exported for the kitchen contract.
const (
	TypeMalformedRequest = problem.TypeMalformedRequest
	TypeValidation       = problem.TypeValidation
	TypeNotFound         = problem.TypeNotFound
	TypeConflict         = problem.TypeConflict
	TypeConcurrentUpdate = problem.TypeConcurrentUpdate
	TypeUnavailable      = problem.TypeUnavailable
	TypeInternal         = problem.TypeInternal
)

// Chef states reported as CurrentStatus of a 409 on SubjectChefBreak.
const (
	ChefWorking = "Working"
	ChefOnBreak = "OnBreak"
)

// MaxRequestBody bounds the body of the chef-break route.
const MaxRequestBody = 1 << 10

// DecodeChefBreakRequest decodes a chef-break body strictly (one JSON
// object, no unknown fields, onBreak required) and returns a 400 or 422
// *Problem naming the field on failure.
func DecodeChefBreakRequest(body []byte) (ChefBreakRequest, error) {
	var req ChefBreakRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return ChefBreakRequest{}, decodeProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ChefBreakRequest{}, problem.Malformed("", "the body must hold exactly one JSON object")
	}
	if req.OnBreak == nil {
		return ChefBreakRequest{}, problem.Validation(FieldError{Field: "onBreak", Detail: "is required (true or false)"})
	}
	return req, nil
}

func decodeProblem(err error) *Problem {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return problem.Malformed("", "the body is empty")
	case errors.As(err, &syn):
		return problem.Malformed("", fmt.Sprintf("invalid JSON at byte %d: %v", syn.Offset, syn))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(root)"
		}
		return problem.Malformed(field, fmt.Sprintf("expected %s, got JSON %s", typ.Type, typ.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return problem.Malformed(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
	default:
		return problem.Malformed("", err.Error())
	}
}
