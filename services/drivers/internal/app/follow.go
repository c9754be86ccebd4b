package app

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/nats-io/nats.go/jetstream"
)

// Follower keeps the dispatch state in step with the log: DRIVERS from
// sequence 1 (every driver and queue) and, from TELEMETRY, each driver's
// last position, then both live.
type Follower struct {
	js  jetstream.JetStream
	reg *events.Registry
	d   *Dispatcher
	log *slog.Logger

	driversCaught   chan struct{}
	positionsCaught chan struct{}
	wg              sync.WaitGroup
}

// NewFollower returns a follower that feeds d's state.
func NewFollower(js jetstream.JetStream, reg *events.Registry, d *Dispatcher, log *slog.Logger) *Follower {
	return &Follower{js: js, reg: reg, d: d, log: log, driversCaught: make(chan struct{}), positionsCaught: make(chan struct{})}
}

// Start follows both streams until ctx ends.
func (f *Follower) Start(ctx context.Context) {
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		f.follow(ctx, events.Drivers.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.Drivers.Wildcard()}, DeliverPolicy: jetstream.DeliverAllPolicy},
			f.driversCaught, f.applyDriverEvent)
	}()
	go func() {
		defer f.wg.Done()
		f.follow(ctx, events.Telemetry.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.DriverLocationSubject(">")}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy},
			f.positionsCaught, f.applyPosition)
	}()
}

// Wait blocks until both followers stopped (after ctx ended).
func (f *Follower) Wait() { f.wg.Wait() }

// DriversCaughtUp is closed once every DRIVERS event that existed at the
// start is in the state.
func (f *Follower) DriversCaughtUp() <-chan struct{} { return f.driversCaught }

// PositionsCaughtUp is closed once each driver's last stored position is
// in the state.
func (f *Follower) PositionsCaughtUp() <-chan struct{} { return f.positionsCaught }

func (f *Follower) applyDriverEvent(m jetstream.Msg, md *jetstream.MsgMetadata) {
	rec, err := eventstore.DecodeMessage(f.reg, m.Subject(), m.Headers(), m.Data(), md.Stream, md.Sequence.Stream, md.Timestamp)
	if err != nil {
		// The projector dead-letters it and raises the alert; here it can
		// only be skipped.
		f.log.Error("driver event cannot be decoded; dispatch state skips it", "seq", md.Sequence.Stream, "subject", m.Subject(), "err", err)
		return
	}
	f.d.fleet.apply(rec)
}

func (f *Follower) applyPosition(m jetstream.Msg, md *jetstream.MsgMetadata) {
	rec, err := eventstore.DecodeMessage(f.reg, m.Subject(), m.Headers(), m.Data(), md.Stream, md.Sequence.Stream, md.Timestamp)
	if err != nil {
		f.log.Warn("position fix cannot be decoded; skipped", "seq", md.Sequence.Stream, "subject", m.Subject(), "err", err)
		return
	}
	ev, ok := rec.Event.(events.DriverLocationReported)
	if !ok {
		return
	}
	driverID := driverOfSubject(m.Subject(), rec.Envelope.AggregateID)
	f.d.fleet.setPosition(driverID, position{point: events.GeoPoint{Latitude: ev.Latitude, Longitude: ev.Longitude}, speedKmh: ev.SpeedKmh, seq: rec.Seq})
}

// driverOfSubject returns the driver of a telemetry.drivers.<id> subject.
func driverOfSubject(subject, fallback string) string {
	if id, ok := strings.CutPrefix(subject, events.DriverLocationSubject("")); ok && id != "" {
		return id
	}
	return fallback
}

// follow feeds the stream to handle (eventstore.Follow); caught is closed
// once the messages that existed at the start are handled.
func (f *Follower) follow(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig, caught chan struct{}, handle func(jetstream.Msg, *jetstream.MsgMetadata)) {
	eventstore.Follow(ctx, f.js, stream, cfg, f.log, func() { close(caught) }, handle)
}
