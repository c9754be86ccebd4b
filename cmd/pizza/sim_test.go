package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats.go/jetstream"
)

// TestSimulatorDeliversOrdersAndReportsPositions runs the simulator
// against the whole platform for a bounded time: its customers' orders go
// through the kitchen, its drivers follow the streets, and the platform
// shows delivered orders and the drivers' positions.
func TestSimulatorDeliversOrdersAndReportsPositions(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end simulation")
	}
	_, keyspace := testkit.Redis(t)
	cfg := PlatformConfig{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", DataDir: t.TempDir(), RedisURL: testkit.RedisURL(),
		Keyspace: keyspace, TimeScale: 600, QCFailureRate: 0.05, Seed: 5}
	h := startPlatform(t, cfg)
	defer func() { h.stop() }()

	// Every actor authenticates as itself: customers, drivers, a manager.
	var tokens TokenSource
	if h.p.keys != nil {
		tokens = MintedTokens(h.p.keys)
	}
	// The drivers' phones speak MQTT to the bridge, as real ones do.
	creds, err := h.p.mqtt.SeedDemoCredentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	phones := &MQTTPositions{Broker: "tcp://" + h.p.MQTTAddr(), Secret: func(_ context.Context, id string) (string, error) { return creds[id], nil }}
	defer phones.Close()
	sim := New(SimConfig{GatewayURL: h.base, Rate: 240, Duration: 90 * time.Second, TimeScale: 600, Seed: 42, GPSInterval: 40 * time.Millisecond,
		Tokens: tokens, Positions: phones})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx) }()

	testkit.Eventually(t, 80*time.Second, func() error {
		if st := sim.Stats(); st.OrdersDelivered < 6 || st.GPSPoints < 60 {
			return fmt.Errorf("not enough yet: %+v", st)
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	st := sim.Stats()
	t.Logf("simulator: %+v", st)
	if st.OrdersPlaced < st.OrdersDelivered || st.PickupsConfirmed < st.OrdersDelivered {
		t.Errorf("counters disagree: %+v", st)
	}
	if st.Errors > 0 {
		t.Errorf("%d requests failed", st.Errors)
	}

	// The platform saw the deliveries: every restaurant's Delivered orders
	// add up to at least what the simulated drivers confirmed (the orders
	// saga turns the last confirmations into statuses a moment later), and
	// each has a valid lifecycle in the log.
	var delivered []ordersapi.OrderView
	testkit.Eventually(t, 15*time.Second, func() error {
		delivered = delivered[:0]
		for _, r := range h.p.cat.Restaurants {
			res, body := h.do("GET", "/api/restaurants/"+r.ID+"/orders?status=Delivered&limit=100", "", nil)
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("orders of %s: %d %s", r.ID, res.StatusCode, body)
			}
			var page struct {
				Orders []ordersapi.OrderView `json:"orders"`
			}
			if err := json.Unmarshal(body, &page); err != nil {
				return err
			}
			delivered = append(delivered, page.Orders...)
		}
		if int64(len(delivered)) < st.OrdersDelivered {
			return fmt.Errorf("%d orders delivered in the platform, the simulator confirmed %d", len(delivered), st.OrdersDelivered)
		}
		return nil
	})
	for _, o := range delivered {
		if log := h.orderLog(o.OrderID); !validDeliveredLog(log) {
			t.Errorf("order %s: log %v is not a delivered lifecycle", o.OrderID, log)
		}
		if o.AssignedDriverID == nil {
			t.Errorf("order %s was delivered without a driver", o.OrderID)
		}
	}

	// The positions reached the log: TELEMETRY holds driver_location_reported
	// fixes, at least as many as the simulator had accepted.
	js, err := jetstream.New(h.p.nc)
	if err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer tcancel()
	stream, err := js.Stream(tctx, events.Telemetry.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(tctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs < uint64(st.GPSPoints) {
		t.Errorf("TELEMETRY holds %d messages, the simulator sent %d fixes", info.State.Msgs, st.GPSPoints)
	}
	cons, err := stream.OrderedConsumer(tctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.Telemetry.SubjectPrefix + ".drivers.>"}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(20, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		if typ := m.Headers().Get(events.HeaderType); typ != "driver_location_reported" {
			t.Errorf("TELEMETRY message on %s has type %q", m.Subject(), typ)
		}
	}
	if n == 0 {
		t.Error("no position fix in TELEMETRY")
	}

	// Every simulated driver reported at least its starting point, and the
	// drivers API shows it.
	for _, r := range h.p.cat.Restaurants {
		for _, d := range r.Drivers {
			res, body := h.do("GET", "/api/drivers/"+d.ID, "", nil)
			var v struct {
				Location *geo `json:"location"`
			}
			if res.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil || v.Location == nil {
				t.Errorf("driver %s: %d %s, want a location", d.ID, res.StatusCode, body)
			}
		}
	}
}

func TestStreetPathFollowsTheGrid(t *testing.T) {
	onGrid := func(x, step float64) bool { return math.Abs(x/step-math.Round(x/step)) < 1e-6 }
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		a := geo{45.5 + rng.Float64()*0.05, -122.7 + rng.Float64()*0.08}
		b := geo{45.5 + rng.Float64()*0.05, -122.7 + rng.Float64()*0.08}
		path := streetPath(a, b, i%2 == 0)
		if last := path[len(path)-1]; last != b {
			t.Fatalf("path %v does not end at %v", path, b)
		}
		prev := a
		for j, p := range path {
			sameLat, sameLon := math.Abs(p.Latitude-prev.Latitude) < 1e-12, math.Abs(p.Longitude-prev.Longitude) < 1e-12
			if !sameLat && !sameLon {
				t.Fatalf("leg %d of %v → %v is diagonal: %v → %v", j, a, b, prev, p)
			}
			// Between the first and the last leg, the route runs on streets.
			if j > 0 && j < len(path)-1 {
				if sameLat && !onGrid(p.Latitude, gridLat) || sameLon && !onGrid(p.Longitude, gridLon) {
					t.Fatalf("leg %d %v → %v is off the street grid", j, prev, p)
				}
			}
			prev = p
		}
	}
}

func TestAdvanceMovesAlongThePath(t *testing.T) {
	a := geo{45.52, -122.68}
	path := streetPath(a, geo{45.53, -122.66}, true)
	total := 0.0
	prev := a
	for _, p := range path {
		total += distance(prev, p)
		prev = p
	}
	pos, rest, steps := a, path, 0
	for len(rest) > 0 {
		var heading float64
		before := pos
		pos, rest, heading = advance(pos, rest, 100)
		if d := distance(before, pos); d > 100.001 {
			t.Fatalf("a 100 m step moved %.1f m", d)
		}
		if heading < 0 || heading >= 360 {
			t.Fatalf("heading %v", heading)
		}
		steps++
	}
	if want := int(math.Ceil(total / 100)); steps != want {
		t.Errorf("%d steps over %.0f m, want %d", steps, total, want)
	}
	if pos != path[len(path)-1] {
		t.Errorf("ended at %v", pos)
	}
}

// TestPlannedOrdersAreDeterministic: a seed plans the same orders, another
// seed others, and every planned order is valid for its restaurant.
func TestPlannedOrdersAreDeterministic(t *testing.T) {
	cat := catalog.Default()
	var restaurants []*simRestaurant
	for _, r := range cat.Restaurants {
		sr := &simRestaurant{ID: r.ID, Name: r.Name, Address: r.Address, Location: geo{r.Location.Latitude, r.Location.Longitude}}
		pizzas, _ := cat.MenuFor(r.ID)
		sr.menu.Sizes = catalog.Sizes
		for _, p := range pizzas {
			sr.menu.Pizzas = append(sr.menu.Pizzas, struct {
				PizzaType string `json:"pizzaType"`
			}{p.Type})
		}
		for _, tp := range cat.Menu.Toppings {
			sr.menu.Toppings = append(sr.menu.Toppings, struct {
				Name string `json:"name"`
			}{tp.Name})
		}
		restaurants = append(restaurants, sr)
	}
	plan := func(seed uint64) []plannedOrder {
		rng := rand.New(rand.NewPCG(seed, 0))
		var out []plannedOrder
		for n := 1; n <= 50; n++ {
			out = append(out, planOrder(rng, n, restaurants))
		}
		return out
	}
	a, b, c := plan(7), plan(7), plan(8)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed planned different orders")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("two seeds planned the same orders")
	}
	for _, o := range a {
		raw, _ := json.Marshal(o.Body)
		req, err := ordersapi.DecodePlaceOrder(raw)
		if err != nil {
			t.Fatalf("order %d does not decode: %v\n%s", o.N, err, raw)
		}
		if errs := req.Validate(); len(errs) > 0 {
			t.Fatalf("order %d is invalid: %v\n%s", o.N, errs, raw)
		}
		r, _ := cat.Restaurant(o.Restaurant)
		if d := distance(geo{r.Location.Latitude, r.Location.Longitude}, o.Dropoff); d > 3000 || d < 100 {
			t.Errorf("order %d goes %.0f m from its restaurant", o.N, d)
		}
		if math.Abs(o.Dropoff.Latitude/gridLat-math.Round(o.Dropoff.Latitude/gridLat)) > 1e-6 {
			t.Errorf("order %d's destination %v is not on a street", o.N, o.Dropoff)
		}
	}
}
