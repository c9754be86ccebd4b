package kitchen_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/services/kitchen"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
	"github.com/nats-io/nats.go/micro"
)

func (h *harness) alert(body any) (kitchenapi.AlertReply, *problem.Problem) {
	h.t.Helper()
	b, ok := body.([]byte)
	if !ok {
		b, _ = json.Marshal(body)
	}
	msg, err := h.nc.Request(kitchenapi.SubjectAlert, b, 10*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		var p problem.Problem
		if err := json.Unmarshal(msg.Data, &p); err != nil || fmt.Sprint(p.Status) != code {
			h.t.Fatalf("error reply %s without a matching problem: %q", code, msg.Data)
		}
		return kitchenapi.AlertReply{}, &p
	}
	var r kitchenapi.AlertReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		h.t.Fatal(err)
	}
	return r, nil
}

// A kitchen device's alert becomes kitchen_device_alert_raised on the
// restaurant's devices aggregate in KITCHEN, stored once per idempotency
// key; bad alerts are refused field by field; tickets and the display are
// untouched.
func TestDeviceAlertBecomesKitchenEvent(t *testing.T) {
	h := newHarness(t, true)
	h.start(kitchen.Config{TimeScale: 1})
	raised := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
	cmd := kitchenapi.AlertCommand{RestaurantID: restaurant, Alert: "  oven door open too long ", Severity: "warning",
		Details: json.RawMessage(`{ "seconds": 40 }`), RaisedAt: &raised, IdempotencyKey: "device-msg-1", CorrelationID: "corr-1"}
	r, p := h.alert(cmd)
	if p != nil || r.Seq == 0 || r.Replayed || r.AggregateID != events.KitchenDevicesAggregateID(restaurant) {
		t.Fatalf("alert: %+v %v", r, p)
	}
	// The same alert again (a device that got no acknowledgement) is not
	// stored twice, even after another alert of the same kitchen.
	r2, p := h.alert(kitchenapi.AlertCommand{RestaurantID: restaurant, Alert: "fridge warm", Severity: "critical", IdempotencyKey: "device-msg-2"})
	if p != nil || r2.Seq <= r.Seq {
		t.Fatalf("second alert: %+v %v", r2, p)
	}
	again, p := h.alert(cmd)
	if p != nil || !again.Replayed || again.Seq != r.Seq {
		t.Fatalf("resent alert: %+v %v, want replayed at seq %d", again, p, r.Seq)
	}
	recs := h.ticket(events.KitchenDevicesAggregateID(restaurant))
	if len(recs) != 2 {
		t.Fatalf("devices aggregate holds %v", types(recs))
	}
	got, ok := recs[0].Event.(events.KitchenDeviceAlertRaised)
	if !ok || recs[0].Seq != r.Seq || got.RestaurantID != restaurant || got.DeviceID != restaurant || got.Alert != "oven door open too long" ||
		got.Severity != "warning" || string(got.Details) != `{"seconds":40}` || !got.RaisedAt.Equal(raised) || recs[0].Envelope.CorrelationID != "corr-1" {
		t.Fatalf("stored alert %+v (%+v)", got, recs[0].Envelope)
	}
	if second := recs[1].Event.(events.KitchenDeviceAlertRaised); second.Severity != "critical" || second.RaisedAt.IsZero() {
		t.Fatalf("second alert %+v", second)
	}

	errorCases := []struct {
		name   string
		body   string
		status int
		fields []string
	}{
		{"unknown restaurant", `{"restaurantId":"atlantis","alert":"x","severity":"info"}`, 404, nil},
		{"restaurant missing", `{"alert":"x","severity":"info"}`, 422, []string{"restaurantId"}},
		{"empty alert, bad severity", `{"restaurantId":"downtown","alert":" ","severity":"apocalyptic"}`, 422, []string{"alert", "severity"}},
		{"details too large", fmt.Sprintf(`{"restaurantId":"downtown","alert":"x","severity":"info","details":{"log":%q}}`, strings.Repeat("x", 3000)), 422, []string{"details"}},
		{"raised in the future", fmt.Sprintf(`{"restaurantId":"downtown","alert":"x","severity":"info","raisedAt":%q}`, time.Now().Add(time.Hour).Format(time.RFC3339)), 422, []string{"raisedAt"}},
		{"not JSON", `{"restaurantId":`, 400, nil},
	}
	for _, tc := range errorCases {
		_, p := h.alert([]byte(tc.body))
		if p == nil || p.Status != tc.status {
			t.Fatalf("%s: %+v, want %d", tc.name, p, tc.status)
		}
		for i, f := range tc.fields {
			if i >= len(p.Errors) || p.Errors[i].Field != f {
				t.Fatalf("%s: errors %+v, want fields %v", tc.name, p.Errors, tc.fields)
			}
		}
	}
	if n := len(h.ticket(events.KitchenDevicesAggregateID(restaurant))); n != 2 {
		t.Fatalf("refused alerts stored: %d events", n)
	}

	// The kitchen's own readers skip the alerts: a ticket still flows, and
	// the display shows no ticket for the devices aggregate.
	order := "order-after-alerts"
	h.reserve(order)
	h.waitFor(order, "ticket_preparation_started", 10*time.Second)
	d := h.waitDisplay(func(d kitchenapi.KitchenDisplay) error {
		if _, ok := ticketView(d, order); !ok {
			return fmt.Errorf("display %+v", d)
		}
		return nil
	})
	if _, ok := ticketView(d, events.KitchenDevicesAggregateID(restaurant)); ok || len(d.Tickets) != 1 {
		t.Fatalf("display tickets %+v", d.Tickets)
	}
}
