package main

import (
	"context"

	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
)

// happyPath is the order log of a delivered order; a failed quality check
// repeats the preparation, baking and check before "ready".
var happyPath = []string{"order_placed", "order_queued", "order_preparation_started", "order_baking_started",
	"order_quality_check_started", "order_ready_for_pickup", "order_driver_assigned", "order_picked_up", "order_out_for_delivery", "order_delivered"}

func validDeliveredLog(types []string) bool {
	// Collapse remakes: preparation, baking, check repeated after a check.
	// Alerts (a stuck order) record no transition.
	types = slices.DeleteFunc(slices.Clone(types), func(t string) bool { return t == "order_stuck_detected" })
	var collapsed []string
	for i := 0; i < len(types); i++ {
		if i+2 < len(types) && types[i] == "order_quality_check_started" && types[i+1] == "order_preparation_started" {
			i += 2 // skip the remake's preparation and baking; the next check follows
			continue
		}
		collapsed = append(collapsed, types[i])
	}
	return slices.Equal(collapsed, happyPath)
}

type lineReq struct {
	PizzaType string   `json:"pizzaType"`
	Size      string   `json:"size"`
	Toppings  []string `json:"toppings,omitempty"`
	Quantity  int      `json:"quantity"`
}

func randomOrder(rng *rand.Rand, cat *catalog.Catalog, restaurant string, n int) (string, []lineReq) {
	menu, _ := cat.MenuFor(restaurant)
	var lines []lineReq
	for i := 0; i < 1+rng.IntN(2); i++ {
		p := menu[rng.IntN(len(menu))]
		l := lineReq{PizzaType: p.Type, Size: catalog.Sizes[rng.IntN(len(catalog.Sizes))], Quantity: 1 + rng.IntN(2)}
		if rng.IntN(3) == 0 {
			l.Toppings = []string{cat.Menu.Toppings[rng.IntN(len(cat.Menu.Toppings))].Name}
		}
		lines = append(lines, l)
	}
	b, _ := json.Marshal(map[string]any{
		"customerId": fmt.Sprintf("cust-%d", n), "restaurantId": restaurant, "items": lines, "paymentMethod": "CreditCard",
		"address": map[string]any{"street": fmt.Sprintf("%d Main St", n), "city": "Portland", "state": "OR", "zipCode": "97201",
			"coordinates": map[string]float64{"latitude": 45.50 + rng.Float64()*0.05, "longitude": -122.70 + rng.Float64()*0.08}},
	})
	return string(b), lines
}

// driveDrivers plays the drivers: every assigned order is picked up and
// delivered through the HTTP API, until stop is closed.
func driveDrivers(t *testing.T, h *harness, restaurants []string, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-stop:
			return
		default:
		}
		progressed := false
		for _, rid := range restaurants {
			for _, status := range []string{"DriverAssigned", "OutForDelivery"} {
				res, body := h.do("GET", "/api/restaurants/"+rid+"/orders?status="+status+"&limit=100", "", nil)
				if res.StatusCode != 200 {
					t.Errorf("list: %d %s", res.StatusCode, body)
					return
				}
				var page struct {
					Orders []ordersapi.OrderView `json:"orders"`
				}
				_ = json.Unmarshal(body, &page)
				for _, o := range page.Orders {
					if o.AssignedDriverID == nil {
						continue
					}
					verb := "pickup"
					if status == "OutForDelivery" {
						verb = "deliver"
					}
					res, body := h.do("POST", "/api/drivers/"+*o.AssignedDriverID+"/"+verb, `{"orderId":"`+o.OrderID+`"}`, nil)
					if res.StatusCode == 200 {
						progressed = true
					} else if res.StatusCode != 409 { // 409: already done (list lagging)
						t.Errorf("%s %s: %d %s", verb, o.OrderID, res.StatusCode, body)
					}
				}
			}
		}
		if !progressed {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

func TestHundredOrdersFromPlacementToDoor(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end lifecycle")
	}
	_, keyspace := testkit.Redis(t)
	cfg := PlatformConfig{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), RedisURL: testkit.RedisURL(), Keyspace: keyspace,
		TimeScale: 3000, QCFailureRate: 0.1, Seed: 7}
	h := startPlatform(t, cfg)
	defer func() { h.stop() }()
	cat := h.p.cat
	restaurants := []string{"downtown", "pearl", "hawthorne"}
	initial := map[string]map[string]int64{}
	for _, rid := range restaurants {
		initial[rid] = h.inventory(rid)
	}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go driveDrivers(t, h, restaurants, stop, &wg)
	defer func() { close(stop); wg.Wait() }()

	rng := rand.New(rand.NewPCG(1, 2))
	type placedOrder struct {
		id, restaurant string
		lines          []lineReq
	}
	var placed []placedOrder
	for i := 0; i < 100; i++ {
		rid := restaurants[i%3]
		body, lines := randomOrder(rng, cat, rid, i)
		res, b := h.do("POST", "/api/orders", body, nil)
		if res.StatusCode != 201 {
			t.Fatalf("order %d: %d %s", i, res.StatusCode, b)
		}
		var v ordersapi.OrderView
		_ = json.Unmarshal(b, &v)
		placed = append(placed, placedOrder{v.OrderID, rid, lines})
	}

	testkit.Eventually(t, 90*time.Second, func() error {
		notYet := 0
		var sample string
		for _, o := range placed {
			if v := h.order(o.id); v.Status != "Delivered" {
				notYet++
				sample = o.id + " is " + v.Status
			}
		}
		if notYet > 0 {
			return fmt.Errorf("%d of 100 orders not delivered (%s)", notYet, sample)
		}
		return nil
	})

	used := map[string]map[string]int64{}
	for _, o := range placed {
		if types := h.orderLog(o.id); !validDeliveredLog(types) {
			t.Errorf("order %s log is not a valid lifecycle: %v", o.id, types)
		}
		if used[o.restaurant] == nil {
			used[o.restaurant] = map[string]int64{}
		}
		for _, l := range o.lines {
			ing, err := cat.Ingredients(l.PizzaType, l.Size, l.Toppings, l.Quantity)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range ing {
				used[o.restaurant][k] += v
			}
		}
	}
	for _, rid := range restaurants {
		now := h.inventory(rid)
		for ing, start := range initial[rid] {
			if want := start - used[rid][ing]; now[ing] != want {
				t.Errorf("%s %s: on hand %d, want %d - %d = %d", rid, ing, now[ing], start, used[rid][ing], want)
			}
		}
	}
}

func (h *harness) order(id string) ordersapi.OrderView {
	h.t.Helper()
	var v ordersapi.OrderView
	res, b := h.do("GET", "/api/orders/"+id, "", nil)
	if res.StatusCode == http.StatusOK {
		_ = json.Unmarshal(b, &v)
	}
	return v
}

func (h *harness) orderLog(id string) []string {
	h.t.Helper()
	js, err := jetstream.New(h.p.nc)
	if err != nil {
		h.t.Fatal(err)
	}
	recs, _, err := eventstore.New(js, events.NewRegistry(), events.Orders).Load(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Envelope.Type
	}
	return out
}

// inventory returns on-hand units per ingredient from the inventory read model.
func (h *harness) inventory(rid string) map[string]int64 {
	h.t.Helper()
	res, b := h.do("GET", "/api/inventory/"+rid, "", nil)
	if res.StatusCode != 200 {
		h.t.Fatalf("inventory %s: %d %s", rid, res.StatusCode, b)
	}
	var v struct {
		Items []struct {
			Ingredient string `json:"ingredient"`
			OnHand     int64  `json:"onHand"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		h.t.Fatal(err)
	}
	out := map[string]int64{}
	for _, it := range v.Items {
		out[it.Ingredient] = it.OnHand
	}
	return out
}
