package browser

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sameDocument marks the page; the mark survives anything but a reload or
// a navigation, so a test can tell that what it saw arrived live.
const (
	markDocument = `(() => { window.__pizzaSameDocument = 'yes'; return true })()`
	sameDocument = `window.__pizzaSameDocument === 'yes'`
	hawthorne    = "hawthorne"
)

// TestDriverPageShowsNewAssignmentLive opens the driver view of an idle,
// available driver with the driver's own token (no staff rights), then
// places an order at the driver's restaurant: the assignment appears in
// the open page with no reload, and so do the pickup and the delivery the
// driver confirms from elsewhere (its phone's API client). The page reads
// the driver only through its stream: it never asks for the driver again.
func TestDriverPageShowsNewAssignmentLive(t *testing.T) {
	p := startPlatform(t)
	dir := artifacts(t)
	browser := newBrowser(t)
	manager := p.token(t, "manager", "manager-"+hawthorne, hawthorne)

	// A driver of our own at hawthorne (the simulator leaves hawthorne
	// alone), the only one available there while the test runs.
	driver := "web-live-" + randomHex(4)
	if status, body := p.api(t, manager, "POST", "/api/drivers",
		fmt.Sprintf(`{"driverId":%q,"name":"Robin Live","restaurantId":%q,"vehicle":"bike"}`, driver, hawthorne)); status != http.StatusCreated {
		t.Fatalf("registering %s: %d %s", driver, status, body)
	}
	restore := p.holdOtherDrivers(t, manager, hawthorne)
	t.Cleanup(func() {
		// Leave hawthorne as we found it: our driver off the road, the
		// others back in their statuses.
		if status, body := p.api(t, manager, "PUT", "/api/drivers/"+driver+"/status", `{"status":"Offline"}`); status != http.StatusOK {
			t.Errorf("%s off duty: %d %s", driver, status, body)
		}
		restore()
	})
	if status, body := p.api(t, manager, "PUT", "/api/drivers/"+driver+"/status", `{"status":"Available"}`); status != http.StatusOK {
		t.Fatalf("%s available: %d %s", driver, status, body)
	}

	token := p.token(t, "driver", driver, "")
	view := p.openTab(t, browser, "driver-live", token)
	view.navigate("/driver?driver=" + driver)
	view.ready()
	view.waitFor("the idle driver, live", `document.getElementById('live').dataset.state === 'live' && document.getElementById('driver-status').dataset.status === 'Available' && document.getElementById('delivery').dataset.orderId === ''`, 15*time.Second)
	eval[bool](view, markDocument)
	view.screenshot(dir, "driver-waiting.png")

	status, body := p.api(t, p.token(t, "customer", "web-customer-live", ""), "POST", "/api/orders", `{"customerId":"web-customer-live","restaurantId":"hawthorne",
		"items":[{"pizzaType":"Margherita","size":"Small","quantity":1}],
		"address":{"street":"1800 Hawthorne Blvd","city":"Portland","coordinates":{"latitude":45.5121,"longitude":-122.6470}},"paymentMethod":"Cash"}`)
	if status != http.StatusCreated {
		t.Fatalf("placing the order: %d %s", status, body)
	}
	var placed struct {
		OrderID string `json:"orderId"`
	}
	if err := json.Unmarshal(body, &placed); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	view.waitFor("the new assignment without a reload", fmt.Sprintf(`%s && document.getElementById('delivery').dataset.orderId === %q && !document.getElementById('pickup').disabled && document.getElementById('driver-status').dataset.status === 'Busy'`, sameDocument, placed.OrderID), 60*time.Second)
	t.Logf("order %s shown as assigned %v after it was placed (kitchen included)", placed.OrderID, time.Since(start).Round(time.Millisecond))
	view.waitFor("the pickup point and drop-off on the map", `!!document.getElementById('map').dataset.destination`, 10*time.Second)
	view.screenshot(dir, "driver-new-assignment.png")

	// The driver confirms from its phone: the page follows.
	order := fmt.Sprintf(`{"orderId":%q}`, placed.OrderID)
	if status, body := p.api(t, token, "POST", "/api/drivers/"+driver+"/pickup", order); status != http.StatusOK {
		t.Fatalf("pickup: %d %s", status, body)
	}
	view.waitFor("the pickup without a reload", sameDocument+` && document.getElementById('pickup').disabled && !document.getElementById('deliver').disabled && document.getElementById('delivery-order-status').dataset.status === 'OutForDelivery'`, 15*time.Second)
	if status, body := p.api(t, token, "POST", "/api/drivers/"+driver+"/deliver", order); status != http.StatusOK {
		t.Fatalf("deliver: %d %s", status, body)
	}
	view.waitFor("the delivery without a reload", sameDocument+` && document.getElementById('delivery').dataset.orderId === '' && document.getElementById('driver-status').dataset.status === 'Available' && document.getElementById('driver-note').dataset.outcome === 'delivered'`, 15*time.Second)
	view.screenshot(dir, "driver-after-delivery.png")

	// Nothing but the stream told the page: no read of the driver, no
	// polling of the restaurant's streams.
	view.mu.Lock()
	requests := append([]string(nil), view.requests...)
	view.mu.Unlock()
	streams := 0
	for _, u := range requests {
		path := strings.TrimPrefix(u, p.base)
		switch {
		case path == "/api/drivers/"+driver:
			t.Errorf("the page read the driver (%s): it must learn from the stream", path)
		case strings.HasPrefix(path, "/api/drivers/"+driver+"/stream"):
			streams++
		case strings.HasPrefix(path, "/api/dashboard/"), strings.HasPrefix(path, "/api/orders/"):
			t.Errorf("the page opened %s: the driver stream alone should carry the driver", path)
		}
	}
	if streams < 1 {
		t.Errorf("the page never opened the driver stream; requests: %v", requests)
	}
	view.assertOffline()
}

// TestDashboardDriverMarkersMove opens a restaurant's dashboard while the
// simulator's drivers deliver there: their markers move with the stream's
// positions frames (the page counts the moves those frames made), without
// a reload.
func TestDashboardDriverMarkersMove(t *testing.T) {
	p := startPlatform(t)
	dir := artifacts(t)
	browser := newBrowser(t)
	dashboard := p.openTab(t, browser, "dashboard-markers", p.token(t, "manager", "manager-downtown", "downtown"))
	dashboard.navigate("/dashboard?restaurant=downtown")
	dashboard.ready()
	dashboard.waitFor("the live dashboard with its drivers", `document.getElementById('live').dataset.state === 'live' && document.querySelectorAll('#drivers li').length >= 3`, 20*time.Second)
	eval[bool](dashboard, markDocument)
	const readMarkers = `(() => ({ streamMoves: Number(document.getElementById('drivers').dataset.streamMoves || 0),
	  moves: Number(document.getElementById('map').dataset.moves || 0),
	  where: Object.fromEntries([...document.querySelectorAll('#drivers li')].map(li => [li.dataset.driverId, (li.dataset.lat || '') + ',' + (li.dataset.lon || '')])) }))()`
	type markers struct {
		StreamMoves int               `json:"streamMoves"`
		Moves       int               `json:"moves"`
		Where       map[string]string `json:"where"`
	}
	before := eval[markers](dashboard, readMarkers)
	start := time.Now()
	dashboard.waitFor("the drivers' markers to move with the stream", fmt.Sprintf(`%s && Number(document.getElementById('drivers').dataset.streamMoves || 0) >= %d`, sameDocument, before.StreamMoves+6), 90*time.Second)
	after := eval[markers](dashboard, readMarkers)
	moved := []string{}
	for id, w := range after.Where {
		if w != "," && w != before.Where[id] {
			moved = append(moved, id)
		}
	}
	t.Logf("in %v the positions frames moved markers %d times (all moves on the map: %d); drivers that moved: %v",
		time.Since(start).Round(time.Millisecond), after.StreamMoves-before.StreamMoves, after.Moves-before.Moves, moved)
	if len(moved) == 0 {
		t.Errorf("no driver's position changed on the dashboard's list: before %v, after %v", before.Where, after.Where)
	}
	dashboard.screenshot(dir, "dashboard-drivers-moving.png")
	dashboard.assertOffline()
}

// holdOtherDrivers puts every driver of the restaurant registered in the
// catalogue on a break, and returns a function that puts each back in
// the status it had.
func (p *platform) holdOtherDrivers(t *testing.T, manager, rid string) (restore func()) {
	t.Helper()
	saved := map[string]string{}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("%s-driver-%d", rid, i)
		status, body := p.api(t, manager, "GET", "/api/drivers/"+id, "")
		var d struct {
			Status string `json:"status"`
		}
		if status != http.StatusOK || json.Unmarshal(body, &d) != nil {
			t.Fatalf("reading %s: %d %s", id, status, body)
		}
		if d.Status == "Busy" {
			t.Fatalf("%s is delivering: the restaurant is not idle", id)
		}
		saved[id] = d.Status
		if status, body := p.api(t, manager, "PUT", "/api/drivers/"+id+"/status", `{"status":"OnBreak"}`); status != http.StatusOK {
			t.Fatalf("%s on break: %d %s", id, status, body)
		}
	}
	return func() {
		for id, s := range saved {
			if status, body := p.api(t, manager, "PUT", "/api/drivers/"+id+"/status", fmt.Sprintf(`{"status":%q}`, s)); status != http.StatusOK {
				t.Errorf("%s back to %s: %d %s", id, s, status, body)
			}
		}
	}
}
