package driversapi

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

func f(v float64) *float64 { return &v }

func TestValidateLocation(t *testing.T) {
	now := time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)
	old, ahead := now.Add(-25*time.Hour), now.Add(6*time.Minute)
	tests := []struct {
		name   string
		cmd    LocationCommand
		fields []string
	}{
		{"valid", LocationCommand{DriverID: "d", Latitude: f(45.5), Longitude: f(-122.6), SpeedKmh: f(300), Heading: f(359.9), AccuracyM: f(0)}, nil},
		{"missing", LocationCommand{}, []string{"driverId", "latitude", "longitude"}},
		{"out of range", LocationCommand{DriverID: "d", Latitude: f(90.1), Longitude: f(math.Inf(1)), SpeedKmh: f(-1), AccuracyM: f(100_001), Heading: f(360)},
			[]string{"latitude", "longitude", "speedKmh", "accuracyM", "heading"}},
		{"NaN", LocationCommand{DriverID: "d", Latitude: f(math.NaN()), Longitude: f(1), Heading: f(math.NaN())}, []string{"latitude", "heading"}},
		{"old", LocationCommand{DriverID: "d", Latitude: f(1), Longitude: f(1), Timestamp: &old}, []string{"timestamp"}},
		{"ahead", LocationCommand{DriverID: "d", Latitude: f(1), Longitude: f(1), Timestamp: &ahead}, []string{"timestamp"}},
		{"long key", LocationCommand{DriverID: "d", Latitude: f(1), Longitude: f(1), CommandMeta: CommandMeta{IdempotencyKey: strings.Repeat("k", MaxIdempotencyKey+1)}},
			[]string{"Idempotency-Key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range ValidateLocation(tt.cmd, now) {
				got = append(got, e.Field)
			}
			if strings.Join(got, ",") != strings.Join(tt.fields, ",") {
				t.Fatalf("fields %q, want %q", got, tt.fields)
			}
			_, err := NewLocationFix(tt.cmd, now)
			var inv *InvalidLocationError
			if (len(tt.fields) > 0) != errors.As(err, &inv) {
				t.Fatalf("NewLocationFix: %v", err)
			}
		})
	}
}

func TestNewLocationFix(t *testing.T) {
	now := time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)
	at := now.Add(-time.Second)
	cmd := LocationCommand{DriverID: "d-1", Latitude: f(45.5), Longitude: f(-122.6), SpeedKmh: f(20), Timestamp: &at,
		CommandMeta: CommandMeta{IdempotencyKey: "key", CorrelationID: "phone-1"}}
	fix, err := NewLocationFix(cmd, now)
	if err != nil {
		t.Fatal(err)
	}
	m := fix.Msg
	id := CommandID("location", "d-1", "key")
	if m.Subject != events.DriverLocationSubject("d-1") || fix.CommandID != id || !strings.HasPrefix(id, "location:d-1:") {
		t.Fatalf("subject %s, command id %s", m.Subject, fix.CommandID)
	}
	for h, want := range map[string]string{jetstream.MsgIDHeader: id, events.HeaderCommandID: id, events.HeaderType: "driver_location_reported",
		events.HeaderVersion: "1", events.HeaderCorrelation: "phone-1"} {
		if got := m.Header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	env, err := events.UnmarshalEnvelope(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	var ev events.DriverLocationReported
	if err := json.Unmarshal(env.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if env.AggregateID != "d-1" || env.CausationID != id || !env.OccurredAt.Equal(now) || !ev.RecordedAt.Equal(at) || ev.Latitude != 45.5 || *ev.SpeedKmh != 20 {
		t.Fatalf("envelope %+v, event %+v", env, ev)
	}
	// Without a timestamp the fix is recorded when received; without a
	// correlation id it correlates with the driver.
	cmd.Timestamp, cmd.CorrelationID = nil, ""
	fix, err = NewLocationFix(cmd, now)
	if err != nil || !fix.Event.RecordedAt.Equal(now) || fix.Msg.Header.Get(events.HeaderCorrelation) != "d-1" {
		t.Fatalf("%+v %v", fix.Event, err)
	}
}
