package device

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
)

// FieldError names what is wrong with one field of a payload.
type FieldError struct {
	Field  string
	Detail string
}

// InvalidPayloadError reports a payload that cannot be accepted: not one
// JSON object, wrong types, or values out of range. Resending it cannot
// help.
type InvalidPayloadError struct {
	Fields []FieldError
}

func (e *InvalidPayloadError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		if f.Field == "" {
			parts[i] = f.Detail
		} else {
			parts[i] = f.Field + ": " + f.Detail
		}
	}
	return "invalid payload: " + strings.Join(parts, "; ")
}

func invalid(field, format string, args ...any) *InvalidPayloadError {
	return &InvalidPayloadError{Fields: []FieldError{{Field: field, Detail: fmt.Sprintf(format, args...)}}}
}

// Limits of device payloads and timestamps.
const (
	MaxAlertLength   = 100
	MaxDetailsBytes  = 2048
	MaxOvenIDLength  = 64
	DefaultOvenID    = "main"
	maxEventDetails  = 500
	MaxTimestampAge  = driversapi.MaxFixAge
	MaxTimestampLead = driversapi.MaxFixAhead
)

// decode reads exactly one JSON object into v. Unknown fields are ignored
// so that newer firmware keeps working; anything else wrong is an
// InvalidPayloadError naming the field.
func decode(payload []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return invalid("", "the payload is empty")
		case errors.As(err, &syn):
			return invalid("", "not JSON: %v at byte %d", syn, syn.Offset)
		case errors.As(err, &typ):
			field := typ.Field
			if field == "" {
				return invalid("", "expected a JSON object, got JSON %s", typ.Value)
			}
			return invalid(field, "expected %s, got JSON %s", typ.Type, typ.Value)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return invalid("", "the JSON ends too early")
		default:
			return invalid("", "%v", err)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("", "the payload must hold exactly one JSON object")
	}
	return nil
}

type checker struct{ errs []FieldError }

func (c *checker) add(field, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
}

func (c *checker) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	return &InvalidPayloadError{Fields: c.errs}
}

func (c *checker) inRange(field string, v *float64, lo, hi float64, unit string) {
	if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0) || *v < lo || *v > hi) {
		c.add(field, "must be between %g and %g%s", lo, hi, unit)
	}
}

func (c *checker) timestamp(ts *time.Time, now time.Time) {
	switch {
	case ts == nil:
	case ts.Before(now.Add(-MaxTimestampAge)):
		c.add("timestamp", "is more than %s in the past", MaxTimestampAge)
	case ts.After(now.Add(MaxTimestampLead)):
		c.add("timestamp", "is more than %s in the future", MaxTimestampLead)
	}
}

func (c *checker) oneOf(field, v string, allowed []string) {
	if !slices.Contains(allowed, v) {
		c.add(field, "must be one of %s", strings.Join(allowed, ", "))
	}
}

// DecodeLocation decodes a location payload of driverID into the drivers
// service's command. Speed, heading and accuracy keep the drivers
// service's units (km/h, degrees, metres). The values are checked with
// the drivers service's own rules (driversapi.ValidateLocation); errors
// name the payload's fields.
func DecodeLocation(driverID string, payload []byte, now time.Time) (driversapi.LocationCommand, error) {
	var p mqttapi.LocationPayload
	if err := decode(payload, &p); err != nil {
		return driversapi.LocationCommand{}, err
	}
	var c checker
	// unpicked names the coordinates already reported here: the drivers
	// rules would only repeat that they are missing.
	unpicked := map[string]bool{}
	pick := func(long, short *float64, longName, shortName string) *float64 {
		switch {
		case long == nil && short == nil:
			c.add(longName, "is required (or %s)", shortName)
		case long != nil && short != nil && *long != *short:
			c.add(shortName, "contradicts %s", longName)
		case long != nil:
			return long
		default:
			return short
		}
		unpicked[longName] = true
		return nil
	}
	cmd := driversapi.LocationCommand{DriverID: driverID, Latitude: pick(p.Latitude, p.Lat, "latitude", "lat"), Longitude: pick(p.Longitude, p.Lon, "longitude", "lon"),
		SpeedKmh: p.Speed, Heading: p.Heading, AccuracyM: p.Accuracy, Timestamp: p.Timestamp}
	for _, f := range driversapi.ValidateLocation(cmd, now) {
		if !unpicked[f.Field] {
			c.errs = append(c.errs, FieldError{Field: payloadField(f.Field), Detail: f.Detail})
		}
	}
	if err := c.err(); err != nil {
		return driversapi.LocationCommand{}, err
	}
	return cmd, nil
}

// payloadField names a field of the location command as the payload
// does.
func payloadField(commandField string) string {
	switch commandField {
	case "speedKmh":
		return "speed"
	case "accuracyM":
		return "accuracy"
	}
	return commandField
}

// DecodeStatus decodes a status payload.
func DecodeStatus(payload []byte) (string, error) {
	var p mqttapi.StatusPayload
	if err := decode(payload, &p); err != nil {
		return "", err
	}
	var c checker
	if p.Status == "" {
		c.add("status", "is required")
	} else {
		c.oneOf("status", p.Status, mqttapi.Statuses)
	}
	return p.Status, c.err()
}

// DecodeOven decodes an oven reading of kitchenID.
func DecodeOven(kitchenID string, payload []byte, now time.Time) (mqttapi.OvenReadingReported, error) {
	var p mqttapi.OvenPayload
	if err := decode(payload, &p); err != nil {
		return mqttapi.OvenReadingReported{}, err
	}
	var c checker
	if p.Temperature == nil {
		c.add("temperature", "is required")
	}
	c.inRange("temperature", p.Temperature, -40, 700, " °C")
	c.inRange("timer", p.Timer, 0, 86_400, " s")
	if p.Status != "" {
		c.oneOf("status", p.Status, mqttapi.OvenStatuses)
	}
	if p.OvenID == "" {
		p.OvenID = DefaultOvenID
	} else if len(p.OvenID) > MaxOvenIDLength || !utf8.ValidString(p.OvenID) {
		c.add("ovenId", "must be at most %d characters of UTF-8", MaxOvenIDLength)
	}
	c.timestamp(p.Timestamp, now)
	if err := c.err(); err != nil {
		return mqttapi.OvenReadingReported{}, err
	}
	return mqttapi.OvenReadingReported{KitchenID: kitchenID, OvenID: p.OvenID, TemperatureC: *p.Temperature, TimerSeconds: p.Timer, Status: p.Status, RecordedAt: orNow(p.Timestamp, now)}, nil
}

// DecodeAlert decodes a kitchen alert of kitchenID.
func DecodeAlert(kitchenID string, payload []byte, now time.Time) (mqttapi.KitchenAlertRaised, error) {
	var p mqttapi.AlertPayload
	if err := decode(payload, &p); err != nil {
		return mqttapi.KitchenAlertRaised{}, err
	}
	var c checker
	alert := strings.TrimSpace(p.Alert)
	switch {
	case alert == "":
		c.add("alert", "is required")
	case utf8.RuneCountInString(alert) > MaxAlertLength:
		c.add("alert", "must be at most %d characters", MaxAlertLength)
	}
	if p.Severity == "" {
		c.add("severity", "is required")
	} else {
		c.oneOf("severity", p.Severity, mqttapi.Severities)
	}
	if len(p.Details) > MaxDetailsBytes {
		c.add("details", "must be at most %d bytes of JSON", MaxDetailsBytes)
	}
	c.timestamp(p.Timestamp, now)
	if err := c.err(); err != nil {
		return mqttapi.KitchenAlertRaised{}, err
	}
	var details json.RawMessage
	if len(p.Details) > 0 && string(p.Details) != "null" {
		var buf bytes.Buffer
		if err := json.Compact(&buf, p.Details); err == nil {
			details = buf.Bytes()
		}
	}
	return mqttapi.KitchenAlertRaised{KitchenID: kitchenID, Alert: alert, Severity: p.Severity, Details: details, RaisedAt: orNow(p.Timestamp, now)}, nil
}

// DecodeOrderEvent decodes an event a driver reports about an order.
func DecodeOrderEvent(payload []byte, now time.Time) (mqttapi.OrderEventPayload, error) {
	var p mqttapi.OrderEventPayload
	if err := decode(payload, &p); err != nil {
		return p, err
	}
	var c checker
	if p.Event == "" {
		c.add("event", "is required")
	} else {
		c.oneOf("event", p.Event, mqttapi.OrderEventKinds)
	}
	if utf8.RuneCountInString(p.Details) > maxEventDetails {
		c.add("details", "must be at most %d characters", maxEventDetails)
	}
	c.timestamp(p.Timestamp, now)
	return p, c.err()
}

func orNow(ts *time.Time, now time.Time) time.Time {
	if ts != nil {
		return ts.UTC()
	}
	return now.UTC()
}
