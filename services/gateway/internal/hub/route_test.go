package hub

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
)

func TestRouteOf(t *testing.T) {
	bigDisplay := `{"restaurantId":"r-1","tickets":[` + strings.Repeat(`{"orderId":"o","stage":"oven","restaurantId":"r-9"},`, 200) + `{"orderId":"last"}]}`
	cases := []struct {
		name      string
		payload   string
		positions bool
		rid, did  string
	}{
		{"top-level first", `{"restaurantId":"downtown","seq":3,"display":` + bigDisplay + `}`, false, "downtown", ""},
		{"top-level after a nested one", `{"seq":3,"stock":{"restaurantId":"nested"},"restaurantId":"top"}`, false, "top", ""},
		{"nested only", `{"seq":4,"kitchen":{"restaurantId":"uptown","ovens":[]}}`, false, "uptown", ""},
		{"position", `{"seq":5,"position":{"driverId":"d-7","restaurantId":"downtown","lat":1}}`, true, "downtown", "d-7"},
		{"driver id ignored off the positions channel", `{"seq":5,"position":{"driverId":"d-7"}}`, false, "", ""},
		{"drivers model", `{"kind":"driver","seq":9,"restaurantId":"harbor","driverId":"d-1","driver":{"restaurantId":"harbor"}}`, false, "harbor", ""},
		{"not an object", `[1,2]`, false, "", ""},
		{"truncated", `{"seq":1,"stock":{"restaurantId":"x"`, false, "", ""},
		{"truncated after the id", `{"restaurantId":"r","seq":`, false, "r", ""},
		{"empty", ``, false, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rid, did := routeOf([]byte(c.payload), c.positions)
			if rid != c.rid || did != c.did {
				t.Fatalf("routeOf = %q, %q; want %q, %q", rid, did, c.rid, c.did)
			}
		})
	}
}

// FuzzRouteOf checks that any payload is handled without a panic and that a
// well-formed document with a top-level restaurant id is routed to it.
func FuzzRouteOf(f *testing.F) {
	f.Add([]byte(`{"restaurantId":"a","x":{"restaurantId":"b"}}`), "c")
	f.Add([]byte(`{"position":{"driverId":"d"}}`), "e")
	f.Fuzz(func(t *testing.T, payload []byte, id string) {
		routeOf(payload, true)
		routeOf(payload, false)
		if id == "" {
			return
		}
		var doc map[string]any
		if json.Unmarshal(payload, &doc) != nil {
			return
		}
		doc["restaurantId"] = id
		b, _ := json.Marshal(doc)
		if rid, _ := routeOf(b, false); rid != id {
			t.Fatalf("routeOf(%s) = %q, want %q", b, rid, id)
		}
	})
}

func BenchmarkRouteOfKitchenDisplay(b *testing.B) {
	payload := []byte(`{"restaurantId":"downtown","seq":3,"display":{"tickets":[` + strings.Repeat(`{"orderId":"o","stage":"oven","items":[{"pizza":"margherita","qty":2}]},`, 300) + `{}]}}`)
	b.ReportAllocs()
	for b.Loop() {
		if rid, _ := routeOf(payload, false); rid != "downtown" {
			b.Fatal(rid)
		}
	}
}

func TestDecodeNotificationKeepsTheOrderEncoding(t *testing.T) {
	payload := `{"orderId":"o1","seq":7,"order":{"orderId":"o1","status":"Queued","version":7},"tracking":true}`
	n, err := decodeNotification([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	if n.OrderID != "o1" || n.Seq != 7 || !n.Tracking || n.Order.Status != "Queued" || n.Order.Version != 7 {
		t.Fatalf("decoded %+v", n)
	}
	if string(n.OrderJSON) != `{"orderId":"o1","status":"Queued","version":7}` {
		t.Fatalf("order encoding %s", n.OrderJSON)
	}
	if _, err := decodeNotification([]byte(`{"orderId":"o1","order":[1]}`)); err == nil {
		t.Fatal("an order that is not an object was accepted")
	}
}

// decodeNotification decodes an order notification whole, as a tracking
// stream's watcher receives it: the head, then the snapshot.
func decodeNotification(payload []byte) (ordersapi.Notification, error) {
	n, _, err := decodeNotificationHead(payload)
	if err != nil {
		return ordersapi.Notification{}, err
	}
	if err := codec.Unmarshal(n.OrderJSON, &n.Order); err != nil {
		return ordersapi.Notification{}, err
	}
	return n, nil
}
