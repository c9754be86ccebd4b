package events

import (
	"encoding/json"
	"fmt"

	"github.com/awesome-pizza/pizza/pkg/events/codec"
)

// Upcaster turns the payload of one schema version into the payload of the
// next version of the same event type.
type Upcaster func(data json.RawMessage) (json.RawMessage, error)

type key struct {
	typ     string
	version int
}

// Registry knows how to decode stored events into typed values. It is built
// explicitly by the program (no init-time global state): see NewRegistry
// and the Register* functions of each context.
type Registry struct {
	decoders  map[key]func(json.RawMessage) (Event, error)
	upcasters map[key]Upcaster // from version -> version+1
	latest    map[string]int
}

// NewRegistry returns a registry that knows every event of the platform.
func NewRegistry() *Registry {
	r := &Registry{
		decoders:  map[key]func(json.RawMessage) (Event, error){},
		upcasters: map[key]Upcaster{},
		latest:    map[string]int{},
	}
	RegisterOrderEvents(r)
	RegisterInventoryEvents(r)
	RegisterKitchenEvents(r)
	RegisterDriverEvents(r)
	return r
}

// Register adds the decoder of one event type and version. The zero value
// of E supplies the type name and version.
func Register[E Event](r *Registry) {
	var zero E
	k := key{zero.EventType(), zero.EventVersion()}
	r.decoders[k] = func(data json.RawMessage) (Event, error) {
		var e E
		if err := codec.Unmarshal(data, &e); err != nil {
			return nil, err
		}
		return e, nil
	}
	if k.version > r.latest[k.typ] {
		r.latest[k.typ] = k.version
	}
}

// RegisterUpcaster adds the step from version `from` to `from+1` of typ.
func (r *Registry) RegisterUpcaster(typ string, from int, up Upcaster) {
	r.upcasters[key{typ, from}] = up
	if from+1 > r.latest[typ] {
		r.latest[typ] = from + 1
	}
}

// Known reports whether the registry can decode the type at any version.
func (r *Registry) Known(typ string) bool { _, ok := r.latest[typ]; return ok }

// Decode returns the typed event of an envelope, upcasting older versions
// to the newest registered one. An unknown type yields ErrUnknownType; a
// version newer than the latest known yields *UnknownVersionError.
func (r *Registry) Decode(env Envelope) (Event, error) {
	latest, ok := r.latest[env.Type]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownType, Name(env.Type, env.Version))
	}
	if env.Version > latest {
		return nil, &UnknownVersionError{Type: env.Type, Version: env.Version, Latest: latest}
	}
	data, version := env.Data, env.Version
	for version < latest {
		up, ok := r.upcasters[key{env.Type, version}]
		if !ok {
			break // an older version that still has its own decoder
		}
		next, err := up(data)
		if err != nil {
			return nil, fmt.Errorf("upcast %s: %w", Name(env.Type, version), err)
		}
		data, version = next, version+1
	}
	dec, ok := r.decoders[key{env.Type, version}]
	if !ok {
		return nil, fmt.Errorf("%w: no decoder for %s", ErrUnknownType, Name(env.Type, version))
	}
	e, err := dec(data)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", Name(env.Type, version), err)
	}
	return e, nil
}
