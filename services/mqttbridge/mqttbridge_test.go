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
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/mqttbridge"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
	paho "github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
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

// TestNoPubackWhileLogUnavailable: a QoS 1 publish whose append fails gets
// no successful PUBACK — MQTT 5 gets 0x83, an MQTT 3.1.1 client gets none
// and is disconnected — and is stored once the log is back. Locations are
// appended by the bridge itself, statuses by the drivers service: with the
// drivers service stopped, locations are still stored and statuses are
// refused; with JetStream's server shut down, locations are refused.
func TestNoPubackWhileLogUnavailable(t *testing.T) {
	node := runNATSNode(t)
	h := newHarnessOn(t, mqttbridge.Config{CommandTimeout: time.Second}, node.server(), nil)
	c5, _, err := h.connectV5("v5", d1, h.secrets[d1])
	if err != nil {
		t.Fatal(err)
	}
	c3, err := h.connectV3("v3", d2, h.secrets[d2])
	if err != nil {
		t.Fatal(err)
	}
	unavailable := func() float64 {
		return h.counter("pizza_mqtt_messages_total", map[string]string{"outcome": "unavailable"})
	}
	mustDrop := func(c *v3Client, topic string, payload any) {
		t.Helper()
		tok := c.Publish(topic, 1, false, body(payload))
		if !tok.WaitTimeout(waitTimeout) {
			t.Fatal("the MQTT 3.1.1 publish neither completed nor failed")
		}
		if tok.Error() == nil {
			t.Fatalf("MQTT 3.1.1 publish on %s acknowledged while its log is unavailable", topic)
		}
		testkit.Eventually(t, waitTimeout, func() error {
			if c.IsConnectionOpen() {
				return errors.New("the MQTT 3.1.1 client is still connected")
			}
			return nil
		})
	}

	// The drivers service is down: svc.drivers.status has no responder.
	h.drivers.Stop()
	if rc, err := c5.publish(mqttapi.TopicLocation(d1), 1, map[string]any{"lat": 45.1, "lon": -122.1}); err != nil || rc != 0 {
		t.Fatalf("location without the drivers service: PUBACK %#x, err %v; want it stored", rc, err)
	}
	if rc, err := c5.publish(mqttapi.TopicStatus(d1), 1, map[string]any{"status": "OnBreak"}); err == nil || rc != 0x83 {
		t.Fatalf("MQTT 5 status without the drivers service: PUBACK %#x, err %v; want failure 0x83", rc, err)
	}
	mustDrop(c3, mqttapi.TopicStatus(d2), map[string]any{"status": "OnBreak"})
	if got := unavailable(); got != 2 {
		t.Fatalf("unavailable counted %v, want 2", got)
	}
	if n := len(h.telemetry(events.DriverLocationSubject(d1))); n != 1 {
		t.Fatalf("%d fixes of %s stored, want 1", n, d1)
	}
	h.startDrivers()
	h.waitPosition(d1, 45.1, -122.1) // appended by the bridge, projected by the drivers service

	// JetStream is down: its server is shut down.
	c3, err = h.connectV3("v3", d2, h.secrets[d2])
	if err != nil {
		t.Fatal(err)
	}
	node.stop()
	if rc, err := c5.publish(mqttapi.TopicLocation(d1), 1, map[string]any{"lat": 45.3, "lon": -122.3}); err == nil || rc != 0x83 {
		t.Fatalf("MQTT 5 location while the log is unavailable: PUBACK %#x, err %v; want failure 0x83", rc, err)
	}
	mustDrop(c3, mqttapi.TopicLocation(d2), map[string]any{"lat": 45.2, "lon": -122.2})
	if got := unavailable(); got != 4 {
		t.Fatalf("unavailable counted %v, want 4", got)
	}
	// The bridge closed the MQTT 3.1.1 connections itself: the driver is
	// not set Offline for them.
	if got := h.counter("pizza_mqtt_drivers_offline_total", nil); got != 0 {
		t.Fatalf("offline attempts %v", got)
	}

	// The log is back: the phones send the same messages again.
	node.start()
	testkit.Eventually(t, 2*waitTimeout, func() error {
		if rc, err := c5.publish(mqttapi.TopicLocation(d1), 1, map[string]any{"lat": 45.3, "lon": -122.3}); err != nil || rc != 0 {
			return fmt.Errorf("after recovery: PUBACK %#x, %v", rc, err)
		}
		return nil
	})
	testkit.Eventually(t, 2*waitTimeout, func() error {
		c3b, err := h.connectV3("v3", d2, h.secrets[d2])
		if err != nil {
			return err
		}
		return c3b.publish(mqttapi.TopicLocation(d2), 1, map[string]any{"lat": 45.2, "lon": -122.2})
	})
	h.waitPosition(d1, 45.3, -122.3)
	h.waitPosition(d2, 45.2, -122.2)
	// Each fix is stored once, however often it was sent.
	if n := len(h.telemetry(events.DriverLocationSubject(d1))); n != 2 {
		t.Fatalf("%d fixes of %s stored, want 2", n, d1)
	}
	if n := len(h.telemetry(events.DriverLocationSubject(d2))); n != 1 {
		t.Fatalf("%d fixes of %s stored, want 1", n, d2)
	}
}

// TestFixOfUnknownDriverRefused: a device holding valid credentials for a
// driver id DRIVERS does not know (written straight into the credentials
// bucket, which the issuer would not do) gets its fixes refused like any
// payload that cannot be stored, until the driver is registered.
func TestFixOfUnknownDriverRefused(t *testing.T) {
	h := newHarness(t, mqttbridge.Config{})
	const ghost = "ghost-driver-1"
	secret := h.plantCredential(ghost, mqttapi.KindDriver)
	c5, _, err := h.connectV5("ghost5", ghost, secret)
	if err != nil {
		t.Fatal(err)
	}
	fix := map[string]any{"lat": 45.52, "lon": -122.68}
	if rc, err := c5.publish(mqttapi.TopicLocation(ghost), 1, fix); err == nil || rc != 0x99 {
		t.Fatalf("fix of an unknown driver: PUBACK %#x, err %v; want failure 0x99", rc, err)
	}
	if got := h.counter("pizza_mqtt_messages_total", map[string]string{"outcome": "rejected"}); got != 1 {
		t.Fatalf("rejected counted %v, want 1", got)
	}
	if n := len(h.telemetry(events.DriverLocationSubject(ghost))); n != 0 {
		t.Fatalf("%d fixes of an unknown driver stored", n)
	}

	var reply driversapi.CommandReply
	if p, err := h.call(driversapi.SubjectRegister, driversapi.RegisterCommand{DriverID: ghost, Name: "Ghost", RestaurantID: downtown, Vehicle: "bike"}, &reply); p != nil || err != nil {
		t.Fatalf("register: %v %v", p, err)
	}
	if rc, err := c5.publish(mqttapi.TopicLocation(ghost), 1, fix); err != nil || rc != 0 {
		t.Fatalf("fix once registered: PUBACK %#x, err %v", rc, err)
	}
	h.waitPosition(ghost, 45.52, -122.68)
}

// appendEvent appends another context's event, as its owner would.
func (h *harness) appendEvent(bc events.Context, id string, e events.Event) {
	h.t.Helper()
	ctx := context.Background()
	store := eventstore.New(h.js, events.NewRegistry(), bc)
	seq, err := store.LastSeq(ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	env, err := events.NewEnvelope(id, e, time.Now(), events.Meta{CorrelationID: id})
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := store.Append(ctx, eventstore.Append{AggregateID: id, ExpectedSeq: seq, CommandID: fmt.Sprintf("test:%s:%d", id, seq), Events: []events.Envelope{env}}); err != nil {
		h.t.Fatal(err)
	}
}

func TestAssignmentAndETAReachThePhone(t *testing.T) {
	h := newHarness(t, mqttbridge.Config{})
	// Only driver 1 is Available at downtown, so the ready order is its.
	for _, id := range []string{d2, d3} {
		var r driversapi.CommandReply
		if p, err := h.call(driversapi.SubjectStatus, driversapi.StatusCommand{DriverID: id, Status: driversapi.StatusOnBreak}, &r); p != nil || err != nil {
			t.Fatal(p, err)
		}
	}
	phone, _, err := h.connectV5("phone-1", d1, h.secrets[d1])
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := h.connectV5("phone-2", d2, h.secrets[d2])
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []*v5Client{phone, other} {
		if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: mqttapi.TopicAllDriverETAs, QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := phone.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: mqttapi.TopicAssigned(d1), QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	const order = "order-mqtt-1"
	dropoff := events.GeoPoint{Latitude: 45.53, Longitude: -122.67}
	h.appendEvent(events.Kitchen, order, events.TicketReady{RestaurantID: downtown, DeliveryLocation: dropoff})
	var assigned mqttapi.AssignedMessage
	testkit.Eventually(t, waitTimeout, func() error {
		msgs := phone.messages(mqttapi.TopicAssigned(d1))
		if len(msgs) == 0 {
			return errors.New("no assignment on the phone")
		}
		return json.Unmarshal(msgs[len(msgs)-1], &assigned)
	})
	if assigned.OrderID != order || assigned.DriverID != d1 || assigned.Dropoff.Latitude != dropoff.Latitude || assigned.Pickup.Latitude == 0 || assigned.Seq == 0 {
		t.Fatalf("assignment %+v", assigned)
	}
	// A phone connecting later gets the retained assignment.
	late, err := h.connectV3("phone-1-late", d1, h.secrets[d1])
	if err != nil {
		t.Fatal(err)
	}
	if tok := late.Subscribe(mqttapi.TopicAssigned(d1), 1, nil); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	testkit.Eventually(t, waitTimeout, func() error {
		if len(late.messages(mqttapi.TopicAssigned(d1))) == 0 {
			return errors.New("no retained assignment")
		}
		return nil
	})

	// The holder may report order events; another driver may not.
	if rc, err := phone.publish(mqttapi.TopicOrderEvents(order), 1, map[string]any{"event": "arrived_at_restaurant"}); err != nil || rc != 0 {
		t.Fatalf("order event by its driver: %#x %v", rc, err)
	}
	if rc, err := other.publish(mqttapi.TopicOrderEvents(order), 1, map[string]any{"event": "delivered"}); err == nil || rc != 0x87 {
		t.Fatalf("order event by another driver: %#x %v", rc, err)
	}
	if got := h.counter("pizza_mqtt_order_events_total", map[string]string{"event": "arrived_at_restaurant"}); got != 1 {
		t.Fatalf("order events counted %v", got)
	}

	// Pickup: the ETA goes to the order's driver-eta topic, and only the
	// holder's phone receives it through the wildcard subscription.
	var r driversapi.CommandReply
	if p, err := h.call(driversapi.SubjectPickup, driversapi.PickupCommand{DriverID: d1, OrderID: order}, &r); p != nil || err != nil {
		t.Fatal(p, err)
	}
	var eta mqttapi.DriverETAMessage
	testkit.Eventually(t, waitTimeout, func() error {
		msgs := phone.messages(mqttapi.TopicDriverETA(order))
		if len(msgs) == 0 {
			return errors.New("no ETA on the phone")
		}
		return json.Unmarshal(msgs[0], &eta)
	})
	if eta.OrderID != order || eta.DriverID != d1 || eta.Status != "PickedUp" || !eta.EstimatedDeliveryAt.After(eta.PickedUpAt) {
		t.Fatalf("ETA %+v", eta)
	}
	// Delivery clears the retained assignment.
	if p, err := h.call(driversapi.SubjectDeliver, driversapi.DeliverCommand{DriverID: d1, OrderID: order}, &r); p != nil || err != nil {
		t.Fatal(p, err)
	}
	testkit.Eventually(t, waitTimeout, func() error {
		msgs := phone.messages(mqttapi.TopicAssigned(d1))
		if len(msgs) < 2 || len(msgs[len(msgs)-1]) != 0 {
			return fmt.Errorf("assignment not cleared: %d messages", len(msgs))
		}
		return nil
	})
	if n := len(other.messages(mqttapi.TopicDriverETA(order))); n != 0 {
		t.Fatalf("another driver received %d ETAs of the order", n)
	}
}

func TestCredentials(t *testing.T) {
	h := newHarness(t, mqttbridge.Config{})
	issue := func(id, kind string) (mqttapi.CredentialsReply, *problem.Problem) {
		var r mqttapi.CredentialsReply
		p, err := h.call(mqttapi.SubjectCredentials, mqttapi.CredentialsCommand{DeviceID: id, Kind: kind}, &r)
		if err != nil {
			t.Fatal(err)
		}
		return r, p
	}
	if _, p := issue("", "robot"); p == nil || p.Status != 422 || len(p.Errors) != 2 {
		t.Fatalf("validation: %+v", p)
	}
	if _, p := issue("nobody", mqttapi.KindDriver); p == nil || p.Status != 404 {
		t.Fatalf("unknown driver: %+v", p)
	}
	if _, p := issue("atlantis", mqttapi.KindKitchen); p == nil || p.Status != 404 {
		t.Fatalf("unknown kitchen: %+v", p)
	}
	if _, p := issue(downtown, mqttapi.KindDriver); p == nil || p.Status != 404 {
		t.Fatalf("a kitchen id as a driver: %+v", p)
	}
	// A driver registered at run time gets credentials too.
	var reg driversapi.CommandReply
	if p, err := h.call(driversapi.SubjectRegister, driversapi.RegisterCommand{DriverID: "new-driver", Name: "New", RestaurantID: downtown, Vehicle: "bike"}, &reg); p != nil || err != nil {
		t.Fatal(p, err)
	}
	fresh, p := issue("new-driver", mqttapi.KindDriver)
	if p != nil || fresh.Secret == "" || fresh.Username != "new-driver" || len(fresh.Publish) == 0 {
		t.Fatalf("%+v %+v", fresh, p)
	}
	if _, _, err := h.connectV5("nd", "new-driver", fresh.Secret); err != nil {
		t.Fatal(err)
	}

	// Issuing a new secret revokes the old one and ends its sessions.
	old, _, err := h.connectV5("rev", d1, h.secrets[d1])
	if err != nil {
		t.Fatal(err)
	}
	next, p := issue(d1, mqttapi.KindDriver)
	if p != nil {
		t.Fatal(p)
	}
	select {
	case <-old.Done():
	case <-time.After(waitTimeout):
		t.Fatal("session with the revoked secret still open")
	}
	if _, _, err := h.connectV5("rev2", d1, h.secrets[d1]); err == nil {
		t.Fatal("revoked secret accepted")
	}
	if _, _, err := h.connectV5("rev3", d1, next.Secret); err != nil {
		t.Fatal(err)
	}
	// The driver was not set Offline: the bridge ended that session.
	if got := h.counter("pizza_mqtt_drivers_offline_total", nil); got != 0 {
		t.Fatalf("offline attempts %v", got)
	}
}

func TestKitchenTelemetry(t *testing.T) {
	h := newHarness(t, mqttbridge.Config{})
	oven, _, err := h.connectV5("oven-1", downtown, h.secrets[downtown])
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := oven.publish(mqttapi.TopicOven(downtown), 1, map[string]any{"temperature": 245.5, "timer": 300, "status": "baking"}); err != nil || rc != 0 {
		t.Fatalf("%#x %v", rc, err)
	}
	alert := map[string]any{"alert": "door open too long", "severity": "warning", "details": map[string]any{"seconds": 40}, "timestamp": time.Now().UTC().Add(-time.Second)}
	// The alert is the kitchen's: while no kitchen service can record it,
	// the device gets no successful PUBACK and nothing is stored.
	if rc, err := oven.publish(mqttapi.TopicAlerts(downtown), 1, alert); err == nil || rc != 0x83 {
		t.Fatalf("alert without a kitchen service: %#x %v, want failure 0x83", rc, err)
	}
	if recs := h.telemetry(mqttapi.KitchenAlertSubject(downtown)); len(recs) != 0 {
		t.Fatalf("alert stored in TELEMETRY without its kitchen event: %+v", recs)
	}
	h.startKitchen()
	// The device resends; then sends the same message once more.
	for i := 0; i < 2; i++ {
		if rc, err := oven.publish(mqttapi.TopicAlerts(downtown), 1, alert); err != nil || rc != 0 {
			t.Fatalf("alert %d: %#x %v", i, rc, err)
		}
	}
	if rc, err := oven.publish(mqttapi.TopicOven("pearl"), 1, map[string]any{"temperature": 200}); err == nil || rc != 0x87 {
		t.Fatalf("another kitchen's oven: %#x %v", rc, err)
	}
	if recs := h.telemetry(mqttapi.OvenReadingSubject(downtown)); len(recs) != 1 || recs[0].Event.(mqttapi.OvenReadingReported).TemperatureC != 245.5 {
		t.Fatalf("oven readings %+v", recs)
	}
	if recs := h.telemetry(mqttapi.KitchenAlertSubject(downtown)); len(recs) != 1 || recs[0].Event.(mqttapi.KitchenAlertRaised).Severity != "warning" {
		t.Fatalf("alerts %+v", recs)
	}
	// The kitchen's domain event, exactly once.
	kitchenLog := eventstore.New(h.js, events.NewRegistry(), events.Kitchen)
	recs, _, err := kitchenLog.Load(context.Background(), events.KitchenDevicesAggregateID(downtown))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("kitchen devices aggregate holds %d events", len(recs))
	}
	if e, ok := recs[0].Event.(events.KitchenDeviceAlertRaised); !ok || e.RestaurantID != downtown || e.DeviceID != downtown || e.Alert != "door open too long" ||
		e.Severity != "warning" || string(e.Details) != `{"seconds":40}` {
		t.Fatalf("kitchen event %+v", recs[0].Event)
	}
	testkit.Eventually(t, waitTimeout, func() error {
		raw, err := h.rdb.Get(context.Background(), mqttapi.KitchenTelemetryKey(h.ks, downtown)).Bytes()
		if err != nil {
			return err
		}
		var v mqttapi.KitchenTelemetryView
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		if len(v.Ovens) != 1 || v.Ovens[0].TemperatureC != 245.5 || v.Ovens[0].Status != "baking" || len(v.RecentAlerts) != 1 || string(v.RecentAlerts[0].Details) != `{"seconds":40}` {
			return fmt.Errorf("view %+v", v)
		}
		return nil
	})
	// Counted per acknowledged publish, as before.
	if got := h.counter("pizza_mqtt_kitchen_alerts_total", map[string]string{"severity": "warning"}); got != 2 {
		t.Fatalf("alerts counted %v", got)
	}
	if got := h.counter("pizza_mqtt_messages_total", map[string]string{"outcome": "unavailable"}); got != 1 {
		t.Fatalf("unavailable counted %v", got)
	}
}

func TestDroppedPhoneSetsDriverOffline(t *testing.T) {
	h := newHarness(t, mqttbridge.Config{})
	// A clean DISCONNECT leaves the status alone.
	c, _, err := h.connectV5("bye", d1, h.secrets[d1])
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Disconnect(&paho.Disconnect{})
	// A session taken over by the same phone is not a drop either.
	first, _, err := h.connectV5("phone", d2, h.secrets[d2])
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.connectV5("phone", d2, h.secrets[d2]); err != nil {
		t.Fatal(err)
	}
	<-first.Done()
	// A phone that vanishes (the TCP connection breaks) sets its driver Offline.
	lost, _, err := h.connectV5("lost", d3, h.secrets[d3])
	if err != nil {
		t.Fatal(err)
	}
	_ = lost.conn.Close()
	h.waitStatus(d3, driversapi.StatusOffline)
	// The read model can show Offline a moment before the bridge, which
	// counts once the command's reply is back, has counted it.
	testkit.Eventually(t, waitTimeout, func() error {
		if got := h.counter("pizza_mqtt_drivers_offline_total", map[string]string{"result": "ok"}); got != 1 {
			return fmt.Errorf("offline settings %v, want 1", got)
		}
		return nil
	})
	for _, id := range []string{d1, d2} {
		if v, err := h.driverView(id); err != nil || v.Status != driversapi.StatusAvailable {
			t.Fatalf("%s: %+v %v", id, v.Status, err)
		}
	}
}

func TestLimits(t *testing.T) {
	h := newHarness(t, mqttbridge.Config{RatePerSecond: 2, RateBurst: 3, MaxClients: 2})
	c, _, err := h.connectV5("rate", d1, h.secrets[d1])
	if err != nil {
		t.Fatal(err)
	}
	limited := 0
	for i := 0; i < 6; i++ {
		rc, err := c.publish(mqttapi.TopicLocation(d1), 1, map[string]any{"lat": 45 + float64(i)/100, "lon": -122})
		if rc == 0x97 && err != nil {
			limited++
		}
	}
	if limited < 2 || h.counter("pizza_mqtt_messages_total", map[string]string{"outcome": "rate_limited"}) != float64(limited) {
		t.Fatalf("%d publishes over the rate refused", limited)
	}
	// The connection survives the refusals.
	testkit.Eventually(t, waitTimeout, func() error {
		_, err := c.publish(mqttapi.TopicLocation(d1), 1, map[string]any{"lat": 46, "lon": -122})
		return err
	})
	// Two clients at most.
	if _, _, err := h.connectV5("second", d2, h.secrets[d2]); err != nil {
		t.Fatal(err)
	}
	if _, ca, err := h.connectV5("third", d3, h.secrets[d3]); err == nil || ca.ReasonCode != 0x89 {
		t.Fatalf("third client: %v %+v", err, ca)
	}
}

func TestWebSocket(t *testing.T) {
	h := newHarness(t, mqttbridge.Config{WSAddr: "127.0.0.1:0"})
	opts := mqtt3.NewClientOptions().AddBroker("ws://" + h.bridge.WSAddr().String() + "/mqtt").SetClientID("browser").
		SetUsername(d1).SetPassword(h.secrets[d1]).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := mqtt3.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("connect over WebSocket: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.Publish(mqttapi.TopicLocation(d1), 1, false, body(map[string]any{"lat": 45.55, "lon": -122.65})); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("publish over WebSocket: %v", tok.Error())
	}
	h.waitPosition(d1, 45.55, -122.65)
}

// TestAssignmentsReachPhonesOnEveryBridge runs three bridge instances: a
// phone connected to any of them gets its driver's assignment and, as the
// order's holder there, its ETA; an instance started after the assignment
// has it retained for a phone that connects to it.
func TestAssignmentsReachPhonesOnEveryBridge(t *testing.T) {
	h := newHarness(t, mqttbridge.Config{})
	b := h.startBridge()
	for _, id := range []string{d2, d3} {
		var r driversapi.CommandReply
		if p, err := h.call(driversapi.SubjectStatus, driversapi.StatusCommand{DriverID: id, Status: driversapi.StatusOnBreak}, &r); p != nil || err != nil {
			t.Fatal(p, err)
		}
	}
	ctx := context.Background()
	phones := map[string]*v5Client{}
	for name, on := range map[string]*harness{"a": h, "b": b} {
		phone, _, err := on.connectV5("phone-"+name, d1, h.secrets[d1])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := phone.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
			{Topic: mqttapi.TopicAssigned(d1), QoS: 1}, {Topic: mqttapi.TopicAllDriverETAs, QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		phones[name] = phone
	}
	const order = "order-two-bridges"
	h.appendEvent(events.Kitchen, order, events.TicketReady{RestaurantID: downtown, DeliveryLocation: events.GeoPoint{Latitude: 45.53, Longitude: -122.67}})
	for name, phone := range phones {
		testkit.Eventually(t, waitTimeout, func() error {
			msgs := phone.messages(mqttapi.TopicAssigned(d1))
			if len(msgs) == 0 {
				return fmt.Errorf("no assignment on the phone connected to bridge %s", name)
			}
			var a mqttapi.AssignedMessage
			if err := json.Unmarshal(msgs[len(msgs)-1], &a); err != nil {
				return err
			}
			if a.OrderID != order {
				return fmt.Errorf("bridge %s sent %+v", name, a)
			}
			return nil
		})
	}
	var r driversapi.CommandReply
	if p, err := h.call(driversapi.SubjectPickup, driversapi.PickupCommand{DriverID: d1, OrderID: order}, &r); p != nil || err != nil {
		t.Fatal(p, err)
	}
	for name, phone := range phones {
		testkit.Eventually(t, waitTimeout, func() error {
			if len(phone.messages(mqttapi.TopicDriverETA(order))) == 0 {
				return fmt.Errorf("no ETA on the phone connected to bridge %s", name)
			}
			return nil
		})
	}
	// A bridge started now rebuilt the retained assignment from DRIVERS.
	c := h.startBridge()
	late, err := c.connectV3("phone-c", d1, h.secrets[d1])
	if err != nil {
		t.Fatal(err)
	}
	if tok := late.Subscribe(mqttapi.TopicAssigned(d1), 1, nil); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	testkit.Eventually(t, waitTimeout, func() error {
		msgs := late.messages(mqttapi.TopicAssigned(d1))
		if len(msgs) == 0 {
			return errors.New("no retained assignment on the bridge started after it")
		}
		var a mqttapi.AssignedMessage
		if err := json.Unmarshal(msgs[len(msgs)-1], &a); err != nil {
			return err
		}
		if a.OrderID != order {
			return fmt.Errorf("retained %+v", a)
		}
		return nil
	})
}
