package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/testkit"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// A driver's phone publishes its position over MQTT (a third-party MQTT
// 3.1.1 client); a customer following the order out for delivery sees the
// driver move, with a fresh ETA, on the order's SSE stream within a second,
// and the order read model (GET /api/orders/{id}) carries the position and
// the ETA until the order is delivered.
func TestDriverPositionReachesTheCustomerLive(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	_, keyspace := testkit.Redis(t)
	h := startPlatform(t, PlatformConfig{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		RedisURL: testkit.RedisURL(), Keyspace: keyspace, TimeScale: 3000})
	defer func() { h.stop() }()
	creds, err := h.p.mqtt.SeedDemoCredentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	id := h.placePearl()
	var driver string
	testkit.Eventually(t, 30*time.Second, func() error {
		o := h.order(id)
		if o.AssignedDriverID == nil {
			return fmt.Errorf("order is %s", o.Status)
		}
		driver = *o.AssignedDriverID
		return nil
	})
	res, b := h.do("POST", "/api/drivers/"+driver+"/pickup", `{"orderId":"`+id+`"}`, nil)
	if res.StatusCode != 200 {
		t.Fatalf("pickup: %d %s", res.StatusCode, b)
	}
	h.waitFor(id, "OutForDelivery")

	// The customer's stream, read raw to see the "driver" frames.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	frames := h.rawStream(ctx, "/api/orders/"+id+"/track")

	opts := mqtt.NewClientOptions().AddBroker("tcp://" + h.p.MQTTAddr()).SetClientID("phone-" + driver).
		SetUsername(driver).SetPassword(creds[driver]).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	phone := mqtt.NewClient(opts)
	if tok := phone.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer phone.Disconnect(100)
	version := h.order(id).Version
	var lastSeq uint64
	for i, lat := range []float64{45.5270, 45.5275, 45.5281} {
		sent := time.Now()
		payload := fmt.Sprintf(`{"latitude":%f,"longitude":-122.6830,"speed":24,"timestamp":"%s"}`, lat, time.Now().UTC().Format(time.RFC3339Nano))
		tok := phone.Publish("pizza/drivers/"+driver+"/location", 1, false, payload)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
		deadline := time.After(time.Second)
		for {
			select {
			case f := <-frames:
				if !strings.HasPrefix(f, "event: driver\n") {
					continue
				}
				if strings.Contains(f, "\nid: ") || strings.HasPrefix(f, "id: ") {
					t.Fatalf("a driver frame carries an id: %s", f)
				}
				var u struct {
					DriverID string     `json:"driverId"`
					Latitude float64    `json:"latitude"`
					EtaAt    *time.Time `json:"etaAt"`
					Seq      uint64     `json:"seq"`
				}
				_ = json.Unmarshal([]byte(f[strings.Index(f, "data: ")+6:]), &u)
				if u.DriverID != driver || u.EtaAt == nil || u.Seq == 0 {
					t.Fatalf("driver frame %s", f)
				}
				if fmt.Sprintf("%.4f", u.Latitude) != fmt.Sprintf("%.4f", lat) {
					continue // an earlier position
				}
				t.Logf("position %d reached the customer %v after the publish", i, time.Since(sent).Round(time.Millisecond))
			case <-deadline:
				t.Fatalf("position %d did not reach the tracking stream within a second", i)
			}
			break
		}
		// The order read model itself carries the position and the ETA
		// recomputed from it; the order's version (its ORDERS history) does
		// not move for a position.
		o := h.order(id)
		tr := o.DriverTracking
		if tr == nil || tr.DriverID != driver || fmt.Sprintf("%.4f", tr.Latitude) != fmt.Sprintf("%.4f", lat) || tr.Longitude != -122.6830 ||
			tr.SpeedKmh == nil || *tr.SpeedKmh != 24 || tr.Seq <= lastSeq || tr.DistanceKm <= 0 || tr.EtaAt.Before(tr.At) {
			t.Fatalf("GET /api/orders/%s after position %d: driverTracking %+v", id, i, tr)
		}
		if o.Version != version || o.Status != "OutForDelivery" {
			t.Fatalf("order moved to version %d (%s) for a position; want %d", o.Version, o.Status, version)
		}
		lastSeq = tr.Seq
	}

	// Delivered: the driver's position leaves the order.
	res, b = h.do("POST", "/api/drivers/"+driver+"/deliver", `{"orderId":"`+id+`"}`, nil)
	if res.StatusCode != 200 {
		t.Fatalf("deliver: %d %s", res.StatusCode, b)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if o := h.order(id); o.Status != "Delivered" || o.DriverTracking != nil {
			return fmt.Errorf("order %s, tracking %+v", o.Status, o.DriverTracking)
		}
		return nil
	})
}

// rawStream opens an SSE stream and yields its frames (lines up to a blank one).
func (h *harness) rawStream(ctx context.Context, path string) <-chan string {
	h.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.base+path, nil)
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		h.t.Fatalf("stream %s: %v", path, err)
	}
	out := make(chan string, 64)
	go func() {
		defer res.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var frame strings.Builder
		for sc.Scan() {
			if sc.Text() == "" {
				if frame.Len() > 0 {
					select {
					case out <- frame.String():
					case <-ctx.Done():
						return
					}
				}
				frame.Reset()
				continue
			}
			frame.WriteString(sc.Text() + "\n")
		}
	}()
	return out
}
