package eventstore

import (
	"encoding/json"
	"strconv"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/events/codec"
)

// Decoding a stored message with events.UnmarshalEnvelope goes over the
// payload three times before the registry decodes it (a validity scan of
// the whole envelope, the decoding pass that skips over the payload, and a
// copy of it). decodeEnvelope reads the envelopes this platform writes in
// one pass and leaves the payload in place; the registry's decoding of the
// payload is its only full pass, and the one that validates it.
//
// It accepts only a strict subset of JSON: an object of the envelope's
// known fields, each at most once, with exact field names; string fields
// of printable ASCII without escapes; a version of plain decimal digits;
// and an object as payload. For anything else it reports false and the
// caller decodes with events.UnmarshalEnvelope, which has the last word on
// what an envelope is and how a bad one is reported. The stored bytes and
// their format are unchanged.

// Bits of the envelope fields seen, to refuse a repeated field.
const (
	fieldID = 1 << iota
	fieldType
	fieldVersion
	fieldAggregateID
	fieldOccurredAt
	fieldCorrelationID
	fieldCausationID
	fieldTraceParent
	fieldData
)

// decodeEnvelope decodes b as events.UnmarshalEnvelope would, when b is in
// the subset described above and passes the envelope's checks; Data then
// refers to b. The payload is not validated here: see decodeRecord.
func decodeEnvelope(b []byte) (events.Envelope, bool) {
	var env events.Envelope
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return env, false
	}
	seen := 0
	for {
		i = skipSpace(b, i+1)
		name, next, ok := plainString(b, i)
		if !ok {
			return env, false
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return env, false
		}
		i = skipSpace(b, i+1)
		var field int
		switch string(name) { // no allocation: compared, not kept
		case "id":
			field = fieldID
			env.ID, i, ok = stringField(b, i)
		case "type":
			field = fieldType
			env.Type, i, ok = stringField(b, i)
		case "aggregateId":
			field = fieldAggregateID
			env.AggregateID, i, ok = stringField(b, i)
		case "correlationId":
			field = fieldCorrelationID
			env.CorrelationID, i, ok = stringField(b, i)
		case "causationId":
			field = fieldCausationID
			env.CausationID, i, ok = stringField(b, i)
		case "traceparent":
			field = fieldTraceParent
			env.TraceParent, i, ok = stringField(b, i)
		case "version":
			field = fieldVersion
			env.Version, i, ok = smallInt(b, i)
		case "occurredAt":
			field = fieldOccurredAt
			var s []byte
			s, i, ok = plainString(b, i)
			// The same parser encoding/json calls, on the same quoted text.
			ok = ok && env.OccurredAt.UnmarshalJSON(b[i-len(s)-2:i]) == nil
		case "data":
			field = fieldData
			start := i
			i, ok = skipObject(b, i)
			env.Data = json.RawMessage(b[start:i:i])
		default:
			return env, false
		}
		if !ok || seen&field != 0 {
			return env, false
		}
		seen |= field
		i = skipSpace(b, i)
		if i >= len(b) {
			return env, false
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return env, false
		}
	}
	if skipSpace(b, i+1) != len(b) {
		return env, false
	}
	// The checks of events.UnmarshalEnvelope; it reports the failures.
	if env.Type == "" || env.Version < 1 || env.AggregateID == "" || len(env.Data) == 0 {
		return env, false
	}
	return env, true
}

// decodeRecord decodes the envelope in data and its event. It returns
// false when the caller must take the general path instead: the envelope
// is outside the subset decodeEnvelope reads, or decoding failed (the
// general path then reports the failure exactly as it always has).
func decodeRecord(reg *events.Registry, data []byte) (events.Envelope, events.Event, bool) {
	env, ok := decodeEnvelope(data)
	if !ok {
		return env, nil, false
	}
	ev, err := reg.Decode(env)
	if err != nil {
		return env, nil, false
	}
	// Without an upcast, the registry decoded the payload itself with
	// encoding/json, which validated it. An upcast payload was rewritten
	// first: check the stored one, as the envelope's decoding would have.
	if ev.EventVersion() != env.Version && !codec.Valid(env.Data) {
		return env, nil, false
	}
	return env, ev, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// plainString reads the JSON string starting at b[i] when it holds only
// printable ASCII and no escapes. It returns the contents and the index
// after the closing quote.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, i, false
		}
	}
	return nil, i, false
}

func stringField(b []byte, i int) (string, int, bool) {
	s, next, ok := plainString(b, i)
	return string(s), next, ok
}

// smallInt reads a non-negative integer of at most 9 digits without a
// sign, fraction or exponent.
func smallInt(b []byte, i int) (int, int, bool) {
	j := i
	for j < len(b) && j-i < 10 && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	n := j - i
	if n == 0 || n > 9 || (n > 1 && b[i] == '0') {
		return 0, i, false
	}
	if j < len(b) {
		switch b[j] {
		case '.', 'e', 'E':
			return 0, i, false
		}
	}
	v, err := strconv.Atoi(string(b[i:j]))
	if err != nil {
		return 0, i, false
	}
	return v, j, true
}

// skipObject returns the index after the JSON object starting at b[i]. It
// follows strings and nesting only: whether the object is valid JSON is
// for the payload's decoding to establish.
func skipObject(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return i, false
	}
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			for j++; j < len(b) && b[j] != '"'; j++ {
				if b[j] == '\\' {
					j++
				}
			}
			if j >= len(b) {
				return i, false
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1, true
			}
		}
	}
	return i, false
}
