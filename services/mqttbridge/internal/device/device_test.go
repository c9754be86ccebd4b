package device

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
)

var now = time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)

func TestParseTopic(t *testing.T) {
	tests := []struct {
		topic string
		want  Topic
	}{
		{"pizza/drivers/d-1/location", Topic{Location, "d-1"}},
		{"pizza/drivers/d_1/status", Topic{Status, "d_1"}},
		{"pizza/drivers/d1/assigned", Topic{Assigned, "d1"}},
		{"pizza/kitchen/downtown/oven", Topic{Oven, "downtown"}},
		{"pizza/kitchen/downtown/alerts", Topic{Alerts, "downtown"}},
		{"pizza/orders/o1/events", Topic{OrderEvents, "o1"}},
		{"pizza/orders/o1/driver-eta", Topic{DriverETA, "o1"}},
		{"pizza/drivers/+/location", Topic{}},
		{"pizza/drivers/#", Topic{}},
		{"pizza/drivers/a.b/location", Topic{}},
		{"pizza/drivers//location", Topic{}},
		{"pizza/drivers/d1/location/extra", Topic{}},
		{"pizza/kitchens/k/oven", Topic{}},
		{"other/drivers/d1/location", Topic{}},
		{"pizza/drivers/" + strings.Repeat("x", 65) + "/location", Topic{}},
		{"", Topic{}},
	}
	for _, tt := range tests {
		if got := ParseTopic(tt.topic); got != tt.want {
			t.Errorf("ParseTopic(%q) = %+v, want %+v", tt.topic, got, tt.want)
		}
	}
}

func TestACL(t *testing.T) {
	driverA := Identity{Kind: mqttapi.KindDriver, ID: "a"}
	kitchen := Identity{Kind: mqttapi.KindKitchen, ID: "downtown"}
	owns := func(orderID, driverID string) bool { return orderID == "o-a" && driverID == "a" }
	pub := []struct {
		who   Identity
		topic string
		want  bool
	}{
		{driverA, "pizza/drivers/a/location", true},
		{driverA, "pizza/drivers/a/status", true},
		{driverA, "pizza/drivers/b/location", false},
		{driverA, "pizza/drivers/b/status", false},
		{driverA, "pizza/drivers/a/assigned", false},
		{driverA, "pizza/orders/o-a/events", true},
		{driverA, "pizza/orders/o-b/events", false},
		{driverA, "pizza/orders/o-a/driver-eta", false},
		{driverA, "pizza/kitchen/a/oven", false},
		{driverA, "anything/else", false},
		{kitchen, "pizza/kitchen/downtown/oven", true},
		{kitchen, "pizza/kitchen/downtown/alerts", true},
		{kitchen, "pizza/kitchen/pearl/oven", false},
		{kitchen, "pizza/drivers/downtown/location", false},
		{Identity{}, "pizza/drivers/a/location", false},
	}
	for _, tt := range pub {
		if got := CanPublish(tt.who, tt.topic, owns); got != tt.want {
			t.Errorf("CanPublish(%+v, %q) = %v", tt.who, tt.topic, got)
		}
	}
	sub := []struct {
		who    Identity
		filter string
		want   bool
	}{
		{driverA, "pizza/drivers/a/assigned", true},
		{driverA, "pizza/drivers/b/assigned", false},
		{driverA, "pizza/orders/+/driver-eta", true},
		{driverA, "pizza/orders/o-a/driver-eta", true},
		{driverA, "pizza/orders/o-b/driver-eta", false},
		{driverA, "#", false},
		{driverA, "pizza/#", false},
		{driverA, "pizza/drivers/+/assigned", false},
		{driverA, "pizza/drivers/a/#", false},
		{driverA, "$share/g/pizza/drivers/a/assigned", false},
		{driverA, "$SYS/#", false},
		{kitchen, "pizza/kitchen/downtown/oven", true},
		{kitchen, "pizza/kitchen/pearl/oven", false},
		{kitchen, "pizza/orders/+/driver-eta", false},
	}
	for _, tt := range sub {
		if got := CanSubscribe(tt.who, tt.filter, owns); got != tt.want {
			t.Errorf("CanSubscribe(%+v, %q) = %v", tt.who, tt.filter, got)
		}
	}
}

func fields(err error) []string {
	var ip *InvalidPayloadError
	if !errors.As(err, &ip) {
		return nil
	}
	out := make([]string, len(ip.Fields))
	for i, f := range ip.Fields {
		out[i] = f.Field
	}
	return out
}

func TestLocation(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		fields  []string // nil: valid
		lat     float64
	}{
		{"long names", `{"latitude": 45.5, "longitude": -122.6, "speed": 20, "heading": 90, "accuracy": 5, "timestamp": "2026-11-26T17:59:58Z"}`, nil, 45.5},
		{"short names", `{"lat": 45.5, "lon": -122.6}`, nil, 45.5},
		{"both agree", `{"lat": 45.5, "latitude": 45.5, "lon": 1, "longitude": 1}`, nil, 45.5},
		{"unknown fields ignored", `{"lat": 1, "lon": 2, "battery": 80}`, nil, 1},
		{"both disagree", `{"lat": 45.5, "latitude": 45.6, "lon": 1}`, []string{"lat"}, 0},
		{"missing", `{}`, []string{"latitude", "longitude"}, 0},
		{"out of range", `{"lat": 91, "lon": -181, "speed": 301, "heading": 360, "accuracy": -1}`, []string{"latitude", "longitude", "speed", "accuracy", "heading"}, 0},
		{"old timestamp", `{"lat": 1, "lon": 1, "timestamp": "2026-11-20T00:00:00Z"}`, []string{"timestamp"}, 0},
		{"future timestamp", `{"lat": 1, "lon": 1, "timestamp": "2026-11-26T18:10:00Z"}`, []string{"timestamp"}, 0},
		{"bad timestamp", `{"lat": 1, "lon": 1, "timestamp": "yesterday"}`, []string{""}, 0},
		{"wrong type", `{"lat": "north", "lon": 1}`, []string{"lat"}, 0},
		{"not JSON", `lat=1`, []string{""}, 0},
		{"array", `[1, 2]`, []string{""}, 0},
		{"two objects", `{"lat": 1, "lon": 1} {}`, []string{""}, 0},
		{"empty", ``, []string{""}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := DecodeLocation("d1", []byte(tt.payload), now)
			if tt.fields == nil {
				if err != nil || cmd.DriverID != "d1" || *cmd.Latitude != tt.lat {
					t.Fatalf("%+v %v", cmd, err)
				}
				return
			}
			if got := fields(err); strings.Join(got, ",") != strings.Join(tt.fields, ",") {
				t.Fatalf("fields %q, want %q (err %v)", got, tt.fields, err)
			}
		})
	}
}

func TestStatusOvenAlertOrderEvent(t *testing.T) {
	tests := []struct {
		name   string
		decode func() error
		fields []string
	}{
		{"status ok", func() error { _, err := DecodeStatus([]byte(`{"status":"OnBreak"}`)); return err }, nil},
		{"status unknown", func() error { _, err := DecodeStatus([]byte(`{"status":"Sleeping"}`)); return err }, []string{"status"}},
		{"status missing", func() error { _, err := DecodeStatus([]byte(`{}`)); return err }, []string{"status"}},
		{"oven ok", func() error {
			r, err := DecodeOven("k", []byte(`{"temperature": 230.5, "timer": 120, "status": "baking"}`), now)
			if err == nil && (r.OvenID != DefaultOvenID || r.TemperatureC != 230.5 || !r.RecordedAt.Equal(now)) {
				return errors.New("wrong reading")
			}
			return err
		}, nil},
		{"oven missing temperature", func() error { _, err := DecodeOven("k", []byte(`{"timer": 1}`), now); return err }, []string{"temperature"}},
		{"oven out of range", func() error {
			_, err := DecodeOven("k", []byte(`{"temperature": 5000, "timer": -1, "status": "melting"}`), now)
			return err
		}, []string{"temperature", "timer", "status"}},
		{"alert ok", func() error {
			a, err := DecodeAlert("k", []byte(`{"alert": "smoke", "severity": "critical", "details": {"sensor": 3}}`), now)
			if err == nil && string(a.Details) != `{"sensor":3}` {
				return errors.New("details not kept")
			}
			return err
		}, nil},
		{"alert bad", func() error {
			_, err := DecodeAlert("k", []byte(`{"alert": " ", "severity": "panic"}`), now)
			return err
		}, []string{"alert", "severity"}},
		{"order event ok", func() error {
			_, err := DecodeOrderEvent([]byte(`{"event": "delayed", "details": "traffic"}`), now)
			return err
		}, nil},
		{"order event unknown", func() error { _, err := DecodeOrderEvent([]byte(`{"event": "teleported"}`), now); return err }, []string{"event"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.decode()
			if tt.fields == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if got := fields(err); strings.Join(got, ",") != strings.Join(tt.fields, ",") {
				t.Fatalf("fields %q, want %q (err %v)", got, tt.fields, err)
			}
		})
	}
}

// FuzzPayloads feeds arbitrary bytes to every payload decoder: none may
// panic, and an accepted location is always in range.
func FuzzPayloads(f *testing.F) {
	for _, s := range []string{`{"lat":1,"lon":2}`, `{"status":"Available"}`, `{"temperature":200}`, `{"alert":"x","severity":"info","details":[1]}`, `{"event":"delayed"}`, `{"lat":1e999}`, `nul`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if cmd, err := DecodeLocation("d", b, now); err == nil {
			if *cmd.Latitude < -90 || *cmd.Latitude > 90 || *cmd.Longitude < -180 || *cmd.Longitude > 180 {
				t.Fatalf("accepted out-of-range fix %v,%v", *cmd.Latitude, *cmd.Longitude)
			}
		}
		_, _ = DecodeStatus(b)
		_, _ = DecodeOven("k", b, now)
		_, _ = DecodeAlert("k", b, now)
		_, _ = DecodeOrderEvent(b, now)
	})
}
