package mqttbridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/mqttbridge"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
	paho "github.com/eclipse/paho.golang/paho"
)

// driverView reads GET /api/drivers/{id}'s data from Redis: the driver
// view with its last position merged in, as the gateway serves it.
func (h *harness) driverView(id string) (driversapi.DriverView, error) {
	ctx := context.Background()
	var v driversapi.DriverView
	raw, err := h.rdb.Get(ctx, driversapi.DriverKey(h.ks, id)).Bytes()
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, err
	}
	if raw, err := h.rdb.Get(ctx, driversapi.PositionKey(h.ks, id)).Bytes(); err == nil {
		var p driversapi.PositionView
		if err := json.Unmarshal(raw, &p); err != nil {
			return v, err
		}
		v = v.WithPosition(&p)
	}
	return v, nil
}

func (h *harness) waitPosition(id string, lat, lon float64) {
	h.t.Helper()
	testkit.Eventually(h.t, waitTimeout, func() error {
		v, err := h.driverView(id)
		if err != nil {
			return err
		}
		if v.Location == nil || v.Location.Latitude != lat || v.Location.Longitude != lon {
			return fmt.Errorf("driver %s at %+v, want %v,%v", id, v.Location, lat, lon)
		}
		return nil
	})
}

func (h *harness) waitStatus(id, status string) {
	h.t.Helper()
	testkit.Eventually(h.t, waitTimeout, func() error {
		v, err := h.driverView(id)
		if err != nil {
			return err
		}
		if v.Status != status {
			return fmt.Errorf("driver %s is %s, want %s", id, v.Status, status)
		}
		return nil
	})
}

func TestInteropLocationAndStatus(t *testing.T) {
	h := newHarness(t, mqttbridge.Config{})
	now := time.Now().UTC().Truncate(time.Second)

	// MQTT 3.1.1 (paho.mqtt.golang): long field names, QoS 1.
	c3, err := h.connectV3("phone-"+d1, d1, h.secrets[d1])
	if err != nil {
		t.Fatal(err)
	}
	if err := c3.publish(mqttapi.TopicLocation(d1), 1, map[string]any{"latitude": 45.52, "longitude": -122.68, "speed": 22.5, "heading": 90, "accuracy": 4, "timestamp": now}); err != nil {
		t.Fatal(err)
	}
	if err := c3.publish(mqttapi.TopicStatus(d1), 1, map[string]any{"status": "OnBreak"}); err != nil {
		t.Fatal(err)
	}
	h.waitPosition(d1, 45.52, -122.68)
	h.waitStatus(d1, driversapi.StatusOnBreak)

	// MQTT 5 (paho.golang): short field names.
	c5, _, err := h.connectV5("phone-"+d2, d2, h.secrets[d2])
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := c5.publish(mqttapi.TopicLocation(d2), 1, map[string]any{"lat": 45.53, "lon": -122.67}); err != nil || rc != 0 {
		t.Fatalf("PUBACK %#x %v", rc, err)
	}
	if rc, err := c5.publish(mqttapi.TopicStatus(d2), 1, map[string]any{"status": "EndOfShift"}); err != nil || rc != 0 {
		t.Fatalf("PUBACK %#x %v", rc, err)
	}
	h.waitPosition(d2, 45.53, -122.67)
	h.waitStatus(d2, driversapi.StatusEndOfShift)

	// QoS 0 works too.
	if _, err := c5.publish(mqttapi.TopicLocation(d2), 0, map[string]any{"lat": 45.54, "lon": -122.66}); err != nil {
		t.Fatal(err)
	}
	h.waitPosition(d2, 45.54, -122.66)

	// The fixes are in TELEMETRY, on each driver's subject.
	recs := h.telemetry(events.DriverLocationSubject(d1))
	if len(recs) != 1 {
		t.Fatalf("%d fixes of %s", len(recs), d1)
	}
	fix := recs[0].Event.(events.DriverLocationReported)
	if fix.Latitude != 45.52 || *fix.SpeedKmh != 22.5 || *fix.Heading != 90 || *fix.AccuracyM != 4 || !fix.RecordedAt.Equal(now) {
		t.Fatalf("stored fix %+v", fix)
	}
	if got := h.counter("pizza_mqtt_messages_total", map[string]string{"outcome": "accepted"}); got != 5 {
		t.Fatalf("%v accepted messages counted, want 5", got)
	}
}

func TestAuthorization(t *testing.T) {
	h := newHarness(t, mqttbridge.Config{})

	// Anonymous and wrong secrets are refused, in both protocol versions.
	if _, err := h.connectV3("anon", "", ""); err == nil {
		t.Fatal("anonymous MQTT 3.1.1 client accepted")
	}
	if _, ca, err := h.connectV5("anon5", "", ""); err == nil || ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("anonymous MQTT 5 client: %v %+v", err, ca)
	}
	if _, err := h.connectV3("wrong", d1, "not-the-secret"); err == nil {
		t.Fatal("wrong secret accepted")
	}
	if _, ca, err := h.connectV5("wrong5", d1, h.secrets[d2]); err == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("another driver's secret: %v %+v", err, ca)
	}
	if _, err := h.connectV3("unknown", "nobody", "x"); err == nil {
		t.Fatal("unknown device accepted")
	}

	// Driver A may not publish on B's topics: MQTT 5 gets "not authorized",
	// MQTT 3.1.1 is disconnected; nothing reaches the log.
	a5, _, err := h.connectV5("a5", d1, h.secrets[d1])
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := a5.publish(mqttapi.TopicLocation(d2), 1, map[string]any{"lat": 1, "lon": 1}); err == nil || rc != 0x87 {
		t.Fatalf("publish on B's location: %#x %v", rc, err)
	}
	if rc, err := a5.publish(mqttapi.TopicStatus(d2), 1, map[string]any{"status": "Offline"}); err == nil || rc != 0x87 {
		t.Fatalf("publish on B's status: %#x %v", rc, err)
	}
	if rc, err := a5.publish(mqttapi.TopicOven(downtown), 1, map[string]any{"temperature": 200}); err == nil || rc != 0x87 {
		t.Fatalf("driver publishing oven readings: %#x %v", rc, err)
	}
	// Subscriptions: not '#', not B's topics; its own are fine.
	ctx := context.Background()
	sa, err := a5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "#", QoS: 1}, {Topic: "pizza/#", QoS: 1}, {Topic: mqttapi.TopicAssigned(d2), QoS: 1},
		{Topic: mqttapi.TopicAssigned(d1), QoS: 1}, {Topic: mqttapi.TopicAllDriverETAs, QoS: 1},
	}})
	if sa == nil {
		t.Fatal(err)
	}
	if want := []byte{0x87, 0x87, 0x87, 1, 1}; string(sa.Reasons) != string(want) {
		t.Fatalf("SUBACK reasons %v, want %v", sa.Reasons, want)
	}

	a3, err := h.connectV3("a3", d3, h.secrets[d3])
	if err != nil {
		t.Fatal(err)
	}
	tok := a3.Subscribe("#", 1, nil)
	tok.WaitTimeout(waitTimeout)
	if st, ok := tok.(interface{ Result() map[string]byte }); ok && st.Result()["#"] != 0x80 {
		t.Fatalf("MQTT 3.1.1 subscription to # granted: %v", st.Result())
	}
	if err := a3.publish(mqttapi.TopicLocation(d1), 1, map[string]any{"lat": 1, "lon": 1}); err == nil {
		t.Fatal("MQTT 3.1.1 publish on another driver's topic acknowledged")
	}
	testkit.Eventually(t, waitTimeout, func() error {
		if a3.IsConnectionOpen() {
			return errors.New("still connected")
		}
		return nil
	})
	if recs := h.telemetry(events.DriverLocationSubject(d2)); len(recs) != 0 {
		t.Fatalf("B's subject has %d fixes", len(recs))
	}

	// A client id may only be reused by the same device.
	if _, _, err := h.connectV5("a5", d2, h.secrets[d2]); err == nil {
		t.Fatal("client id of driver 1 taken over by driver 2")
	}
	if got := h.counter("pizza_mqtt_connects_refused_total", map[string]string{"reason": "takeover"}); got != 1 {
		t.Fatalf("takeovers refused: %v", got)
	}
	// The same device may reconnect with its client id (session takeover).
	if _, _, err := h.connectV5("a5", d1, h.secrets[d1]); err != nil {
		t.Fatal(err)
	}
	if got := h.counter("pizza_mqtt_acl_denied_total", map[string]string{"op": "publish"}); got < 4 {
		t.Fatalf("ACL denials counted: %v", got)
	}
}

func TestBadPayloadsRejectedAndCounted(t *testing.T) {
	h := newHarness(t, mqttbridge.Config{MaxPayloadBytes: 1024})
	c5, _, err := h.connectV5("bad5", d1, h.secrets[d1])
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		topic   string
		payload any
	}{
		{mqttapi.TopicLocation(d1), "not json at all"},
		{mqttapi.TopicLocation(d1), map[string]any{"lat": 123.4, "lon": 2}},
		{mqttapi.TopicLocation(d1), map[string]any{"lat": 45}},
		{mqttapi.TopicStatus(d1), map[string]any{"status": "Sleeping"}},
		{mqttapi.TopicLocation(d1), `{"lat": 45, "lon": 2, "pad": "` + strings.Repeat("x", 2000) + `"}`},
	}
	for i, m := range bad {
		rc, err := c5.publish(m.topic, 1, m.payload)
		if err == nil || rc != 0x99 {
			t.Fatalf("bad payload %d: PUBACK %#x, err %v; want 0x99", i, rc, err)
		}
		// The client's other messages keep flowing.
		lat := 45.0 + float64(i)/100
		if rc, err := c5.publish(mqttapi.TopicLocation(d1), 1, map[string]any{"lat": lat, "lon": -122.0}); err != nil || rc != 0 {
			t.Fatalf("good payload after bad %d: %#x %v", i, rc, err)
		}
	}
	// MQTT 3.1.1 has no failure codes: the bad message is acknowledged and
	// dropped, and the connection stays.
	c3, err := h.connectV3("bad3", d2, h.secrets[d2])
	if err != nil {
		t.Fatal(err)
	}
	if err := c3.publish(mqttapi.TopicLocation(d2), 1, "{]"); err != nil {
		t.Fatal(err)
	}
	if err := c3.publish(mqttapi.TopicLocation(d2), 1, map[string]any{"lat": 45.6, "lon": -122.6}); err != nil {
		t.Fatal(err)
	}
	h.waitPosition(d2, 45.6, -122.6)

	if got := h.counter("pizza_mqtt_messages_total", map[string]string{"outcome": "invalid"}); got != 5 {
		t.Fatalf("invalid counted %v, want 5", got)
	}
	if got := h.counter("pizza_mqtt_messages_total", map[string]string{"outcome": "too_large"}); got != 1 {
		t.Fatalf("too large counted %v, want 1", got)
	}
	if n := len(h.telemetry(events.DriverLocationSubject(d1))); n != len(bad) {
		t.Fatalf("%d fixes stored, want %d", n, len(bad))
	}
	// A packet over the broker's packet limit ends the connection.
	small := newHarness(t, mqttbridge.Config{MaxPacketBytes: 512})
	big, _, err := small.connectV5("big", d3, small.secrets[d3])
	if err != nil {
		t.Fatal(err)
	}
	_, _ = big.publish(mqttapi.TopicLocation(d3), 0, strings.Repeat("x", 4096))
	testkit.Eventually(t, waitTimeout, func() error {
		if small.counter("pizza_mqtt_packets_refused_total", map[string]string{"reason": "packet_too_large"}) != 1 {
			return errors.New("oversized packet not refused")
		}
		return nil
	})
}
