package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/google/uuid"
)

// Event is a typed domain event. Type is the stable past-tense name
// ("order_placed") and Version its schema version; together they form the
// catalogue name "order_placed.v1".
type Event interface {
	EventType() string
	EventVersion() int
}

// Name returns the catalogue name of an event type and version.
func Name(typ string, version int) string { return typ + ".v" + strconv.Itoa(version) }

// Envelope is the stored form of one event: metadata plus the JSON payload.
// It is the body of the JetStream message.
type Envelope struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	Version       int             `json:"version"`
	AggregateID   string          `json:"aggregateId"`
	OccurredAt    time.Time       `json:"occurredAt"`
	CorrelationID string          `json:"correlationId,omitempty"`
	CausationID   string          `json:"causationId,omitempty"`
	TraceParent   string          `json:"traceparent,omitempty"`
	Data          json.RawMessage `json:"data"`
}

// Meta carries the causal metadata of the command that produced events.
type Meta struct {
	CorrelationID string
	CausationID   string
	TraceParent   string
}

// NewEnvelope wraps a typed event for storage.
func NewEnvelope(aggregateID string, e Event, at time.Time, meta Meta) (Envelope, error) {
	data, err := codec.Marshal(e)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s: %w", Name(e.EventType(), e.EventVersion()), err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Envelope{}, fmt.Errorf("event id: %w", err)
	}
	return Envelope{
		ID:            id.String(),
		Type:          e.EventType(),
		Version:       e.EventVersion(),
		AggregateID:   aggregateID,
		OccurredAt:    at.UTC(),
		CorrelationID: meta.CorrelationID,
		CausationID:   meta.CausationID,
		TraceParent:   meta.TraceParent,
		Data:          data,
	}, nil
}

// Marshal encodes the envelope as stored bytes.
func (e Envelope) Marshal() ([]byte, error) { return codec.Marshal(e) }

// UnmarshalEnvelope decodes stored bytes. It checks the fields every
// envelope must have; the payload is decoded later by a Registry.
func UnmarshalEnvelope(b []byte) (Envelope, error) {
	var env Envelope
	if err := codec.Unmarshal(b, &env); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformedEnvelope, err)
	}
	switch {
	case env.Type == "":
		return Envelope{}, fmt.Errorf("%w: missing type", ErrMalformedEnvelope)
	case env.Version < 1:
		return Envelope{}, fmt.Errorf("%w: version %d", ErrMalformedEnvelope, env.Version)
	case env.AggregateID == "":
		return Envelope{}, fmt.Errorf("%w: missing aggregateId", ErrMalformedEnvelope)
	case len(env.Data) == 0:
		return Envelope{}, fmt.Errorf("%w: missing data", ErrMalformedEnvelope)
	}
	return env, nil
}

// ErrMalformedEnvelope reports stored bytes that are not an envelope.
var ErrMalformedEnvelope = errors.New("malformed event envelope")

// ErrUnknownType reports an event type the registry does not know.
var ErrUnknownType = errors.New("unknown event type")

// UnknownVersionError reports an event whose schema version is newer than
// any this build can read. Consumers must surface it (dead-letter, alert),
// never drop the event silently: it usually means a newer producer is
// deployed ahead of this consumer.
type UnknownVersionError struct {
	Type    string
	Version int
	Latest  int
}

func (e *UnknownVersionError) Error() string {
	return fmt.Sprintf("event %s: schema version %d is newer than the latest known v%d", e.Type, e.Version, e.Latest)
}
