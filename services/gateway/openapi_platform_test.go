package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/drivers"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/gateway"
	"github.com/awesome-pizza/pizza/services/inventory"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
	"github.com/awesome-pizza/pizza/services/kitchen"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// platformDeps are the connections the services of a test platform share.
type platformDeps struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Redis    *redis.Client
	Keyspace string
	Catalog  *catalog.Catalog
	Log      *slog.Logger
}

// platformService is what the kitchen, inventory and drivers services offer.
type platformService interface {
	Start(ctx context.Context) error
	Stop()
	Ready(ctx context.Context) error
}

// conformanceTimeScale compresses platform time so that an order goes
// from placement to DriverAssigned in well under a second.
const conformanceTimeScale = 3000

// startOtherServices provisions every stream and starts the kitchen (every
// quality check passes), inventory and drivers services, as `pizza dev`
// builds them, and waits until each is ready.
func startOtherServices(t *testing.T, d platformDeps) {
	t.Helper()
	ctx := context.Background()
	if err := eventstore.Provision(ctx, d.JS, eventstore.StreamOptions{}, events.DomainContexts()...); err != nil {
		t.Fatalf("provisioning the streams: %v", err)
	}
	k, err := kitchen.New(kitchen.Config{Keyspace: d.Keyspace, TimeScale: conformanceTimeScale, QCFailureRate: kitchen.NoQCFailures, Seed: 1},
		kitchen.Deps{NC: d.NC, JS: d.JS, Redis: d.Redis, Catalog: d.Catalog, Log: d.Log})
	if err != nil {
		t.Fatal(err)
	}
	// The periodic low-stock check runs every CheckInterval/TimeScale.
	inv, err := inventory.New(inventory.Config{Keyspace: d.Keyspace, TimeScale: conformanceTimeScale, CheckInterval: time.Hour},
		inventory.Deps{NC: d.NC, JS: d.JS, Redis: d.Redis, Catalog: d.Catalog, Log: d.Log})
	if err != nil {
		t.Fatal(err)
	}
	drv, err := drivers.New(drivers.Config{Keyspace: d.Keyspace, TimeScale: conformanceTimeScale},
		drivers.Deps{NC: d.NC, JS: d.JS, Redis: d.Redis, Catalog: d.Catalog, Log: d.Log})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		name string
		svc  platformService
	}{{"inventory", inv}, {"drivers", drv}, {"kitchen", k}} {
		sctx, cancel := context.WithCancel(ctx)
		if err := s.svc.Start(sctx); err != nil {
			cancel()
			t.Fatalf("starting the %s service: %v", s.name, err)
		}
		var once sync.Once
		t.Cleanup(func() { once.Do(func() { cancel(); s.svc.Stop() }) })
		testkit.Eventually(t, 20*time.Second, func() error {
			if err := s.svc.Ready(ctx); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			return nil
		})
	}
}

// TestNewRoutesConformToDocument runs the whole platform (orders, kitchen,
// inventory, drivers and the gateway) and checks the requests and
// responses of the kitchen, inventory, drivers, dashboard, listing and
// override routes against the document, taking an order all the way to
// its delivery.
func TestNewRoutesConformToDocument(t *testing.T) {
	h := startPlatformWith(t, gateway.Config{Heartbeat: 20 * time.Millisecond}, startOtherServices)
	h.awaitGatewayReady(t)

	t.Run("kitchen", func(t *testing.T) {
		r := h.do(t, call{name: "kitchen queue", method: http.MethodGet, path: "/api/kitchen/downtown/queue", want: http.StatusOK})
		d := decodeAs[kitchenapi.KitchenDisplay](t, "kitchen queue", r.body)
		if d.RestaurantID != "downtown" || len(d.Chefs) == 0 {
			t.Errorf("kitchen queue: %s", truncate(r.body))
		}
		r = h.do(t, call{name: "kitchen queue of an unknown restaurant", method: http.MethodGet, path: "/api/kitchen/nowhere/queue", want: http.StatusNotFound})
		expectProblem(t, "kitchen queue of an unknown restaurant", r, problem.TypeNotFound)

		path := "/api/kitchen/pearl/chefs/pearl-chef-1/break"
		r = h.do(t, call{name: "start a break", method: http.MethodPost, path: path, header: withHeader("Idempotency-Key", "break-1"),
			body: []byte(`{"onBreak":true}`), want: http.StatusOK})
		b := decodeAs[kitchenapi.ChefBreakReply](t, "start a break", r.body)
		if !b.OnBreak || b.ChefID != "pearl-chef-1" || b.RestaurantID != "pearl" || b.Replayed {
			t.Errorf("start a break: %+v", b)
		}
		r = h.do(t, call{name: "retried break start", method: http.MethodPost, path: path, header: withHeader("Idempotency-Key", "break-1"),
			body: []byte(`{"onBreak":true}`), want: http.StatusOK})
		if b := decodeAs[kitchenapi.ChefBreakReply](t, "retried break start", r.body); !b.Replayed || !b.OnBreak {
			t.Errorf("retried break start: %+v, want replayed", b)
		}
		r = h.do(t, call{name: "second break start", method: http.MethodPost, path: path, header: jsonHeader,
			body: []byte(`{"onBreak":true}`), want: http.StatusConflict})
		if p := expectProblem(t, "second break start", r, problem.TypeConflict); p.CurrentStatus != kitchenapi.ChefOnBreak {
			t.Errorf("second break start: currentStatus %q, want %s", p.CurrentStatus, kitchenapi.ChefOnBreak)
		}
		r = h.do(t, call{name: "end the break", method: http.MethodPost, path: path, header: jsonHeader,
			body: []byte(`{"onBreak":false}`), want: http.StatusOK})
		if b := decodeAs[kitchenapi.ChefBreakReply](t, "end the break", r.body); b.OnBreak {
			t.Errorf("end the break: %+v", b)
		}
		r = h.do(t, call{name: "end a break that is not running", method: http.MethodPost, path: path, header: jsonHeader,
			body: []byte(`{"onBreak":false}`), want: http.StatusConflict})
		if p := expectProblem(t, "end a break that is not running", r, problem.TypeConflict); p.CurrentStatus != kitchenapi.ChefWorking {
			t.Errorf("end a break that is not running: currentStatus %q, want %s", p.CurrentStatus, kitchenapi.ChefWorking)
		}
		r = h.do(t, call{name: "break of an unknown chef", method: http.MethodPost, path: "/api/kitchen/pearl/chefs/no-such-chef/break",
			header: jsonHeader, body: []byte(`{"onBreak":true}`), want: http.StatusNotFound})
		expectProblem(t, "break of an unknown chef", r, problem.TypeNotFound)
		r = h.do(t, call{name: "break of another restaurant's chef", method: http.MethodPost, path: "/api/kitchen/downtown/chefs/pearl-chef-1/break",
			header: jsonHeader, body: []byte(`{"onBreak":true}`), want: http.StatusNotFound})
		expectProblem(t, "break of another restaurant's chef", r, problem.TypeNotFound)
		r = h.do(t, call{name: "break without onBreak", method: http.MethodPost, path: path, header: jsonHeader,
			body: []byte(`{}`), want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "break without onBreak", r, problem.TypeValidation, "onBreak")
		r = h.do(t, call{name: "break with an unknown field", method: http.MethodPost, path: path, header: jsonHeader,
			body: []byte(`{"onBreak":true,"minutes":15}`), want: http.StatusBadRequest, invalid: true})
		expectProblem(t, "break with an unknown field", r, problem.TypeMalformedRequest, "minutes")
	})

	t.Run("inventory", func(t *testing.T) {
		r := h.do(t, call{name: "stock", method: http.MethodGet, path: "/api/inventory/downtown", want: http.StatusOK})
		before := decodeAs[inventoryapi.StockView](t, "stock", r.body)
		r = h.do(t, call{name: "stock of an unknown restaurant", method: http.MethodGet, path: "/api/inventory/nowhere", want: http.StatusNotFound})
		expectProblem(t, "stock of an unknown restaurant", r, problem.TypeNotFound)

		path := "/api/inventory/downtown/stock"
		restock := []byte(`{"mode":"restock","items":[{"ingredient":"mozzarella","quantity":10}]}`)
		r = h.do(t, call{name: "restock", method: http.MethodPut, path: path, header: withHeader("Idempotency-Key", "restock-1"), body: restock, want: http.StatusOK})
		after := decodeAs[inventoryapi.StockView](t, "restock", r.body)
		if got, want := onHand(after, "mozzarella"), onHand(before, "mozzarella")+10; got < want {
			// Orders placed meanwhile only lower reserved units, never on-hand ones before preparation.
			t.Errorf("restock: mozzarella on hand %d, want at least %d", got, want)
		}
		if r.header.Get("Idempotent-Replayed") != "" {
			t.Error("a first restock is marked Idempotent-Replayed")
		}
		r = h.do(t, call{name: "retried restock", method: http.MethodPut, path: path, header: withHeader("Idempotency-Key", "restock-1"), body: restock, want: http.StatusOK})
		if r.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("retried restock: Idempotent-Replayed = %q, want true", r.header.Get("Idempotent-Replayed"))
		}
		r = h.do(t, call{name: "restock reusing the key", method: http.MethodPut, path: path, header: withHeader("Idempotency-Key", "restock-1"),
			body: []byte(`{"mode":"restock","items":[{"ingredient":"mozzarella","quantity":11}]}`), want: http.StatusUnprocessableEntity})
		expectProblem(t, "restock reusing the key", r, problem.TypeIdempotencyKeyReused)
		r = h.do(t, call{name: "stock take", method: http.MethodPut, path: "/api/inventory/pearl/stock", header: jsonHeader,
			body: []byte(`{"mode":"adjust","reason":"weekly stock take","items":[{"ingredient":"mushrooms","quantity":250}]}`), want: http.StatusOK})
		if got := onHand(decodeAs[inventoryapi.StockView](t, "stock take", r.body), "mushrooms"); got != 250 {
			t.Errorf("stock take: mushrooms on hand %d, want 250", got)
		}
		r = h.do(t, call{name: "negative restock", method: http.MethodPut, path: path, header: jsonHeader,
			body: []byte(`{"mode":"restock","items":[{"ingredient":"mozzarella","quantity":-5}]}`), want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "negative restock", r, problem.TypeValidation, "items[0].quantity")
		r = h.do(t, call{name: "stock take without a reason", method: http.MethodPut, path: path, header: jsonHeader,
			body: []byte(`{"mode":"adjust","items":[{"ingredient":"mozzarella","quantity":100}]}`), want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "stock take without a reason", r, problem.TypeValidation, "reason")
		// The document cannot know the restaurant's ingredients.
		r = h.do(t, call{name: "restock of an unknown ingredient", method: http.MethodPut, path: path, header: jsonHeader,
			body: []byte(`{"mode":"restock","items":[{"ingredient":"truffles","quantity":1}]}`), want: http.StatusUnprocessableEntity})
		expectProblem(t, "restock of an unknown ingredient", r, problem.TypeValidation, "items[0].ingredient")
		r = h.do(t, call{name: "stock update with an unknown field", method: http.MethodPut, path: path, header: jsonHeader,
			body: []byte(`{"mode":"restock","items":[{"ingredient":"mozzarella","quantity":1}],"supplier":"acme"}`), want: http.StatusBadRequest, invalid: true})
		expectProblem(t, "stock update with an unknown field", r, problem.TypeMalformedRequest, "supplier")
		r = h.do(t, call{name: "restock of an unknown restaurant", method: http.MethodPut, path: "/api/inventory/nowhere/stock", header: jsonHeader,
			body: restock, want: http.StatusNotFound})
		expectProblem(t, "restock of an unknown restaurant", r, problem.TypeNotFound)
	})

	t.Run("drivers", func(t *testing.T) {
		r := h.do(t, call{name: "list drivers", method: http.MethodGet, path: "/api/drivers", want: http.StatusOK})
		if all := decodeAs[[]driversapi.DriverView](t, "list drivers", r.body); len(all) < 9 {
			t.Errorf("list drivers: %d drivers, want the catalogue's 9 at least", len(all))
		}
		r = h.do(t, call{name: "list a restaurant's available drivers", method: http.MethodGet, path: "/api/drivers?restaurantId=downtown&status=Available", want: http.StatusOK})
		for _, d := range decodeAs[[]driversapi.DriverView](t, "list a restaurant's available drivers", r.body) {
			if d.RestaurantID != "downtown" || d.Status != driversapi.StatusAvailable {
				t.Errorf("list a restaurant's available drivers: %+v", d)
			}
		}
		r = h.do(t, call{name: "list drivers in an unknown status", method: http.MethodGet, path: "/api/drivers?status=Sleeping",
			want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "list drivers in an unknown status", r, problem.TypeValidation, "status")
		r = h.do(t, call{name: "list the drivers of an unknown restaurant", method: http.MethodGet, path: "/api/drivers?restaurantId=nowhere",
			want: http.StatusUnprocessableEntity})
		expectProblem(t, "list the drivers of an unknown restaurant", r, problem.TypeValidation, "restaurantId")
		r = h.do(t, call{name: "get a driver", method: http.MethodGet, path: "/api/drivers/downtown-driver-1", want: http.StatusOK})
		if d := decodeAs[driversapi.DriverView](t, "get a driver", r.body); d.DriverID != "downtown-driver-1" {
			t.Errorf("get a driver: %+v", d)
		}
		r = h.do(t, call{name: "get an unknown driver", method: http.MethodGet, path: "/api/drivers/no-such-driver", want: http.StatusNotFound})
		expectProblem(t, "get an unknown driver", r, problem.TypeNotFound)

		// Registered with pearl, where no order is placed: dispatch leaves them alone.
		reg := []byte(`{"name":"Alex Rivera","restaurantId":"pearl","vehicle":"bike"}`)
		r = h.do(t, call{name: "register a driver", method: http.MethodPost, path: "/api/drivers", header: withHeader("Idempotency-Key", "register-1"), body: reg, want: http.StatusCreated})
		alex := decodeAs[driversapi.DriverView](t, "register a driver", r.body)
		if alex.DriverID == "" || alex.Status != driversapi.StatusOffline || alex.Location != nil || r.header.Get("Idempotent-Replayed") != "" {
			t.Errorf("register a driver: %+v (Idempotent-Replayed %q)", alex, r.header.Get("Idempotent-Replayed"))
		}
		r = h.do(t, call{name: "retried registration", method: http.MethodPost, path: "/api/drivers", header: withHeader("Idempotency-Key", "register-1"), body: reg, want: http.StatusCreated})
		if d := decodeAs[driversapi.DriverView](t, "retried registration", r.body); d.DriverID != alex.DriverID || r.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("retried registration: driver %s (want %s), Idempotent-Replayed %q", d.DriverID, alex.DriverID, r.header.Get("Idempotent-Replayed"))
		}
		named := []byte(`{"driverId":"conformance-driver-1","name":"Sam Lee","restaurantId":"pearl","vehicle":"car"}`)
		h.do(t, call{name: "register a driver with an id", method: http.MethodPost, path: "/api/drivers", header: jsonHeader, body: named, want: http.StatusCreated})
		r = h.do(t, call{name: "register the same id again", method: http.MethodPost, path: "/api/drivers", header: jsonHeader, body: named, want: http.StatusConflict})
		expectProblem(t, "register the same id again", r, problem.TypeConflict)
		r = h.do(t, call{name: "register with an unknown vehicle", method: http.MethodPost, path: "/api/drivers", header: jsonHeader,
			body: []byte(`{"name":"Kim","restaurantId":"pearl","vehicle":"rocket"}`), want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "register with an unknown vehicle", r, problem.TypeValidation, "vehicle")
		r = h.do(t, call{name: "register with an unknown restaurant", method: http.MethodPost, path: "/api/drivers", header: jsonHeader,
			body: []byte(`{"name":"Kim","restaurantId":"nowhere","vehicle":"car"}`), want: http.StatusUnprocessableEntity})
		expectProblem(t, "register with an unknown restaurant", r, problem.TypeValidation, "restaurantId")

		// The driver's stream: a fresh client gets the retry hint and the
		// driver; one resuming at the current version gets heartbeats only.
		streamPath := "/api/drivers/" + alex.DriverID + "/stream"
		fresh := h.openSSE(t, "driver stream", streamPath, nil)
		if f := fresh.frame(t); f.retry != "2000" {
			t.Errorf("driver stream: first frame %+v, want retry: 2000", f)
		}
		if d := h.nextDriver(t, fresh); d.DriverID != alex.DriverID || d.Status != driversapi.StatusOffline {
			t.Errorf("driver stream: first snapshot %+v, want %s Offline", d, alex.DriverID)
		}
		resumed := h.openSSE(t, "driver stream resumed at the current version", streamPath,
			map[string]string{"Last-Event-ID": strconv.FormatUint(alex.Version, 10)})
		resumed.heartbeatBeforeAnyOrder(t)
		r = h.do(t, call{name: "stream of an unknown driver", method: http.MethodGet, path: "/api/drivers/no-such-driver/stream", want: http.StatusNotFound})
		expectProblem(t, "stream of an unknown driver", r, problem.TypeNotFound)

		statusPath := "/api/drivers/" + alex.DriverID + "/status"
		r = h.do(t, call{name: "set a driver available", method: http.MethodPut, path: statusPath, header: jsonHeader,
			body: []byte(`{"status":"Available"}`), want: http.StatusOK})
		available := decodeAs[driversapi.DriverView](t, "set a driver available", r.body)
		if available.Status != driversapi.StatusAvailable {
			t.Errorf("set a driver available: %+v", available)
		}
		// The change reaches both streams, without a reload.
		for _, s := range []*sseStream{fresh, resumed} {
			if d := h.nextDriver(t, s); d.Status != driversapi.StatusAvailable || d.Version != available.Version {
				t.Errorf("%s: snapshot after the status change %+v, want Available at version %d", s.name, d, available.Version)
			}
		}
		r = h.do(t, call{name: "set a driver busy by hand", method: http.MethodPut, path: statusPath, header: jsonHeader,
			body: []byte(`{"status":"Busy"}`), want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "set a driver busy by hand", r, problem.TypeValidation, "status")
		r = h.do(t, call{name: "status of an unknown driver", method: http.MethodPut, path: "/api/drivers/no-such-driver/status", header: jsonHeader,
			body: []byte(`{"status":"Available"}`), want: http.StatusNotFound})
		expectProblem(t, "status of an unknown driver", r, problem.TypeNotFound)

		locPath := "/api/drivers/" + alex.DriverID + "/location"
		r = h.do(t, call{name: "report a location", method: http.MethodPost, path: locPath, header: jsonHeader,
			body: []byte(`{"latitude":45.5231,"longitude":-122.6765,"speedKmh":18,"heading":90,"accuracyM":8}`), want: http.StatusOK})
		if p := decodeAs[driversapi.PositionView](t, "report a location", r.body); p.DriverID != alex.DriverID || p.Latitude != 45.5231 || p.SpeedKmh == nil {
			t.Errorf("report a location: %+v", p)
		}
		r = h.do(t, call{name: "report a location without optional values", method: http.MethodPost, path: locPath, header: jsonHeader,
			body: []byte(`{"latitude":45.524,"longitude":-122.677}`), want: http.StatusOK})
		if p := decodeAs[driversapi.PositionView](t, "report a location without optional values", r.body); p.SpeedKmh != nil || p.Heading != nil {
			t.Errorf("report a location without optional values: %+v", p)
		}
		// The fixes reach the driver's stream as position frames (the
		// newest one at least: quick fixes may be folded).
		if p := h.nextPosition(t, fresh, func(p driversapi.PositionView) bool { return p.Latitude == 45.524 }); p.DriverID != alex.DriverID {
			t.Errorf("driver stream: position %+v", p)
		}
		r = h.do(t, call{name: "driver with a location", method: http.MethodGet, path: "/api/drivers/" + alex.DriverID, want: http.StatusOK})
		if d := decodeAs[driversapi.DriverView](t, "driver with a location", r.body); d.Location == nil || d.Location.Latitude != 45.524 {
			t.Errorf("driver with a location: %+v", d.Location)
		}
		r = h.do(t, call{name: "location out of range", method: http.MethodPost, path: locPath, header: jsonHeader,
			body: []byte(`{"latitude":91,"longitude":0}`), want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "location out of range", r, problem.TypeValidation, "latitude")
		stale := time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339)
		r = h.do(t, call{name: "location too old", method: http.MethodPost, path: locPath, header: jsonHeader,
			body: []byte(`{"latitude":45.52,"longitude":-122.68,"timestamp":"` + stale + `"}`), want: http.StatusUnprocessableEntity})
		expectProblem(t, "location too old", r, problem.TypeValidation, "timestamp")
		r = h.do(t, call{name: "location of an unknown driver", method: http.MethodPost, path: "/api/drivers/no-such-driver/location", header: jsonHeader,
			body: []byte(`{"latitude":45.52,"longitude":-122.68}`), want: http.StatusNotFound})
		expectProblem(t, "location of an unknown driver", r, problem.TypeNotFound)
	})

	var delivered orderDoc
	t.Run("delivery", func(t *testing.T) {
		ks := h.openSSE(t, "kitchen stream during an order", "/api/kitchen/downtown/stream", nil)
		// Every downtown chef on break: the order's ticket waits in the queue.
		chefs := []string{"downtown-chef-1", "downtown-chef-2", "downtown-chef-3"}
		for _, c := range chefs {
			h.do(t, call{name: "break for " + c, method: http.MethodPost, path: "/api/kitchen/downtown/chefs/" + c + "/break", header: jsonHeader,
				body: []byte(`{"onBreak":true}`), want: http.StatusOK})
		}
		// Every downtown driver's stream, to see the assignment arrive live.
		driverStreams := map[string]*sseStream{}
		for _, id := range []string{"downtown-driver-1", "downtown-driver-2", "downtown-driver-3"} {
			s := h.openSSE(t, "stream of "+id, "/api/drivers/"+id+"/stream", nil)
			h.nextDriver(t, s)
			driverStreams[id] = s
		}
		placed := h.placeOrder(t, "customer-delivery")
		testkit.Eventually(t, 30*time.Second, func() error {
			resp, err := h.srv.Client().Get(h.srv.URL + "/api/kitchen/downtown/queue")
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if !strings.Contains(string(b), placed.OrderID) {
				return fmt.Errorf("order %s not on the kitchen display yet", placed.OrderID)
			}
			return nil
		})
		r := h.do(t, call{name: "kitchen queue with a waiting ticket", method: http.MethodGet, path: "/api/kitchen/downtown/queue", want: http.StatusOK})
		if tk, ok := ticketOf(decodeAs[kitchenapi.KitchenDisplay](t, "kitchen queue with a waiting ticket", r.body), placed.OrderID); !ok || tk.Stage != kitchenapi.StageQueued || tk.QueuePosition < 1 {
			t.Errorf("kitchen queue with a waiting ticket: %+v", tk)
		}
		r = h.do(t, call{name: "dashboard with a waiting ticket", method: http.MethodGet, path: "/api/dashboard/downtown", want: http.StatusOK})
		if d := decodeAs[gateway.DashboardView](t, "dashboard with a waiting ticket", r.body); d.Kitchen.ChefsOnBreak != len(chefs) || d.Kitchen.Tickets.Queued < 1 {
			t.Errorf("dashboard with a waiting ticket: kitchen %+v", d.Kitchen)
		}
		for _, c := range chefs {
			h.do(t, call{name: "end of break for " + c, method: http.MethodPost, path: "/api/kitchen/downtown/chefs/" + c + "/break", header: jsonHeader,
				body: []byte(`{"onBreak":false}`), want: http.StatusOK})
		}
		// Follow the ticket on the live display until it is ready: every frame conforms.
		seen := map[string]bool{}
		for !seen[kitchenapi.StageReady] {
			f := h.nextSnapshot(t, ks, "kitchen", "KitchenDisplay")
			d := decodeAs[kitchenapi.KitchenDisplay](t, "kitchen stream during an order", []byte(f.data))
			if f.id != strconv.FormatUint(d.Version, 10) {
				t.Errorf("kitchen stream during an order: frame id %q for version %d", f.id, d.Version)
			}
			if tk, ok := ticketOf(d, placed.OrderID); ok {
				seen[tk.Stage] = true
			}
		}
		t.Logf("stages of the ticket seen on the kitchen stream: %v", seen)

		o := h.awaitStatus(t, placed.OrderID, "DriverAssigned")
		if o.AssignedDriverID == nil {
			t.Fatalf("order %s is DriverAssigned without a driver", o.OrderID)
		}
		driver := *o.AssignedDriverID
		other := "downtown-driver-1"
		if driver == other {
			other = "downtown-driver-2"
		}
		orderBody := []byte(`{"orderId":"` + o.OrderID + `"}`)
		driverPath := "/api/drivers/" + driver

		testkit.Eventually(t, 10*time.Second, func() error {
			resp, err := h.srv.Client().Get(h.srv.URL + driverPath)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			var d driversapi.DriverView
			if err := json.Unmarshal(b, &d); err != nil || d.CurrentOrderID == nil || *d.CurrentOrderID != o.OrderID {
				return fmt.Errorf("driver %s does not show order %s yet: %s", driver, o.OrderID, b)
			}
			return nil
		})
		ds := driverStreams[driver]
		if ds == nil {
			t.Fatalf("order assigned to %s, not a catalogue driver of downtown", driver)
		}
		if d := h.awaitDriver(t, ds, func(d driversapi.DriverView) bool { return d.CurrentOrderID != nil }); *d.CurrentOrderID != o.OrderID || d.Status != driversapi.StatusBusy || d.CurrentDelivery == nil {
			t.Errorf("driver stream: the assignment shows as %+v", d)
		}
		r = h.do(t, call{name: "assigned driver", method: http.MethodGet, path: driverPath, want: http.StatusOK})
		if d := decodeAs[driversapi.DriverView](t, "assigned driver", r.body); d.Status != driversapi.StatusBusy || d.CurrentDelivery == nil || d.CurrentDelivery.PickedUpAt != nil {
			t.Errorf("assigned driver: %+v", d)
		}

		r = h.do(t, call{name: "deliver before pickup", method: http.MethodPost, path: driverPath + "/deliver", header: jsonHeader, body: orderBody, want: http.StatusConflict})
		if p := expectProblem(t, "deliver before pickup", r, problem.TypeInvalidTransition); p.CurrentStatus != driversapi.StatusBusy {
			t.Errorf("deliver before pickup: currentStatus %q, want Busy", p.CurrentStatus)
		}
		r = h.do(t, call{name: "pickup by another driver", method: http.MethodPost, path: "/api/drivers/" + other + "/pickup", header: jsonHeader, body: orderBody, want: http.StatusConflict})
		expectProblem(t, "pickup by another driver", r, problem.TypeInvalidTransition)
		r = h.do(t, call{name: "status change while holding an order", method: http.MethodPut, path: driverPath + "/status", header: jsonHeader,
			body: []byte(`{"status":"OnBreak"}`), want: http.StatusConflict})
		if p := expectProblem(t, "status change while holding an order", r, problem.TypeInvalidTransition); p.CurrentStatus != driversapi.StatusBusy {
			t.Errorf("status change while holding an order: currentStatus %q, want Busy", p.CurrentStatus)
		}
		r = h.do(t, call{name: "pickup without an order id", method: http.MethodPost, path: driverPath + "/pickup", header: jsonHeader,
			body: []byte(`{}`), want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "pickup without an order id", r, problem.TypeValidation, "orderId")
		r = h.do(t, call{name: "pickup by an unknown driver", method: http.MethodPost, path: "/api/drivers/no-such-driver/pickup", header: jsonHeader, body: orderBody, want: http.StatusNotFound})
		expectProblem(t, "pickup by an unknown driver", r, problem.TypeNotFound)

		assignPath := "/api/orders/" + o.OrderID + "/assign-driver"
		r = h.do(t, call{name: "assign an order already assigned", method: http.MethodPost, path: assignPath, header: jsonHeader,
			body: []byte(`{"driverId":"` + other + `"}`), want: http.StatusConflict})
		expectProblem(t, "assign an order already assigned", r, problem.TypeInvalidTransition)
		r = h.do(t, call{name: "assign an unknown driver", method: http.MethodPost, path: assignPath, header: jsonHeader,
			body: []byte(`{"driverId":"no-such-driver"}`), want: http.StatusNotFound})
		expectProblem(t, "assign an unknown driver", r, problem.TypeNotFound)
		r = h.do(t, call{name: "assign an order dispatch does not know", method: http.MethodPost, path: "/api/orders/0195c7f4-0000-7000-8000-000000000000/assign-driver",
			header: jsonHeader, body: []byte(`{"driverId":"` + other + `"}`), want: http.StatusNotFound})
		expectProblem(t, "assign an order dispatch does not know", r, problem.TypeNotFound)
		r = h.do(t, call{name: "assign another restaurant's driver", method: http.MethodPost, path: assignPath, header: jsonHeader,
			body: []byte(`{"driverId":"pearl-driver-1"}`), want: http.StatusUnprocessableEntity})
		expectProblem(t, "assign another restaurant's driver", r, problem.TypeValidation, "driverId")

		r = h.do(t, call{name: "pickup", method: http.MethodPost, path: driverPath + "/pickup", header: jsonHeader, body: orderBody, want: http.StatusOK})
		d := decodeAs[driversapi.DriverView](t, "pickup", r.body)
		if d.CurrentDelivery == nil || d.CurrentDelivery.OrderID != o.OrderID || d.CurrentDelivery.PickedUpAt == nil || d.CurrentDelivery.EstimatedDeliveryAt == nil {
			t.Errorf("pickup: current delivery %+v", d.CurrentDelivery)
		}
		r = h.do(t, call{name: "second pickup", method: http.MethodPost, path: driverPath + "/pickup", header: jsonHeader, body: orderBody, want: http.StatusConflict})
		expectProblem(t, "second pickup", r, problem.TypeInvalidTransition)
		if d := h.awaitDriver(t, ds, func(d driversapi.DriverView) bool {
			return d.CurrentDelivery == nil || d.CurrentDelivery.PickedUpAt != nil
		}); d.CurrentDelivery == nil {
			t.Errorf("driver stream: the delivery vanished before it was picked up: %+v", d)
		}
		h.awaitStatus(t, o.OrderID, "OutForDelivery")

		r = h.do(t, call{name: "deliver", method: http.MethodPost, path: driverPath + "/deliver", header: jsonHeader, body: orderBody, want: http.StatusOK})
		if d := decodeAs[driversapi.DriverView](t, "deliver", r.body); d.DeliveriesCompleted < 1 || (d.CurrentOrderID != nil && *d.CurrentOrderID == o.OrderID) {
			t.Errorf("deliver: %+v", d)
		}
		if d := h.awaitDriver(t, ds, func(d driversapi.DriverView) bool { return d.CurrentOrderID == nil }); d.Status != driversapi.StatusAvailable || d.DeliveriesCompleted < 1 {
			t.Errorf("driver stream: after the delivery %+v", d)
		}
		final := h.awaitStatus(t, o.OrderID, "Delivered")
		delivered = orderDoc{OrderID: final.OrderID, Status: final.Status, Version: final.Version}
		h.do(t, call{name: "get the delivered order", method: http.MethodGet, path: "/api/orders/" + o.OrderID, want: http.StatusOK})
	})

	t.Run("listing", func(t *testing.T) {
		if delivered.OrderID == "" {
			t.Skip("no order was delivered")
		}
		r := h.do(t, call{name: "list orders", method: http.MethodGet, path: "/api/restaurants/downtown/orders", want: http.StatusOK})
		if p := decodeAs[orderPageDoc](t, "list orders", r.body); !slices.ContainsFunc(p.Orders, func(o ordersapi.OrderView) bool { return o.OrderID == delivered.OrderID }) {
			t.Errorf("list orders: the delivered order is missing: %s", truncate(r.body))
		}
		r = h.do(t, call{name: "list delivered orders", method: http.MethodGet, path: "/api/restaurants/downtown/orders?status=Delivered", want: http.StatusOK})
		for _, o := range decodeAs[orderPageDoc](t, "list delivered orders", r.body).Orders {
			if o.Status != "Delivered" {
				t.Errorf("list delivered orders: order %s is %s", o.OrderID, o.Status)
			}
		}
		// Two orders at least: page through them one by one.
		h.placeOrder(t, "customer-listing")
		r = h.do(t, call{name: "first page", method: http.MethodGet, path: "/api/restaurants/downtown/orders?limit=1", want: http.StatusOK})
		first := decodeAs[orderPageDoc](t, "first page", r.body)
		if len(first.Orders) != 1 || first.NextCursor == "" {
			t.Fatalf("first page: %s", truncate(r.body))
		}
		r = h.do(t, call{name: "next page", method: http.MethodGet, path: "/api/restaurants/downtown/orders?limit=1&cursor=" + first.NextCursor, want: http.StatusOK})
		if next := decodeAs[orderPageDoc](t, "next page", r.body); len(next.Orders) != 1 || next.Orders[0].OrderID == first.Orders[0].OrderID {
			t.Errorf("next page: %s after %s", truncate(r.body), first.Orders[0].OrderID)
		}
		r = h.do(t, call{name: "list orders in an unknown status", method: http.MethodGet, path: "/api/restaurants/downtown/orders?status=Eaten",
			want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "list orders in an unknown status", r, problem.TypeValidation, "status")
		r = h.do(t, call{name: "list orders with a bad cursor", method: http.MethodGet, path: "/api/restaurants/downtown/orders?cursor=page-2",
			want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "list orders with a bad cursor", r, problem.TypeValidation, "cursor")
		r = h.do(t, call{name: "list orders with a limit too large", method: http.MethodGet, path: "/api/restaurants/downtown/orders?limit=101",
			want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "list orders with a limit too large", r, problem.TypeValidation, "limit")
		r = h.do(t, call{name: "list the orders of an unknown restaurant", method: http.MethodGet, path: "/api/restaurants/nowhere/orders", want: http.StatusNotFound})
		expectProblem(t, "list the orders of an unknown restaurant", r, problem.TypeNotFound)
	})

	t.Run("status override", func(t *testing.T) {
		o := h.placeOrder(t, "customer-override")
		path := "/api/orders/" + o.OrderID + "/status"
		force := []byte(`{"status":"Failed","reason":"oven broke down"}`)
		r := h.do(t, call{name: "force Failed", method: http.MethodPut, path: path, header: withHeader("Idempotency-Key", "override-1"),
			body: force, want: http.StatusOK})
		failed := decodeAs[ordersapi.OrderView](t, "force Failed", r.body)
		if failed.Status != "Failed" || failed.FailureReason != "oven broke down" {
			t.Errorf("force Failed: status %s, failure reason %q", failed.Status, failed.FailureReason)
		}
		// A retry with the same key is answered, not refused.
		r = h.do(t, call{name: "retried override", method: http.MethodPut, path: path, header: withHeader("Idempotency-Key", "override-1"),
			body: force, want: http.StatusOK})
		if again := decodeAs[ordersapi.OrderView](t, "retried override", r.body); again.Status != "Failed" || again.Version < failed.Version {
			t.Errorf("retried override: status %s, version %d after %d", again.Status, again.Version, failed.Version)
		}
		r = h.do(t, call{name: "force Cancelled after Failed", method: http.MethodPut, path: path, header: jsonHeader,
			body: []byte(`{"status":"Cancelled"}`), want: http.StatusConflict})
		if p := expectProblem(t, "force Cancelled after Failed", r, problem.TypeInvalidTransition); p.CurrentStatus != "Failed" {
			t.Errorf("force Cancelled after Failed: currentStatus %q, want Failed", p.CurrentStatus)
		}
		r = h.do(t, call{name: "force Created", method: http.MethodPut, path: path, header: jsonHeader,
			body: []byte(`{"status":"Created"}`), want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "force Created", r, problem.TypeValidation, "status")
		r = h.do(t, call{name: "override with an unknown field", method: http.MethodPut, path: path, header: jsonHeader,
			body: []byte(`{"status":"Failed","by":"me"}`), want: http.StatusBadRequest, invalid: true})
		expectProblem(t, "override with an unknown field", r, problem.TypeMalformedRequest, "by")
		r = h.do(t, call{name: "override reason too long", method: http.MethodPut, path: path, header: jsonHeader,
			body: []byte(`{"status":"Failed","reason":"` + strings.Repeat("r", 501) + `"}`), want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "override reason too long", r, problem.TypeValidation, "reason")
		r = h.do(t, call{name: "override of an unknown order", method: http.MethodPut, path: "/api/orders/0195c7f4-0000-7000-8000-000000000000/status",
			header: jsonHeader, body: []byte(`{"status":"Failed","reason":"x"}`), want: http.StatusNotFound})
		expectProblem(t, "override of an unknown order", r, problem.TypeNotFound)
	})

	t.Run("dashboard", func(t *testing.T) {
		r := h.do(t, call{name: "dashboard", method: http.MethodGet, path: "/api/dashboard/downtown", want: http.StatusOK})
		d := decodeAs[gateway.DashboardView](t, "dashboard", r.body)
		if d.RestaurantID != "downtown" || d.Kitchen.ChefsTotal == 0 || d.Drivers.Total == 0 {
			t.Errorf("dashboard: %s", truncate(r.body))
		}
		if delivered.OrderID != "" && d.Orders.OrdersByStatus["Delivered"] < 1 {
			t.Errorf("dashboard: no delivered order counted: %+v", d.Orders)
		}
		r = h.do(t, call{name: "dashboard of an unknown restaurant", method: http.MethodGet, path: "/api/dashboard/nowhere", want: http.StatusNotFound})
		expectProblem(t, "dashboard of an unknown restaurant", r, problem.TypeNotFound)
	})

	t.Run("streams", func(t *testing.T) {
		k := h.openSSE(t, "kitchen stream", "/api/kitchen/downtown/stream", nil)
		if f := k.frame(t); f.retry != "2000" {
			t.Errorf("kitchen stream: first frame %+v, want retry: 2000", f)
		}
		f := h.nextSnapshot(t, k, "kitchen", "KitchenDisplay")
		display := decodeAs[kitchenapi.KitchenDisplay](t, "kitchen stream", []byte(f.data))
		if !f.hasID || f.id != strconv.FormatUint(display.Version, 10) || display.RestaurantID != "downtown" {
			t.Errorf("kitchen stream: frame id %q for display version %d of %s", f.id, display.Version, display.RestaurantID)
		}

		d := h.openSSE(t, "dashboard stream", "/api/dashboard/downtown/stream", nil)
		if f := d.frame(t); f.retry != "2000" {
			t.Errorf("dashboard stream: first frame %+v, want retry: 2000", f)
		}
		f = h.nextSnapshot(t, d, "dashboard", "Dashboard")
		dash := decodeAs[gateway.DashboardView](t, "dashboard stream", []byte(f.data))
		if !f.hasID || f.id != dash.Version || dash.Version == "" {
			t.Errorf("dashboard stream: frame id %q for dashboard version %q", f.id, dash.Version)
		}

		r := h.do(t, call{name: "kitchen stream of an unknown restaurant", method: http.MethodGet, path: "/api/kitchen/nowhere/stream", want: http.StatusNotFound})
		expectProblem(t, "kitchen stream of an unknown restaurant", r, problem.TypeNotFound)
		r = h.do(t, call{name: "dashboard stream of an unknown restaurant", method: http.MethodGet, path: "/api/dashboard/nowhere/stream", want: http.StatusNotFound})
		expectProblem(t, "dashboard stream of an unknown restaurant", r, problem.TypeNotFound)

		// The positions of pearl's drivers (a registered one reported fixes
		// above) follow the dashboard, then move with the drivers.
		ps := h.openSSE(t, "pearl dashboard stream", "/api/dashboard/pearl/stream", nil)
		h.nextSnapshot(t, ps, "dashboard", "Dashboard")
		first := h.nextPositions(t, ps)
		if first.RestaurantID != "pearl" || len(first.Positions) == 0 {
			t.Fatalf("pearl dashboard stream: positions %+v, want the registered driver's", first)
		}
		mover := first.Positions[0]
		for _, lat := range []float64{45.530, 45.531, 45.532} {
			h.do(t, call{name: "move a pearl driver", method: http.MethodPost, path: "/api/drivers/" + mover.DriverID + "/location", header: jsonHeader,
				body: []byte(fmt.Sprintf(`{"latitude":%v,"longitude":-122.68}`, lat)), want: http.StatusOK})
		}
		start := time.Now()
		for {
			p := h.nextPositions(t, ps)
			i := slices.IndexFunc(p.Positions, func(v driversapi.PositionView) bool { return v.DriverID == mover.DriverID })
			if i >= 0 && p.Positions[i].Latitude == 45.532 {
				t.Logf("the last of 3 fixes reached the dashboard stream in %v", time.Since(start))
				break
			}
		}
	})
}

type orderPageDoc struct {
	Orders     []ordersapi.OrderView `json:"orders"`
	NextCursor string                `json:"nextCursor"`
}

func decodeAs[T any](t *testing.T, name string, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: decoding %T: %v: %s", name, v, err, truncate(body))
	}
	return v
}

func ticketOf(d kitchenapi.KitchenDisplay, orderID string) (kitchenapi.TicketView, bool) {
	for _, tk := range d.Tickets {
		if tk.OrderID == orderID {
			return tk, true
		}
	}
	return kitchenapi.TicketView{}, false
}

func onHand(s inventoryapi.StockView, ingredient string) int64 {
	for _, it := range s.Items {
		if it.Ingredient == ingredient {
			return it.OnHand
		}
	}
	return -1
}

// awaitGatewayReady polls /readyz until the gateway is ready.
func (h *harness) awaitGatewayReady(t *testing.T) {
	t.Helper()
	testkit.Eventually(t, 20*time.Second, func() error {
		resp, err := h.srv.Client().Get(h.srv.URL + "/readyz")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", resp.StatusCode, b)
		}
		return nil
	})
}

// awaitStatus polls the order until it is in status, failing at once if
// it ends in another final status.
func (h *harness) awaitStatus(t *testing.T, orderID, status string) ordersapi.OrderView {
	t.Helper()
	var o ordersapi.OrderView
	testkit.Eventually(t, 30*time.Second, func() error {
		resp, err := h.srv.Client().Get(h.srv.URL + "/api/orders/" + orderID)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("order %s: status %d", orderID, resp.StatusCode)
		}
		o = ordersapi.OrderView{}
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		if o.Status == status {
			return nil
		}
		if slices.Contains(ordersapi.TerminalStatuses, o.Status) {
			t.Fatalf("order %s ended %s (%s) while waiting for %s", orderID, o.Status, o.FailureReason, status)
		}
		return fmt.Errorf("order %s is %s, waiting for %s", orderID, o.Status, status)
	})
	return o
}

// nextSnapshot skips comments and hints up to the next frame, which must
// be of the given event, and checks its data against the named schema of
// the (tightened) document.
func (h *harness) nextSnapshot(t *testing.T, s *sseStream, event, schema string) sseFrame {
	t.Helper()
	for {
		f := s.frame(t)
		if f.event == "" && f.data == "" {
			continue // a heartbeat comment or the retry hint
		}
		if f.event != event {
			t.Fatalf("%s: frame of event %q, want %s: %+v", s.name, f.event, event, f)
		}
		var v any
		if err := json.Unmarshal([]byte(f.data), &v); err != nil {
			t.Fatalf("%s: data is not JSON: %v: %s", s.name, err, f.data)
		}
		ref := h.doc.Components.Schemas[schema]
		if ref == nil || ref.Value == nil {
			t.Fatalf("%s: the document has no %s schema", s.name, schema)
		}
		if err := ref.Value.VisitJSON(v, openapi3.VisitAsResponse(), openapi3.MultiErrors()); err != nil {
			t.Errorf("%s: data does not conform to the %s schema: %v\n%s", s.name, schema, err, truncate([]byte(f.data)))
		}
		return f
	}
}

// nextEvent skips comments, hints and frames of other events up to the
// next frame of event, and checks its data against the named schema.
func (h *harness) nextEvent(t *testing.T, s *sseStream, event, schema string) sseFrame {
	t.Helper()
	for {
		f := s.frame(t)
		if f.event != event {
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(f.data), &v); err != nil {
			t.Fatalf("%s: data is not JSON: %v: %s", s.name, err, f.data)
		}
		if err := h.doc.Components.Schemas[schema].Value.VisitJSON(v, openapi3.VisitAsResponse(), openapi3.MultiErrors()); err != nil {
			t.Errorf("%s: data does not conform to the %s schema: %v\n%s", s.name, schema, err, truncate([]byte(f.data)))
		}
		return f
	}
}

// nextDriver reads the next driver snapshot of a driver stream and checks
// that its id is the driver's version.
func (h *harness) nextDriver(t *testing.T, s *sseStream) driversapi.DriverView {
	t.Helper()
	f := h.nextEvent(t, s, "driver", "Driver")
	d := decodeAs[driversapi.DriverView](t, s.name, []byte(f.data))
	if !f.hasID || f.id != strconv.FormatUint(d.Version, 10) {
		t.Errorf("%s: frame id %q for driver version %d", s.name, f.id, d.Version)
	}
	return d
}

// awaitDriver reads driver snapshots until one satisfies ok; versions
// only grow on the way.
func (h *harness) awaitDriver(t *testing.T, s *sseStream, ok func(driversapi.DriverView) bool) driversapi.DriverView {
	t.Helper()
	var last uint64
	for {
		d := h.nextDriver(t, s)
		if d.Version <= last {
			t.Errorf("%s: version %d after %d", s.name, d.Version, last)
		}
		last = d.Version
		if ok(d) {
			return d
		}
	}
}

// nextPosition reads a driver stream's position frames until one satisfies ok.
func (h *harness) nextPosition(t *testing.T, s *sseStream, ok func(driversapi.PositionView) bool) driversapi.PositionView {
	t.Helper()
	for {
		f := h.nextEvent(t, s, "position", "DriverPosition")
		if f.hasID {
			t.Errorf("%s: a position frame has an id (%q)", s.name, f.id)
		}
		if p := decodeAs[driversapi.PositionView](t, s.name, []byte(f.data)); ok(p) {
			return p
		}
	}
}

// nextPositions reads the next positions frame of a dashboard stream.
func (h *harness) nextPositions(t *testing.T, s *sseStream) gateway.DriverPositions {
	t.Helper()
	f := h.nextEvent(t, s, "positions", "DriverPositions")
	if f.hasID {
		t.Errorf("%s: a positions frame has an id (%q)", s.name, f.id)
	}
	return decodeAs[gateway.DriverPositions](t, s.name, []byte(f.data))
}
