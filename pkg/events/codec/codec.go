// Package codec decodes and encodes the JSON the platform writes for
// itself: event payloads in the log, command and reply messages between
// the services, read-model documents and their notifications.
//
// It is encoding/json's behaviour (the same struct tags, case-insensitive
// field names, json.RawMessage, Marshaler and Unmarshaler, the same
// escaping) with a faster implementation: github.com/segmentio/encoding,
// which is tested against the standard library's behaviour. Decoding JSON
// was a fifth of the platform's CPU at full intake (BENCHMARKS.md, ADR
// 0024). Input from outside (HTTP bodies, MQTT payloads) keeps
// encoding/json and its error messages, which clients see.
package codec

import (
	"encoding/json"

	segjson "github.com/segmentio/encoding/json"
)

// Unmarshal decodes data into v as encoding/json.Unmarshal does.
//
// The fast decoder is given only valid JSON: it does not check everything
// it skips or hands to a field's own parser (it took an invalid escape in
// a time's string). And what it refuses is decoded again by
// encoding/json, whose answer stands: the two differ at the edges
// (encoding/json accepts a comma before the fraction of a time's seconds,
// for one), and a document the platform stored must never become
// unreadable by a change of codec. Only refused input pays twice.
func Unmarshal(data []byte, v any) error {
	if segjson.Valid(data) && segjson.Unmarshal(data, v) == nil {
		return nil
	}
	return json.Unmarshal(data, v)
}

// Marshal encodes v as encoding/json.Marshal does.
func Marshal(v any) ([]byte, error) { return segjson.Marshal(v) }

// Valid reports whether data is valid JSON, as encoding/json.Valid does.
func Valid(data []byte) bool { return segjson.Valid(data) }
