package driversapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/awesome-pizza/pizza/pkg/problem"
)

// HTTP request bodies. The gateway decodes them strictly (Decode) and
// adds the ids from the path to build the command.

// RegisterDriverRequest is the body of POST /api/drivers.
type RegisterDriverRequest struct {
	DriverID     string `json:"driverId,omitempty"` // optional: generated when empty
	Name         string `json:"name"`
	RestaurantID string `json:"restaurantId"`
	Vehicle      string `json:"vehicle"` // scooter, car or bike
}

// StatusRequest is the body of PUT /api/drivers/{id}/status.
type StatusRequest struct {
	Status string `json:"status"` // Offline, Available, OnBreak or EndOfShift
}

// LocationRequest is the body of POST /api/drivers/{id}/location (the HTTP
// fallback of the MQTT location topic). Latitude and longitude are required.
type LocationRequest struct {
	Latitude  *float64   `json:"latitude"`
	Longitude *float64   `json:"longitude"`
	SpeedKmh  *float64   `json:"speedKmh,omitempty"`
	Heading   *float64   `json:"heading,omitempty"`
	AccuracyM *float64   `json:"accuracyM,omitempty"`
	Timestamp *time.Time `json:"timestamp,omitempty"` // RFC 3339; default: when received
}

// OrderRequest is the body of POST /api/drivers/{id}/pickup and
// POST /api/drivers/{id}/deliver.
type OrderRequest struct {
	OrderID string `json:"orderId"`
}

// AssignDriverRequest is the body of POST /api/orders/{id}/assign-driver.
type AssignDriverRequest struct {
	DriverID string `json:"driverId"`
}

// Commands, as sent to the command subjects. Every command may carry an
// idempotency key: a retry with the same key is answered with the state
// the first attempt left (Replayed set) instead of being decided again.

// CommandMeta is carried by every command.
type CommandMeta struct {
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	CorrelationID  string `json:"correlationId,omitempty"`
	TraceParent    string `json:"traceparent,omitempty"`
}

// RegisterCommand registers a driver (SubjectRegister).
type RegisterCommand struct {
	DriverID     string `json:"driverId,omitempty"`
	Name         string `json:"name"`
	RestaurantID string `json:"restaurantId"`
	Vehicle      string `json:"vehicle"`
	CommandMeta
}

// StatusCommand sets a driver's status (SubjectStatus).
type StatusCommand struct {
	DriverID string `json:"driverId"`
	Status   string `json:"status"`
	CommandMeta
}

// LocationCommand reports a driver's position (SubjectLocation).
type LocationCommand struct {
	DriverID  string     `json:"driverId"`
	Latitude  *float64   `json:"latitude"`
	Longitude *float64   `json:"longitude"`
	SpeedKmh  *float64   `json:"speedKmh,omitempty"`
	Heading   *float64   `json:"heading,omitempty"`
	AccuracyM *float64   `json:"accuracyM,omitempty"`
	Timestamp *time.Time `json:"timestamp,omitempty"`
	CommandMeta
}

// PickupCommand confirms that a driver collected an order (SubjectPickup).
type PickupCommand struct {
	DriverID string `json:"driverId"`
	OrderID  string `json:"orderId"`
	CommandMeta
}

// DeliverCommand confirms the hand-over of an order (SubjectDeliver).
type DeliverCommand struct {
	DriverID string `json:"driverId"`
	OrderID  string `json:"orderId"`
	CommandMeta
}

// AssignCommand is a manager's manual assignment (SubjectAssign).
type AssignCommand struct {
	OrderID  string `json:"orderId"`
	DriverID string `json:"driverId"`
	By       string `json:"by,omitempty"` // who assigned (the manager)
	CommandMeta
}

// CommandReply answers register, status, pickup, deliver and assign: the
// driver as the command left it (after any assignment it triggered), and
// the stream sequence of its last event. Wait for CheckpointKey(keyspace,
// ReadModel) to reach Seq to read your own write from Redis.
type CommandReply struct {
	Driver    DriverView `json:"driver"`
	Seq       uint64     `json:"seq"`
	ReadModel string     `json:"readModel"`
	Replayed  bool       `json:"replayed,omitempty"`
}

// LocationReply answers a location report: the stored fix and its
// TELEMETRY sequence (wait for CheckpointKey(keyspace, PositionsModel)).
type LocationReply struct {
	Position  PositionView `json:"position"`
	Seq       uint64       `json:"seq"`
	ReadModel string       `json:"readModel"`
	Replayed  bool         `json:"replayed,omitempty"`
}

// Limits of command fields.
const (
	MaxNameLength     = 100
	MaxByLength       = 100
	MaxIdempotencyKey = 200
	// MaxFixAge and MaxFixAhead bound a location's timestamp around the
	// time it is received.
	MaxFixAge   = 24 * time.Hour
	MaxFixAhead = 5 * time.Minute
)

// The drivers service's errors are the platform's problem documents.
type (
	Problem    = problem.Problem
	FieldError = problem.FieldError
)

// Decode decodes a request body strictly into T: one JSON object, no
// unknown fields, the right types. On failure it returns a 400 *Problem
// naming the field. Values are checked by the service (422).
func Decode[T any](body []byte) (T, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, decodeProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return v, problem.Malformed("", "the body must hold exactly one JSON object")
	}
	return v, nil
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
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem.Malformed("", "the JSON body ends too early")
	default:
		return problem.Malformed("", err.Error())
	}
}
