package events

import (
	"fmt"
	"strings"
)

// Header names carried by every stored event. The envelope repeats type and
// version so that a message body is self-describing, while the headers let
// consumers route and filter without decoding the body.
const (
	HeaderType        = "Pizza-Event-Type"
	HeaderVersion     = "Pizza-Event-Version"
	HeaderCommandID   = "Pizza-Command-Id"
	HeaderCorrelation = "Pizza-Correlation-Id"
	HeaderMsgID       = "Nats-Msg-Id"
)

// Context names a bounded context: the stream that holds its events and the
// subject prefix under which each aggregate instance has its own subject.
type Context struct {
	Name          string // human name, e.g. "orders"
	Stream        string // JetStream stream, e.g. "ORDERS"
	SubjectPrefix string // e.g. "orders"; aggregate subjects are "<prefix>.<id>"
}

// The bounded contexts of the platform. Values, not a registry: callers pick
// the ones they need.
var (
	Orders    = Context{Name: "orders", Stream: "ORDERS", SubjectPrefix: "orders"}
	Kitchen   = Context{Name: "kitchen", Stream: "KITCHEN", SubjectPrefix: "kitchen"}
	Drivers   = Context{Name: "drivers", Stream: "DRIVERS", SubjectPrefix: "drivers"}
	Inventory = Context{Name: "inventory", Stream: "INVENTORY", SubjectPrefix: "inventory"}
	Telemetry = Context{Name: "telemetry", Stream: "TELEMETRY", SubjectPrefix: "telemetry"}
)

// DeadLetter is the stream where consumers park messages they could not
// handle after their last allowed delivery.
var DeadLetter = Context{Name: "deadletter", Stream: "DEADLETTER", SubjectPrefix: "deadletter"}

// DomainContexts lists the contexts whose streams are domain event logs
// (kept forever).
func DomainContexts() []Context { return []Context{Orders, Kitchen, Drivers, Inventory} }

// Subject returns the subject of one aggregate instance. The id must have
// passed ValidateID.
func (c Context) Subject(aggregateID string) string { return c.SubjectPrefix + "." + aggregateID }

// Wildcard returns the subject filter that matches every aggregate of the context.
func (c Context) Wildcard() string { return c.SubjectPrefix + ".>" }

// AggregateID extracts the aggregate id from a subject of this context.
func (c Context) AggregateID(subject string) (string, bool) {
	id, ok := strings.CutPrefix(subject, c.SubjectPrefix+".")
	if !ok || id == "" || strings.Contains(id, ".") {
		return "", false
	}
	return id, true
}

// MaxIDLength bounds aggregate ids (they become subject tokens and Redis keys).
const MaxIDLength = 64

// ValidateID reports whether id may be used as an aggregate id: 1 to 64
// characters from [A-Za-z0-9_-]. Anything else could break subject
// hierarchy (".", "*", ">", whitespace) or key layouts.
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("id is empty")
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("id is longer than %d characters", MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("id contains %q at position %d; allowed are letters, digits, '-' and '_'", c, i)
		}
	}
	return nil
}
