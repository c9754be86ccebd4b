package app

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/nats-io/nats.go"
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

// follow feeds every message of an ordered consumer to handle until ctx
// ends; caught is closed once the messages that existed at the start are
// handled. After a failure it resumes after the last handled sequence.
func (f *Follower) follow(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig, caught chan struct{}, handle func(jetstream.Msg, *jetstream.MsgMetadata)) {
	var once sync.Once
	markCaught := func() { once.Do(func() { close(caught) }) }
	var last uint64
	backoff := 50 * time.Millisecond
	for {
		c := cfg
		if last > 0 {
			c.DeliverPolicy, c.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last+1
		}
		err := f.followOnce(ctx, stream, c, markCaught, handle, &last)
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("following the log was interrupted; resuming", "stream", stream, "after_seq", last, "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (f *Follower) followOnce(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig, caught func(), handle func(jetstream.Msg, *jetstream.MsgMetadata), last *uint64) error {
	st, err := f.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	target := info.State.LastSeq
	cons, err := f.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return err
	}
	if ci := cons.CachedInfo(); target <= *last || (ci != nil && ci.NumPending == 0) {
		caught()
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoHeartbeat) {
				continue
			}
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		handle(m, md)
		*last = md.Sequence.Stream
		if md.NumPending == 0 || *last >= target {
			caught()
		}
	}
}
