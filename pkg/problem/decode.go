package problem

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// DecodeStrict decodes a JSON request body into dst: exactly one JSON
// value, no unknown fields, the right types. Failures are 400 problems
// that name the offending field.
func DecodeStrict(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Malformed("", "the body must hold exactly one JSON object")
	}
	return nil
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
