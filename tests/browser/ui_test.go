package browser

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPagesWorkOffline loads every page with the network cut off from
// everything but the gateway: each page gets its data and its live stream,
// asks nothing of any other host, and logs no error (a CSP violation, an
// exception or a failed load would be one). The pages carry the security
// headers.
func TestPagesWorkOffline(t *testing.T) {
	p := startPlatform(t)
	dir := artifacts(t)
	browser := newBrowser(t)

	pages := []struct {
		name, path, token, live string
	}{
		{"index", "/", p.token(t, "manager", "manager-downtown", "downtown"), `document.querySelectorAll('.card').length >= 3 && document.querySelectorAll('.driver-links li').length >= 3`},
		{"order", "/order?restaurant=downtown", p.token(t, "customer", "web-offline", ""), `document.querySelectorAll('[data-pizza]').length > 0 && document.getElementById('pick-map').dataset.restaurants === '3'`},
		{"kitchen", "/kitchen?restaurant=downtown", p.token(t, "kitchen", "kitchen-downtown", "downtown"), `document.getElementById('live').dataset.state === 'live' && document.querySelectorAll('.chef').length === 3`},
		{"dashboard", "/dashboard?restaurant=downtown", p.token(t, "manager", "manager-downtown", "downtown"), `document.getElementById('live').dataset.state === 'live' && document.querySelectorAll('.tile').length > 0 && document.querySelectorAll('#drivers li').length === 3`},
		{"driver", "/driver?driver=downtown-driver-1", p.token(t, "driver", "downtown-driver-1", ""), `document.getElementById('driver-name').textContent !== 'Driver' && document.getElementById('status-buttons').children.length === 4`},
	}
	for _, pg := range pages {
		t.Run(pg.name, func(t *testing.T) {
			tb := p.openTab(t, browser, pg.name, pg.token)
			tb.navigate(pg.path)
			tb.ready()
			tb.waitFor("the page to show its live data", pg.live, 20*time.Second)
			tb.screenshot(dir, "page-"+pg.name+".png")
			tb.assertOffline()

			res, err := http.Get(p.base + pg.path)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			h := res.Header
			if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}

	// Assets: their types, the same security headers, and revalidation.
	for path, ctype := range map[string]string{"/ui/style.css": "text/css", "/ui/order.js": "text/javascript", "/ui/favicon.svg": "image/svg+xml"} {
		res, err := http.Get(p.base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || !strings.HasPrefix(got, ctype) {
			t.Errorf("GET %s: %d %q, want 200 %s", path, res.StatusCode, got, ctype)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: security headers missing: %v", path, res.Header)
		}
		req, _ := http.NewRequest(http.MethodGet, p.base+path, nil)
		req.Header.Set("If-None-Match", res.Header.Get("ETag"))
		again, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		again.Body.Close()
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", path, again.StatusCode)
		}
	}

	// The cut-off is real: a page that tries to leave the gateway fails and
	// is recorded.
	canary := p.openTab(t, browser, "canary", "")
	canary.navigate("/")
	canary.ready()
	blocked := eval[string](canary, `fetch('http://example.com/tile.png').then(() => 'reached', () => 'blocked')`)
	if blocked != "blocked" {
		t.Errorf("a request to example.com was %s", blocked)
	}
	if err := chromedpNavigate(canary, "http://tiles.example.org/0/0/0.png"); err == nil {
		t.Error("navigating away from the gateway succeeded")
	}
	canary.mu.Lock()
	foreign := slices.Clone(canary.foreign)
	canary.mu.Unlock()
	if !slices.ContainsFunc(foreign, func(u string) bool { return strings.Contains(u, "tiles.example.org") }) {
		t.Errorf("the request to tiles.example.org was not cut off: %v", foreign)
	}
}

type trackState struct {
	Status string `json:"status"`
	Lat    string `json:"lat"`
	Lon    string `json:"lon"`
	Fixes  int    `json:"fixes"`
	ETA    bool   `json:"eta"`
	Done   int    `json:"done"`
}

type ticketState struct {
	Stage  string `json:"stage"`
	Stages string `json:"stages"`
}

const readTrack = `(() => {
  const m = document.getElementById('track-map').dataset;
  return { status: document.getElementById('order-status').dataset.status || '', lat: m.driverLat || '', lon: m.driverLon || '',
    fixes: Number(m.driverFixes || 0), eta: !!document.getElementById('eta-time'),
    done: document.querySelectorAll('#timeline li.done').length };
})()`

const readTiles = `Object.fromEntries([...document.querySelectorAll('.tile')].map(t => [t.dataset.metric, Number(t.dataset.value)]))`

// TestOrderFromBrowserToDoor places an order in the customer page with the
// simulator running and follows it to Delivered, while the kitchen display
// shows its ticket going through the stages, the dashboard's counters move,
// and the driver's marker moves on the map.
func TestOrderFromBrowserToDoor(t *testing.T) {
	p := startPlatform(t)
	dir := artifacts(t)
	browser := newBrowser(t)

	kitchen := p.openTab(t, browser, "kitchen", p.token(t, "kitchen", "kitchen-downtown", "downtown"))
	kitchen.navigate("/kitchen?restaurant=downtown")
	kitchen.ready()
	dashboard := p.openTab(t, browser, "dashboard", p.token(t, "manager", "manager-downtown", "downtown"))
	dashboard.navigate("/dashboard?restaurant=downtown")
	dashboard.ready()
	tilesBefore := eval[map[string]float64](dashboard, readTiles)
	versionBefore := eval[string](dashboard, `document.getElementById('dash-version').textContent`)

	customer := p.openTab(t, browser, "customer", p.token(t, "customer", "web-customer-1", ""))
	customer.navigate("/order?restaurant=downtown")
	customer.ready()
	// An extra-large pizza stays longest in each kitchen stage.
	customer.choose(`[data-pizza="Margherita"] select.size`, "ExtraLarge")
	customer.click(`[data-pizza="Margherita"] button.add`)
	customer.waitFor("the cart to hold the pizza", `document.querySelectorAll('#cart li').length === 1 && !document.getElementById('place').disabled`, 5*time.Second)
	if street := eval[string](customer, `document.getElementById('street').value`); street == "" {
		t.Fatal("the street is not filled in from the map")
	}
	customer.screenshot(dir, "order-menu.png")
	customer.click(`#place`)
	customer.waitFor("the tracking view", `!document.getElementById('tracking').hidden && !!document.getElementById('order-id').dataset.orderId`, 15*time.Second)
	orderID := eval[string](customer, `document.getElementById('order-id').dataset.orderId`)
	t.Logf("order %s", orderID)
	if !strings.Contains(eval[string](customer, `location.search`), orderID) {
		t.Error("the page's address does not name the order (a reload would lose it)")
	}

	readTicket := fmt.Sprintf(`(() => { const el = document.querySelector('.ticket[data-order-id=%q]'); return el ? { stage: el.dataset.stage, stages: el.dataset.stages } : null })()`, orderID)
	positions := map[string]bool{}
	stagesSeen := map[string]bool{}
	var last trackState
	etaSeen, kitchenShot, trackShot := false, false, false
	deadline := time.Now().Add(90 * time.Second)
	for {
		last = eval[trackState](customer, readTrack)
		if last.Lat != "" {
			positions[last.Lat+","+last.Lon] = true
		}
		etaSeen = etaSeen || last.ETA
		if tk := eval[*ticketState](kitchen, readTicket); tk != nil {
			stagesSeen[tk.Stage] = true
			for _, s := range strings.Split(tk.Stages, ",") {
				stagesSeen[s] = true
			}
			if !kitchenShot && (tk.Stage == "Preparing" || tk.Stage == "Baking") {
				kitchen.screenshot(dir, "kitchen-display.png")
				kitchenShot = true
			}
		}
		if !trackShot && last.Status == "OutForDelivery" && len(positions) >= 2 {
			customer.screenshot(dir, "order-tracking-on-the-way.png")
			trackShot = true
		}
		if last.Status == "Delivered" {
			break
		}
		if last.Status == "Cancelled" || last.Status == "Failed" {
			t.Fatalf("the order ended %s", last.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the order is %q after 90s (customer page problems: %v)", last.Status, customer.problemList())
		}
		timer := time.NewTimer(80 * time.Millisecond)
		<-timer.C
	}
	customer.screenshot(dir, "order-delivered.png")
	customer.viewport(390, 844, true)
	customer.screenshot(dir, "order-delivered-phone.png")

	t.Logf("the driver's marker took %d positions (%d fixes); the kitchen showed the ticket in %v", len(positions), last.Fixes, keys(stagesSeen))
	// The timeline shows every step done.
	if last.Done < 10 {
		t.Errorf("the timeline shows %d steps done, want every step of the way", last.Done)
	}
	// The driver's marker moved along the way.
	if len(positions) < 2 || last.Fixes < 2 {
		t.Errorf("the driver's marker showed %d positions (%d fixes), want it to move", len(positions), last.Fixes)
	}
	if !etaSeen {
		t.Error("no arrival time was shown while the order was on its way")
	}
	// The kitchen display showed the ticket moving through the stages.
	var seen []string
	for _, s := range []string{"Queued", "Preparing", "Baking", "QualityCheck", "Ready"} {
		if stagesSeen[s] {
			seen = append(seen, s)
		}
	}
	if len(seen) < 3 || !stagesSeen["Ready"] || !(stagesSeen["Preparing"] || stagesSeen["Baking"]) {
		t.Errorf("the kitchen display showed the ticket in %v, want it to move through the stages to Ready", seen)
	}
	if !kitchenShot {
		kitchen.screenshot(dir, "kitchen-display.png")
	}
	// The dashboard's counters moved (the delivered count includes ours).
	dashboard.waitFor("the delivered counter to grow", fmt.Sprintf(`Number(document.querySelector('.tile[data-metric="delivered"]').dataset.value) > %v`, tilesBefore["delivered"]), 20*time.Second)
	if v := eval[string](dashboard, `document.getElementById('dash-version').textContent`); v == versionBefore {
		t.Errorf("the dashboard's version is still %s", v)
	}
	dashboard.waitFor("our order in the recent orders", fmt.Sprintf(`!!document.querySelector('#recent tr[data-order-id=%q]')`, orderID), 10*time.Second)
	dashboard.screenshot(dir, "dashboard.png")
	kitchen.viewport(1024, 768, false)
	kitchen.screenshot(dir, "kitchen-display-tablet.png")
	for _, tb := range []*tab{customer, kitchen, dashboard} {
		tb.assertOffline()
	}
}

// TestDriverViewAndManualDispatch drives a driver of a restaurant the
// simulator leaves alone: with every driver on a break the order waits;
// the dashboard lists it for manual dispatch and reports a refused
// assignment; the driver comes back from the break in the driver view,
// gets the order, and confirms the pickup and the delivery with its
// buttons.
func TestDriverViewAndManualDispatch(t *testing.T) {
	p := startPlatform(t)
	dir := artifacts(t)
	browser := newBrowser(t)
	const rid, driver = "hawthorne", "hawthorne-driver-1"
	manager := p.token(t, "manager", "manager-"+rid, rid)
	for _, d := range []string{"hawthorne-driver-1", "hawthorne-driver-2", "hawthorne-driver-3"} {
		if status, body := p.api(t, manager, "PUT", "/api/drivers/"+d+"/status", `{"status":"OnBreak"}`); status != http.StatusOK {
			t.Fatalf("%s on break: %d %s", d, status, body)
		}
	}
	status, body := p.api(t, p.token(t, "customer", "web-customer-2", ""), "POST", "/api/orders", `{"customerId":"web-customer-2","restaurantId":"hawthorne",
		"items":[{"pizzaType":"Pepperoni","size":"Small","quantity":1}],
		"address":{"street":"2100 Irving St","city":"Portland","coordinates":{"latitude":45.5148,"longitude":-122.6225}},"paymentMethod":"Cash"}`)
	if status != http.StatusCreated {
		t.Fatalf("placing the order: %d %s", status, body)
	}
	var placed struct {
		OrderID string `json:"orderId"`
	}
	if err := json.Unmarshal(body, &placed); err != nil {
		t.Fatal(err)
	}

	dashboard := p.openTab(t, browser, "dashboard", manager)
	dashboard.navigate("/dashboard?restaurant=" + rid)
	dashboard.ready()
	dashboard.waitFor("the order to wait for a driver", fmt.Sprintf(`!!document.querySelector('#assign-order option[value=%q]') && document.querySelector('.tile[data-metric="waiting"]').dataset.value === '1'`, placed.OrderID), 30*time.Second)
	dashboard.choose("#assign-order", placed.OrderID)
	dashboard.choose("#assign-driver", driver)
	dashboard.click("#assign-button")
	dashboard.waitFor("the refusal", `document.getElementById('assign-result').dataset.outcome === 'error'`, 10*time.Second)
	if msg := eval[string](dashboard, `document.getElementById('assign-result').textContent`); !strings.Contains(msg, "OnBreak") && !strings.Contains(strings.ToLower(msg), "not available") {
		t.Errorf("the refusal says %q; it should tell that the driver is on a break", msg)
	}
	dashboard.screenshot(dir, "dashboard-manual-dispatch.png")

	view := p.openTab(t, browser, "driver", p.token(t, "driver", driver, ""))
	view.navigate("/driver?driver=" + driver)
	view.ready()
	view.waitFor("the driver on a break", `document.getElementById('driver-status').dataset.status === 'OnBreak'`, 10*time.Second)
	view.click(`#status-buttons button[data-status="Available"]`)
	view.waitFor("the waiting order to be assigned", fmt.Sprintf(`document.getElementById('delivery').dataset.orderId === %q && !document.getElementById('pickup').disabled`, placed.OrderID), 15*time.Second)
	view.waitFor("the driver's marker", `!!document.getElementById('map').dataset.destination`, 10*time.Second)
	view.screenshot(dir, "driver-assigned.png")
	view.click("#pickup")
	view.waitFor("the pickup", `document.getElementById('pickup').disabled && !document.getElementById('deliver').disabled`, 15*time.Second)
	view.waitFor("the order on its way", `['PickedUp', 'OutForDelivery'].includes((document.getElementById('delivery-order-status') || {dataset: {}}).dataset.status)`, 15*time.Second)
	view.screenshot(dir, "driver-picked-up.png")
	view.click("#deliver")
	view.waitFor("the delivery", `document.getElementById('delivery').dataset.orderId === '' && document.getElementById('driver-status').dataset.status === 'Available'`, 15*time.Second)
	view.screenshot(dir, "driver-delivered.png")

	var order struct {
		Status           string  `json:"status"`
		AssignedDriverID *string `json:"assignedDriverId"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, body := p.api(t, manager, "GET", "/api/orders/"+placed.OrderID, "")
		if status == http.StatusOK && json.Unmarshal(body, &order) == nil && order.Status == "Delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the order is %d %s, want Delivered", status, body)
		}
		timer := time.NewTimer(100 * time.Millisecond)
		<-timer.C
	}
	if order.AssignedDriverID == nil || *order.AssignedDriverID != driver {
		t.Errorf("delivered by %v, want %s", order.AssignedDriverID, driver)
	}
	dashboard.waitFor("the driver available again on the dashboard", fmt.Sprintf(`(document.querySelector('#drivers li[data-driver-id=%q]') || {dataset: {}}).dataset.status === 'Available'`, driver), 15*time.Second)
}

// TestPageAsksForAToken: without a token the API refuses the kitchen
// display, the page offers to paste one, and with it the display goes live.
func TestPageAsksForAToken(t *testing.T) {
	p := startPlatform(t)
	browser := newBrowser(t)
	tb := p.openTab(t, browser, "kitchen-signin", "")
	tb.navigate("/kitchen?restaurant=pearl")
	tb.waitFor("the token box", `!!document.getElementById('signin') && !!document.getElementById('token-input')`, 15*time.Second)
	token := p.token(t, "kitchen", "kitchen-pearl", "pearl")
	eval[bool](tb, fmt.Sprintf(`(() => { document.getElementById('token-input').value = %q; return true })()`, token))
	tb.click(`#signin button[type="submit"]`)
	tb.waitFor("the live display", `document.getElementById('live').dataset.state === 'live' && document.querySelectorAll('.chef').length === 3 && !document.getElementById('signin')`, 20*time.Second)
	if who := eval[string](tb, `document.querySelector('.who').textContent`); !strings.Contains(who, "kitchen-pearl") {
		t.Errorf("the top bar shows %q, want the token's subject", who)
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
