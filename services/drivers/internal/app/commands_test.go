package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/drivers/internal/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// dispatcherOnLog runs a dispatcher and its follower on a fresh JetStream.
func dispatcherOnLog(t *testing.T) (*Dispatcher, jetstream.JetStream) {
	t.Helper()
	js := testkit.JetStream(t, testkit.Connect(t, testkit.RunJetStream(t)))
	ctx, cancel := context.WithCancel(context.Background())
	if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{}, events.DomainContexts()...); err != nil {
		t.Fatal(err)
	}
	reg := events.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := NewDispatcher(js, reg, catalog.Default(), time.Now, log, Options{})
	f := NewFollower(js, reg, d, log)
	f.Start(ctx)
	t.Cleanup(func() { cancel(); f.Wait() })
	<-f.DriversCaughtUp()
	<-f.PositionsCaughtUp()
	return d, js
}

func ptr(v float64) *float64 { return &v }

// A fix appended to TELEMETRY by another writer (the MQTT bridge, with
// driversapi.NewLocationFix) reaches the dispatch state through the
// follower, in log order; a fix through ReportLocation is there at once.
// Both carry the same message: subject, headers and the command id the
// dispatcher derives from the idempotency key.
func TestFixesFromEveryWriterReachTheDispatcher(t *testing.T) {
	d, js := dispatcherOnLog(t)
	ctx := context.Background()
	const driver = "fix-driver-1"
	if _, err := d.Register(ctx, driversapi.RegisterCommand{DriverID: driver, Name: "Fix", RestaurantID: "downtown", Vehicle: "bike"}); err != nil {
		t.Fatal(err)
	}
	positionIs := func(lat float64, seq uint64) error {
		d.fleet.mu.Lock()
		p, ok := d.fleet.positionLocked(driver)
		d.fleet.mu.Unlock()
		if !ok || p.point.Latitude != lat || p.seq != seq {
			return fmt.Errorf("dispatcher has %+v (known %v), want latitude %v at seq %d", p, ok, lat, seq)
		}
		return nil
	}

	// As the bridge appends a phone's fix.
	now := time.Now()
	var last uint64
	for i := range 50 {
		lat := 45.5 + float64(i)/1000
		fix, err := driversapi.NewLocationFix(driversapi.LocationCommand{DriverID: driver, Latitude: ptr(lat), Longitude: ptr(-122.6), SpeedKmh: ptr(30),
			CommandMeta: driversapi.CommandMeta{IdempotencyKey: fmt.Sprintf("phone-fix-%d", i)}}, now)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := js.PublishMsg(ctx, fix.Msg)
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
	}
	testkit.Eventually(t, 10*time.Second, func() error { return positionIs(45.5+49.0/1000, last) })

	// The HTTP route's fix: stored, and in the state before the reply.
	cmd := driversapi.LocationCommand{DriverID: driver, Latitude: ptr(45.6), Longitude: ptr(-122.5), CommandMeta: driversapi.CommandMeta{IdempotencyKey: "http-fix"}}
	reply, err := d.ReportLocation(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := positionIs(45.6, reply.Seq); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, events.Telemetry.Stream)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := st.GetMsg(ctx, reply.Seq)
	if err != nil {
		t.Fatal(err)
	}
	wantID := commandIDFor("location", driver, "http-fix")
	if got := raw.Header.Get(jetstream.MsgIDHeader); got != wantID || raw.Header.Get(events.HeaderCommandID) != wantID {
		t.Fatalf("Nats-Msg-Id %q, command id %q; want %q", got, raw.Header.Get(events.HeaderCommandID), wantID)
	}
	if raw.Subject != events.DriverLocationSubject(driver) || raw.Header.Get(events.HeaderType) != "driver_location_reported" {
		t.Fatalf("stored on %s as %s", raw.Subject, raw.Header.Get(events.HeaderType))
	}
	rec, err := eventstore.DecodeMessage(events.NewRegistry(), raw.Subject, raw.Header, raw.Data, events.Telemetry.Stream, raw.Sequence, raw.Time)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Envelope.AggregateID != driver || rec.Envelope.CorrelationID != driver || rec.Envelope.CausationID != wantID {
		t.Fatalf("envelope %+v", rec.Envelope)
	}

	// The same key again is the same command: stored once.
	again, err := d.ReportLocation(ctx, cmd)
	if err != nil || !again.Replayed || again.Seq != reply.Seq {
		t.Fatalf("resent fix: %+v %v; want replayed at seq %d", again, err, reply.Seq)
	}
	// A fix the bridge built from the same key is that command too.
	fix, err := driversapi.NewLocationFix(cmd, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := js.PublishMsg(ctx, fix.Msg); err != nil || !ack.Duplicate {
		t.Fatalf("the bridge's copy of the fix: %+v %v; want a duplicate", ack, err)
	}

	// Refusals: the rules, then the driver.
	_, err = d.ReportLocation(ctx, driversapi.LocationCommand{DriverID: driver, Latitude: ptr(91), SpeedKmh: ptr(-1)})
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) != 3 || ve.Fields[0].Field != "latitude" || ve.Fields[1].Field != "longitude" || ve.Fields[2].Field != "speedKmh" {
		t.Fatalf("invalid fix: %v", err)
	}
	if _, err := d.ReportLocation(ctx, driversapi.LocationCommand{DriverID: "nobody", Latitude: ptr(1), Longitude: ptr(1)}); !errors.Is(err, ErrDriverNotFound) {
		t.Fatalf("fix of an unknown driver: %v", err)
	}
}

// A command id is the same for a retry (same idempotency key), different
// for another key, and unique without a key.
func TestCommandIDsFollowTheIdempotencyKey(t *testing.T) {
	seen := map[string]string{}
	for _, key := range []string{"k", "a longer idempotency key", "é"} {
		a, b := commandIDFor("location", "d-1", key), driversapi.CommandID("location", "d-1", key)
		if a != b {
			t.Errorf("key %q: %s then %s", key, a, b)
		}
		if other, dup := seen[a]; dup {
			t.Errorf("keys %q and %q share id %s", key, other, a)
		}
		seen[a] = key
	}
	if a, b := driversapi.CommandID("location", "d-1", ""), driversapi.CommandID("location", "d-1", ""); a == b {
		t.Errorf("two commands without a key share id %s", a)
	}
}
