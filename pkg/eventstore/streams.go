// Package eventstore is the event log of Awesome Pizza on NATS JetStream:
// stream provisioning per bounded context, appends with server-enforced
// optimistic concurrency and idempotency, atomic multi-event appends,
// aggregate loading, and durable consumers with dead-lettering.
package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamOptions are the deployment choices for the streams. The retention
// rules of each stream kind are fixed by the design and not optional.
type StreamOptions struct {
	Replicas int                   // 1 for dev, 3 in production
	Storage  jetstream.StorageType // FileStorage unless a test asks otherwise
	// Production denies delete and purge on domain streams: the log is the
	// source of truth and is never edited.
	Production bool
	// DuplicateWindow is how long Nats-Msg-Id dedupe remembers an id.
	// Beyond it, the expected-sequence check still rejects a replay.
	DuplicateWindow time.Duration
	// TelemetryMaxAge and TelemetryMaxPerSubject bound the TELEMETRY stream.
	TelemetryMaxAge        time.Duration
	TelemetryMaxPerSubject int64
	// Placement pins the streams to a cluster or to servers carrying given
	// tags (a region's home cluster in a supercluster). Nil leaves the
	// choice to the server: the cluster of the connection that creates them.
	Placement *jetstream.Placement
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	if o.TelemetryMaxAge <= 0 {
		o.TelemetryMaxAge = 24 * time.Hour
	}
	if o.TelemetryMaxPerSubject <= 0 {
		o.TelemetryMaxPerSubject = 10_000
	}
	return o
}

// placement returns a copy of the placement, so stream configs built from
// the same options never share (and mutate) one Placement value.
func (o StreamOptions) placement() *jetstream.Placement {
	if o.Placement == nil {
		return nil
	}
	p := *o.Placement
	p.Tags = append([]string(nil), o.Placement.Tags...)
	return &p
}

// DomainStreamConfig is the configuration of a bounded context's event log:
// kept forever (no age, count or size limits), Discard New so a full
// account rejects writes instead of silently dropping history, atomic batch
// publish allowed, and direct get for fast last-message lookups.
func DomainStreamConfig(c events.Context, o StreamOptions) jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:               c.Stream,
		Description:        "Domain events of the " + c.Name + " context (source of truth)",
		Subjects:           []string{c.Wildcard()},
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardNew,
		MaxAge:             0,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxMsgsPerSubject:  -1,
		Storage:            o.Storage,
		Replicas:           o.Replicas,
		Duplicates:         o.DuplicateWindow,
		DenyDelete:         o.Production,
		DenyPurge:          o.Production,
		AllowDirect:        true,
		AllowAtomicPublish: true,
		Placement:          o.placement(),
	}
}

// TelemetryStreamConfig bounds device telemetry by age and per device.
func TelemetryStreamConfig(o StreamOptions) jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:              events.Telemetry.Stream,
		Description:       "Device telemetry (GPS, ovens): bounded by age and per subject",
		Subjects:          []string{events.Telemetry.Wildcard()},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            o.TelemetryMaxAge,
		MaxMsgsPerSubject: o.TelemetryMaxPerSubject,
		Storage:           o.Storage,
		Replicas:          o.Replicas,
		Duplicates:        o.DuplicateWindow,
		AllowDirect:       true,
		Placement:         o.placement(),
	}
}

// DeadLetterStreamConfig keeps poison messages for operators; never
// discarded silently.
func DeadLetterStreamConfig(o StreamOptions) jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:        events.DeadLetter.Stream,
		Description: "Messages consumers could not handle after their last allowed delivery",
		Subjects:    []string{events.DeadLetter.Wildcard()},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		Storage:     o.Storage,
		Replicas:    o.Replicas,
		Duplicates:  o.DuplicateWindow,
		AllowDirect: true,
		Placement:   o.placement(),
	}
}

// Provision creates or updates every stream of the platform: the domain
// streams of the given contexts, TELEMETRY and DEADLETTER. It is safe to
// run on every start.
func Provision(ctx context.Context, js jetstream.JetStream, o StreamOptions, contexts ...events.Context) error {
	cfgs := make([]jetstream.StreamConfig, 0, len(contexts)+2)
	for _, c := range contexts {
		cfgs = append(cfgs, DomainStreamConfig(c, o))
	}
	cfgs = append(cfgs, TelemetryStreamConfig(o), DeadLetterStreamConfig(o))
	for _, cfg := range cfgs {
		// Protection once granted stays: the server refuses to lift
		// DenyDelete/DenyPurge, and a service started without the
		// production switch must not fail on (or weaken) a production stream.
		if st, err := js.Stream(ctx, cfg.Name); err == nil {
			existing := st.CachedInfo().Config
			cfg.DenyDelete = cfg.DenyDelete || existing.DenyDelete
			cfg.DenyPurge = cfg.DenyPurge || existing.DenyPurge
		}
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("provision stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// CheckStreams verifies that the streams exist and answer; for readiness.
func CheckStreams(ctx context.Context, js jetstream.JetStream, names ...string) error {
	var errs []error
	for _, n := range names {
		if _, err := js.Stream(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// LastSeq returns the sequence of the last message a stream holds (0 when
// it is empty), read fresh from the server: how far a reader that starts
// now must go to have caught up.
func LastSeq(ctx context.Context, js jetstream.JetStream, stream string) (uint64, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}
