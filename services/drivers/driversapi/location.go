package driversapi

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A position fix is telemetry, not a decision of the drivers service: it
// is checked against fixed rules and appended to TELEMETRY. Two writers
// append fixes — the drivers service (svc.drivers.location, the HTTP
// route) and the MQTT bridge (drivers' phones) — and both build the
// message with NewLocationFix, so a fix is validated, shaped and
// deduplicated the same way whichever door it came in by. Only drivers the
// platform knows may report one; each writer checks that itself.

// InvalidLocationError lists every field of a location command that
// breaks the rules of ValidateLocation.
type InvalidLocationError struct {
	Fields []FieldError
}

func (e *InvalidLocationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Detail
	}
	return "invalid location: " + strings.Join(parts, "; ")
}

// ValidateLocation checks a location command: a driver id, both
// coordinates, the ranges of the optional values, a timestamp within
// MaxFixAge before and MaxFixAhead after now, and the idempotency key's
// length. It reports every problem at once; nil means valid.
func ValidateLocation(cmd LocationCommand, now time.Time) []FieldError {
	var errs []FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	if cmd.DriverID == "" {
		add("driverId", "is required")
	}
	inRange := func(field string, v *float64, lo, hi float64, required bool, unit string) {
		switch {
		case v == nil:
			if required {
				add(field, "is required")
			}
		case math.IsNaN(*v) || math.IsInf(*v, 0) || *v < lo || *v > hi:
			add(field, "must be between %g and %g%s", lo, hi, unit)
		}
	}
	inRange("latitude", cmd.Latitude, -90, 90, true, "")
	inRange("longitude", cmd.Longitude, -180, 180, true, "")
	inRange("speedKmh", cmd.SpeedKmh, 0, 300, false, " km/h")
	inRange("accuracyM", cmd.AccuracyM, 0, 100_000, false, " m")
	if h := cmd.Heading; h != nil && (math.IsNaN(*h) || *h < 0 || *h >= 360) {
		add("heading", "must be at least 0 and less than 360 degrees")
	}
	if ts := cmd.Timestamp; ts != nil {
		switch {
		case ts.Before(now.Add(-MaxFixAge)):
			add("timestamp", "is more than %s in the past", MaxFixAge)
		case ts.After(now.Add(MaxFixAhead)):
			add("timestamp", "is more than %s in the future", MaxFixAhead)
		}
	}
	return append(errs, ValidateIdempotencyKey(cmd.IdempotencyKey)...)
}

// ValidateIdempotencyKey checks the length of a command's idempotency key.
func ValidateIdempotencyKey(key string) []FieldError {
	if len(key) > MaxIdempotencyKey {
		return []FieldError{{Field: "Idempotency-Key", Detail: fmt.Sprintf("is longer than %d characters", MaxIdempotencyKey)}}
	}
	return nil
}

// CommandID is the id of a driver's command of the given kind: derived
// from the idempotency key, so that a retry carries the same id (and the
// same Nats-Msg-Id), or unique when there is no key.
func CommandID(kind, driverID, idempotencyKey string) string {
	if idempotencyKey == "" {
		return kind + ":" + driverID + ":" + uuid.NewString()
	}
	sum := sha256.Sum256([]byte(idempotencyKey))
	return kind + ":" + driverID + ":" + hex.EncodeToString(sum[:12])
}

// LocationFix is a validated position fix and the TELEMETRY message that
// stores it.
type LocationFix struct {
	DriverID  string
	CommandID string
	Event     events.DriverLocationReported
	// Msg goes to events.DriverLocationSubject(DriverID): the envelope as
	// body, the platform's event headers, and the command id as
	// Nats-Msg-Id, so that a fix sent again within the stream's duplicate
	// window is stored once.
	Msg *nats.Msg
}

// NewLocationFix validates cmd (ValidateLocation; failures are an
// *InvalidLocationError) and builds its message. The fix is recorded at
// cmd.Timestamp, or at now when the device sent none.
func NewLocationFix(cmd LocationCommand, now time.Time) (LocationFix, error) {
	if errs := ValidateLocation(cmd, now); len(errs) > 0 {
		return LocationFix{}, &InvalidLocationError{Fields: errs}
	}
	at := now
	if cmd.Timestamp != nil {
		at = *cmd.Timestamp
	}
	ev := events.DriverLocationReported{Latitude: *cmd.Latitude, Longitude: *cmd.Longitude, SpeedKmh: cmd.SpeedKmh, Heading: cmd.Heading,
		AccuracyM: cmd.AccuracyM, RecordedAt: at.UTC()}
	commandID := CommandID("location", cmd.DriverID, cmd.IdempotencyKey)
	correlation := cmd.CorrelationID
	if correlation == "" {
		correlation = cmd.DriverID
	}
	env, err := events.NewEnvelope(cmd.DriverID, ev, now, events.Meta{CorrelationID: correlation, CausationID: commandID, TraceParent: cmd.TraceParent})
	if err != nil {
		return LocationFix{}, err
	}
	m, err := TelemetryMsg(events.DriverLocationSubject(cmd.DriverID), env, commandID)
	if err != nil {
		return LocationFix{}, err
	}
	return LocationFix{DriverID: cmd.DriverID, CommandID: commandID, Event: ev, Msg: m}, nil
}

// TelemetryMsg is the TELEMETRY message of an envelope: the envelope as
// body, the platform's event headers, and the command id as Nats-Msg-Id
// (JetStream stores a command's telemetry once within the duplicate
// window). Every telemetry writer (fixes, and the bridge's oven readings
// and kitchen alerts) builds its messages with it.
func TelemetryMsg(subject string, env events.Envelope, commandID string) (*nats.Msg, error) {
	body, err := env.Marshal()
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(events.HeaderType, env.Type)
	m.Header.Set(events.HeaderVersion, strconv.Itoa(env.Version))
	m.Header.Set(events.HeaderCommandID, commandID)
	m.Header.Set(events.HeaderCorrelation, env.CorrelationID)
	m.Header.Set(jetstream.MsgIDHeader, commandID)
	return m, nil
}
