package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
)

const pearlOrder = `{"customerId":"cust-c","restaurantId":"pearl","items":[{"pizzaType":"Margherita","size":"Medium","quantity":1}],
"address":{"street":"9 Side St","city":"Portland","coordinates":{"latitude":45.53,"longitude":-122.68}},"paymentMethod":"Cash"}`

// margheritaMedium is what one medium Margherita takes from stock.
var margheritaMedium = map[string]int64{"dough": 1, "tomato_sauce": 1, "mozzarella": 2, "basil": 1}

type stockItem struct {
	OnHand, Reserved, Available int64
}

func (h *harness) stock(rid string) map[string]stockItem {
	h.t.Helper()
	res, b := h.do("GET", "/api/inventory/"+rid, "", nil)
	if res.StatusCode != 200 {
		h.t.Fatalf("inventory: %d %s", res.StatusCode, b)
	}
	var v struct {
		Items []struct {
			Ingredient                  string
			OnHand, Reserved, Available int64
		}
	}
	_ = json.Unmarshal(b, &v)
	out := map[string]stockItem{}
	for _, it := range v.Items {
		out[it.Ingredient] = stockItem{it.OnHand, it.Reserved, it.Available}
	}
	return out
}

func (h *harness) kitchenDisplay(rid string) kitchenapi.KitchenDisplay {
	h.t.Helper()
	var d kitchenapi.KitchenDisplay
	res, b := h.do("GET", "/api/kitchen/"+rid+"/queue", "", nil)
	if res.StatusCode != 200 {
		h.t.Fatalf("kitchen: %d %s", res.StatusCode, b)
	}
	_ = json.Unmarshal(b, &d)
	return d
}

func (h *harness) placePearl() string {
	h.t.Helper()
	res, b := h.do("POST", "/api/orders", pearlOrder, nil)
	if res.StatusCode != 201 {
		h.t.Fatalf("place: %d %s", res.StatusCode, b)
	}
	var v struct{ OrderID string }
	_ = json.Unmarshal(b, &v)
	return v.OrderID
}

// waitFor polls the order until it is in status (failing if it passes it).
func (h *harness) waitFor(id, status string) {
	h.t.Helper()
	testkit.Eventually(h.t, 30*time.Second, func() error {
		if s := h.order(id).Status; s != status {
			return fmt.Errorf("order %s is %s, waiting for %s", id, s, status)
		}
		return nil
	})
}

func (h *harness) cancel(id string) {
	h.t.Helper()
	res, b := h.do("POST", "/api/orders/"+id+"/cancel", `{"reason":"test"}`, nil)
	if res.StatusCode != 200 {
		h.t.Fatalf("cancel %s: %d %s", id, res.StatusCode, b)
	}
}

func (h *harness) setStatus(driverID, status string) {
	h.t.Helper()
	res, b := h.do("PUT", "/api/drivers/"+driverID+"/status", `{"status":"`+status+`"}`, nil)
	if res.StatusCode != 200 {
		h.t.Fatalf("driver %s → %s: %d %s", driverID, status, res.StatusCode, b)
	}
}

func (h *harness) chefsOnBreak(rid string, onBreak bool) {
	h.t.Helper()
	for _, c := range h.p.cat.Restaurants {
		if c.ID != rid {
			continue
		}
		for _, chef := range c.Chefs {
			res, b := h.do("POST", "/api/kitchen/"+rid+"/chefs/"+chef.ID+"/break", fmt.Sprintf(`{"onBreak":%t}`, onBreak), nil)
			if res.StatusCode != 200 {
				h.t.Fatalf("break %s: %d %s", chef.ID, res.StatusCode, b)
			}
		}
	}
}

// Cancelling at every cancellable state compensates in every context:
// stock reserved is released (or, once preparation began, recorded as
// waste), the ticket leaves the kitchen and frees its chef, a waiting
// delivery leaves the dispatch queue.
func TestCancellationAtEveryStateCompensates(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end lifecycle")
	}
	_, keyspace := testkit.Redis(t)
	h := startPlatform(t, PlatformConfig{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), RedisURL: testkit.RedisURL(),
		Keyspace: keyspace, TimeScale: 60, Seed: 1})
	defer func() { h.stop() }()
	start := h.stock("pearl")

	// expectStock checks that on-hand dropped by `used` recipes and nothing stays reserved.
	expectStock := func(state string, used int64) {
		t.Helper()
		testkit.Eventually(t, 10*time.Second, func() error {
			now := h.stock("pearl")
			for ing, units := range margheritaMedium {
				want := start[ing].OnHand - used*units
				if now[ing].OnHand != want || now[ing].Reserved != 0 {
					return fmt.Errorf("after cancel in %s: %s on hand %d reserved %d, want on hand %d reserved 0", state, ing, now[ing].OnHand, now[ing].Reserved, want)
				}
			}
			return nil
		})
	}
	expectNoTicket := func(state, id string) {
		t.Helper()
		testkit.Eventually(t, 10*time.Second, func() error {
			d := h.kitchenDisplay("pearl")
			for _, tk := range d.Tickets {
				if tk.OrderID == id && tk.Stage != kitchenapi.StageReady {
					return fmt.Errorf("after cancel in %s the ticket is still %s", state, tk.Stage)
				}
			}
			for _, c := range d.Chefs {
				if c.ActiveTickets != 0 {
					return fmt.Errorf("after cancel in %s chef %s still has %d tickets", state, c.ChefID, c.ActiveTickets)
				}
			}
			return nil
		})
	}

	// Validated: the inventory service is down, so nothing is reserved yet.
	if err := h.p.StopService("inventory"); err != nil {
		t.Fatal(err)
	}
	id := h.placePearl()
	h.waitFor(id, "Validated")
	h.cancel(id)
	if err := h.p.StartService("inventory"); err != nil {
		t.Fatal(err)
	}
	expectStock("Validated", 0)
	expectNoTicket("Validated", id)

	// Queued: every chef is on break.
	h.chefsOnBreak("pearl", true)
	id = h.placePearl()
	h.waitFor(id, "Queued")
	h.cancel(id)
	expectStock("Queued", 0)
	expectNoTicket("Queued", id)
	h.chefsOnBreak("pearl", false)

	// Preparing, Baking, QualityCheck: the ingredients were used: waste.
	used := int64(0)
	for _, state := range []string{"Preparing", "Baking", "QualityCheck"} {
		id = h.placePearl()
		h.waitFor(id, state)
		h.cancel(id)
		used++
		expectStock(state, used)
		expectNoTicket(state, id)
	}

	// ReadyForPickup: every driver is offline, so the order waits in the queue.
	var driverIDs []string
	for _, r := range h.p.cat.Restaurants {
		if r.ID == "pearl" {
			for _, d := range r.Drivers {
				driverIDs = append(driverIDs, d.ID)
				h.setStatus(d.ID, "Offline")
			}
		}
	}
	id = h.placePearl()
	h.waitFor(id, "ReadyForPickup")
	h.cancel(id)
	used++
	expectStock("ReadyForPickup", used)
	testkit.Eventually(t, 10*time.Second, func() error {
		raw, err := h.p.rds.Client.Get(t.Context(), driversapi.QueueKey(keyspace, "pearl")).Bytes()
		if err != nil {
			return err
		}
		var q driversapi.QueueView
		_ = json.Unmarshal(raw, &q)
		if slices.ContainsFunc(q.Waiting, func(w driversapi.WaitingView) bool { return w.OrderID == id }) {
			return fmt.Errorf("cancelled order still waits for a driver")
		}
		return nil
	})
	// Drivers coming back do not pick up the cancelled order.
	for _, d := range driverIDs {
		h.setStatus(d, "Available")
	}
	res, b := h.do("GET", "/api/drivers?restaurantId=pearl&status=Busy", "", nil)
	var busy []driversapi.DriverView
	if err := json.Unmarshal(b, &busy); res.StatusCode != 200 || err != nil || len(busy) != 0 {
		t.Fatalf("busy drivers after the cancellation: %d %s", res.StatusCode, b)
	}
	if got := h.order(id).Status; got != "Cancelled" {
		t.Fatalf("order is %s", got)
	}
}

// Restarting the kitchen mid-bake and the drivers service mid-assignment
// loses nothing: every order still completes, none twice.
func TestServiceRestartsMidFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end lifecycle")
	}
	_, keyspace := testkit.Redis(t)
	h := startPlatform(t, PlatformConfig{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), RedisURL: testkit.RedisURL(),
		Keyspace: keyspace, TimeScale: 600, Seed: 3})
	defer func() { h.stop() }()
	var ids []string
	for i := 0; i < 12; i++ {
		ids = append(ids, h.placePearl())
	}
	// Kitchen restart while an order bakes.
	testkit.Eventually(t, 30*time.Second, func() error {
		for _, id := range ids {
			if h.order(id).Status == "Baking" {
				return nil
			}
		}
		return fmt.Errorf("no order baking yet")
	})
	if err := h.p.Restart("kitchen"); err != nil {
		t.Fatal(err)
	}
	// Drivers restart once assignments are happening.
	testkit.Eventually(t, 30*time.Second, func() error {
		for _, id := range ids {
			if h.order(id).Status == "DriverAssigned" {
				return nil
			}
		}
		return fmt.Errorf("no order assigned yet")
	})
	if err := h.p.Restart("drivers"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go driveDrivers(t, h, []string{"pearl"}, stop, &wg)
	testkit.Eventually(t, 60*time.Second, func() error {
		for _, id := range ids {
			if s := h.order(id).Status; s != "Delivered" {
				return fmt.Errorf("order %s is %s", id, s)
			}
		}
		return nil
	})
	close(stop)
	wg.Wait()
	for _, id := range ids {
		if log := h.orderLog(id); !validDeliveredLog(log) {
			t.Errorf("order %s: %v", id, log)
		}
	}
}
