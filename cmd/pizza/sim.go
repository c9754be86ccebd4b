package main

// pizza sim: a live demo against a running gateway. Customers place orders
// at a steady rate across the restaurants; every driver of those
// restaurants gets a simulated device that, once the driver holds an
// order, follows the streets to the restaurant and then to the customer,
// reporting its position as it goes and confirming pickup and delivery.
//
// The simulator is an ordinary client of the platform: it uses the
// documented HTTP API and SSE streams only. Positions travel through a
// PositionSink (HTTP today; the MQTT bridge can provide another). Its
// choices (restaurants, pizzas, destinations, routes, speeds) come from
// seeded random sources, so a seed replays the same demo; the ids the
// platform assigns, and the timing of a live system, are of course its own.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/gateway/auth"
)

func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		cfg                       SimConfig
		restaurants, drivers      string
		token, dataDir, jwtSecret string
		caFile                    string
		logFormat, logLevel       string
		seed                      int
	)
	fs := flag.NewFlagSet("pizza sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	service.StringFlag(fs, &cfg.GatewayURL, "gateway-url", "http://localhost:8080", "base URL of the gateway to drive")
	service.FloatFlag(fs, &cfg.Rate, "rate", 4, "customer orders per minute across the restaurants (0: no customers)")
	service.DurationFlag(fs, &cfg.Duration, "duration", 0, "stop after this long (0: run until interrupted)")
	service.FloatFlag(fs, &cfg.TimeScale, "time-scale", 1, "speed of the drivers' movement (60 = sixty times real speed); match the platform's")
	service.IntFlag(fs, &seed, "seed", 0, "seed of every random choice: restaurants, pizzas, destinations, routes (0: random)")
	service.StringFlag(fs, &restaurants, "restaurants", "", "comma-separated restaurant ids to order from and drive for (empty: all)")
	service.StringFlag(fs, &drivers, "drivers", "all", `drivers to simulate: "all" (every driver of those restaurants), "none", or comma-separated ids`)
	service.DurationFlag(fs, &cfg.GPSInterval, "gps-interval", 0, "time between a moving driver's position reports (0: about every 100 m driven, from 0.1 s to 1 s)")
	service.StringFlag(fs, &token, "token", "", "one bearer token for every simulated actor (an operator token); empty: mint per-actor tokens with the platform's key")
	service.StringFlag(fs, &dataDir, "data-dir", ".pizza-data", "data dir of the platform whose development key signs the actors' tokens")
	service.StringFlag(fs, &jwtSecret, "jwt-secret", "", "HMAC secret of the platform's tokens, instead of the development key")
	service.StringFlag(fs, &caFile, "tls-ca", "", "CA certificate (PEM) to trust for an HTTPS gateway, such as the --tls-cert of pizza dev")
	service.StringFlag(fs, &logFormat, "log-format", "text", "log format: text or json")
	service.StringFlag(fs, &logLevel, "log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("pizza sim: unexpected arguments %q", fs.Args())
	}
	cfg.Seed = int64(seed)
	cfg.Restaurants = splitList(restaurants)
	switch strings.TrimSpace(drivers) {
	case "", "all":
	case "none":
		cfg.NoDrivers = true
	default:
		cfg.Drivers = splitList(drivers)
	}
	cfg.Log = service.NewLogger(stderr, logFormat, logLevel)
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--tls-ca: no certificate in %s", caFile)
		}
		cfg.Client = simClient(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	switch {
	case token != "":
		cfg.Tokens = StaticToken(token)
	case jwtSecret != "":
		keys, err := auth.NewKeys([]byte(jwtSecret))
		if err != nil {
			return fmt.Errorf("--jwt-secret: %w", err)
		}
		cfg.Tokens = MintedTokens(keys)
	default:
		// The development key of a platform run in this directory; without
		// one, requests go without tokens (a platform without authentication).
		if st, err := os.Stat(dataDir); err == nil && st.IsDir() {
			keys, err := signingKeys(PlatformConfig{DataDir: dataDir})
			if err != nil {
				return err
			}
			cfg.Tokens = MintedTokens(keys)
		}
	}
	s := New(cfg)
	err := s.Run(ctx)
	st := s.Stats()
	fmt.Fprintf(stdout, "sim: %d orders placed, %d picked up, %d delivered, %d GPS points sent (seed %d)\n",
		st.OrdersPlaced, st.PickupsConfirmed, st.OrdersDelivered, st.GPSPoints, s.Seed())
	return err
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// SimConfig configures a Simulator.
type SimConfig struct {
	// GatewayURL is the base URL of the gateway (http://localhost:8080).
	GatewayURL string
	// Rate is the number of customer orders per minute (wall clock) across
	// the restaurants; 0 places none.
	Rate float64
	// Duration bounds the run; 0 runs until the context ends.
	Duration time.Duration
	// TimeScale speeds up the drivers' movement (default 1, real speed).
	// Use the platform's time scale so that its delivery estimates match.
	TimeScale float64
	// Seed makes every random choice reproducible; 0 takes one from the clock.
	Seed int64
	// Restaurants limits customers and drivers to these restaurants (empty: all).
	Restaurants []string
	// Drivers limits the simulated devices to these drivers (empty: every
	// driver of the restaurants); NoDrivers simulates none.
	Drivers   []string
	NoDrivers bool
	// GPSInterval is the wall time between two position reports of a
	// moving driver (default: about every 100 m driven, from 0.1 s to 1 s).
	GPSInterval time.Duration
	// Tokens supplies the bearer token of each simulated actor: customers
	// as themselves, drivers as themselves, a manager of the restaurants for
	// their dashboard streams. nil sends none (authentication off).
	Tokens TokenSource
	// Positions carries the devices' position fixes (default: HTTP,
	// POST /api/drivers/{id}/location on the gateway, as the driver).
	Positions PositionSink
	// Client is the HTTP client for the API (default: one with a pool
	// sized for the devices).
	Client *http.Client
	Log    *slog.Logger
}

// Fix is one position report of a driver's device.
type Fix struct {
	Latitude  float64
	Longitude float64
	SpeedKmh  float64
	Heading   float64 // degrees clockwise from north, [0, 360)
	AccuracyM float64
	At        time.Time
}

// PositionSink carries a device's position fixes to the platform. The HTTP
// sink posts to the gateway's location fallback; an MQTT sink would publish
// the same fix on pizza/drivers/{driverId}/location (latitude, longitude,
// timestamp, speed, heading, accuracy) and return once it is acknowledged.
type PositionSink interface {
	ReportPosition(ctx context.Context, driverID string, fix Fix) error
}

// HTTPPositions reports positions with POST /api/drivers/{id}/location,
// authenticated as the driver.
type HTTPPositions struct {
	GatewayURL string
	Client     *http.Client
	Tokens     TokenSource
}

// ReportPosition implements PositionSink.
func (h HTTPPositions) ReportPosition(ctx context.Context, driverID string, fix Fix) error {
	a := &simAPI{base: strings.TrimRight(h.GatewayURL, "/"), hc: h.Client, tokens: h.Tokens}
	if a.hc == nil {
		a.hc = http.DefaultClient
	}
	body := map[string]any{
		"latitude": fix.Latitude, "longitude": fix.Longitude, "speedKmh": fix.SpeedKmh,
		"heading": fix.Heading, "accuracyM": fix.AccuracyM, "timestamp": fix.At.UTC().Format(time.RFC3339Nano),
	}
	return a.do(ctx, asDriver(driverID), http.MethodPost, "/api/drivers/"+url.PathEscape(driverID)+"/location", body, "", nil)
}

// TokenSource returns the bearer token an actor of the simulation sends.
type TokenSource func(p auth.Principal) (string, error)

// StaticToken sends one token (an operator's) for every actor.
func StaticToken(token string) TokenSource {
	return func(auth.Principal) (string, error) { return token, nil }
}

// MintedTokens mints each actor its own token with the platform's key, so
// every actor is held to its role's rules and limits, as real clients are.
func MintedTokens(keys *auth.Keys) TokenSource {
	type minted struct {
		token string
		at    time.Time
	}
	var mu sync.Mutex
	cache := map[string]minted{}
	return func(p auth.Principal) (string, error) {
		k := p.Role + "|" + p.Subject + "|" + strings.Join(p.Restaurants, ",")
		mu.Lock()
		defer mu.Unlock()
		if m, ok := cache[k]; ok && time.Since(m.at) < 12*time.Hour {
			return m.token, nil
		}
		tok, err := keys.Mint(p, 24*time.Hour)
		if err != nil {
			return "", err
		}
		cache[k] = minted{tok, time.Now()}
		return tok, nil
	}
}

func asDriver(id string) *auth.Principal { return &auth.Principal{Subject: id, Role: auth.RoleDriver} }

func asCustomer(id string) *auth.Principal {
	return &auth.Principal{Subject: id, Role: auth.RoleCustomer}
}

// SimStats are the simulator's counters.
type SimStats struct {
	OrdersPlaced     int64 // orders the gateway accepted (201)
	OrdersRejected   int64 // orders the gateway refused (4xx), for example when stock runs out
	PickupsConfirmed int64
	OrdersDelivered  int64 // deliveries the simulated drivers confirmed
	GPSPoints        int64 // position fixes the platform accepted
	Errors           int64 // failed requests (network, 5xx, unexpected answers)
}

// Simulator plays customers and drivers against a gateway.
type Simulator struct {
	cfg     SimConfig
	api     *simAPI
	sink    PositionSink
	log     *slog.Logger
	runID   string
	manager *auth.Principal // watches the restaurants' dashboards

	placed, rejected, pickups, delivered, gps, errs atomic.Int64
}

// New returns a simulator; Run starts it.
func New(cfg SimConfig) *Simulator {
	if cfg.GatewayURL == "" {
		cfg.GatewayURL = "http://localhost:8080"
	}
	cfg.GatewayURL = strings.TrimRight(cfg.GatewayURL, "/")
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	if cfg.GPSInterval <= 0 {
		// About 100 m between fixes at a scooter's speed, so the map shows
		// the driver turning corners at any time scale.
		every := time.Duration(100 / (vehicleSpeed("scooter") / 3.6 * cfg.TimeScale) * float64(time.Second))
		cfg.GPSInterval = min(max(every, 100*time.Millisecond), time.Second)
	}
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Client == nil {
		cfg.Client = simClient(nil)
	}
	s := &Simulator{cfg: cfg, api: &simAPI{base: cfg.GatewayURL, hc: cfg.Client, tokens: cfg.Tokens}, log: cfg.Log.With("component", "sim"),
		runID: strconv.FormatInt(time.Now().UnixNano(), 36)}
	s.sink = cfg.Positions
	if s.sink == nil {
		s.sink = HTTPPositions{GatewayURL: cfg.GatewayURL, Client: cfg.Client, Tokens: cfg.Tokens}
	}
	return s
}

// simClient is an HTTP client with a connection pool sized for the devices.
func simClient(tlsConfig *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	if tlsConfig != nil {
		tr.TLSClientConfig = tlsConfig
	}
	return &http.Client{Transport: tr}
}

// Seed is the seed in use (the configured one, or the one drawn).
func (s *Simulator) Seed() int64 { return s.cfg.Seed }

// Stats returns the counters so far.
func (s *Simulator) Stats() SimStats {
	return SimStats{OrdersPlaced: s.placed.Load(), OrdersRejected: s.rejected.Load(), PickupsConfirmed: s.pickups.Load(),
		OrdersDelivered: s.delivered.Load(), GPSPoints: s.gps.Load(), Errors: s.errs.Load()}
}

// OrdersPlaced, OrdersDelivered and GPSPointsSent are the main counters.
func (s *Simulator) OrdersPlaced() int64    { return s.placed.Load() }
func (s *Simulator) OrdersDelivered() int64 { return s.delivered.Load() }
func (s *Simulator) GPSPointsSent() int64   { return s.gps.Load() }

// simRestaurant is a restaurant with its menu, as the API lists them.
type simRestaurant struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Address  string `json:"address"`
	Location geo    `json:"location"`
	menu     simMenu
}

type simMenu struct {
	Sizes  []string `json:"sizes"`
	Pizzas []struct {
		PizzaType string `json:"pizzaType"`
	} `json:"pizzas"`
	Toppings []struct {
		Name string `json:"name"`
	} `json:"toppings"`
}

// Run places orders and drives the drivers until the duration has passed or
// ctx ends; both are a normal end (nil). It fails only when the platform
// cannot be set up against (gateway unreachable, unknown restaurant).
func (s *Simulator) Run(ctx context.Context) error {
	if s.cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.Duration)
		defer cancel()
	}
	if err := s.waitReady(ctx); err != nil {
		return stopped(ctx, err)
	}
	restaurants, err := s.loadRestaurants(ctx)
	if err != nil {
		return stopped(ctx, err)
	}
	s.manager = &auth.Principal{Subject: "sim-manager", Role: auth.RoleManager}
	for _, r := range restaurants {
		s.manager.Restaurants = append(s.manager.Restaurants, r.ID)
	}
	devices, err := s.loadDevices(ctx, restaurants)
	if err != nil {
		return stopped(ctx, err)
	}
	s.log.Info("simulation started", "gateway", s.cfg.GatewayURL, "restaurants", len(restaurants), "drivers", len(devices),
		"rate_per_minute", s.cfg.Rate, "time_scale", s.cfg.TimeScale, "seed", s.cfg.Seed, "duration", s.cfg.Duration)

	var wg sync.WaitGroup
	// One dashboard stream per restaurant wakes its devices: the dashboard's
	// version changes whenever one of its drivers does (an assignment).
	wakers := map[string]*waker{}
	for _, d := range devices {
		w := wakers[d.restaurant.ID]
		if w == nil {
			w = &waker{}
			wakers[d.restaurant.ID] = w
		}
		d.wake = w.subscribe()
	}
	for rid, w := range wakers {
		wg.Go(func() {
			s.api.follow(ctx, s.manager, "/api/dashboard/"+url.PathEscape(rid)+"/stream", false, func(f sseFrame) bool {
				// Only a new dashboard version can mean an assignment; the
				// drivers' position frames (twice a second) cannot.
				if f.event == "dashboard" {
					w.signal()
				}
				return true
			})
			if ctx.Err() == nil {
				// The stream was refused: the simulator's credentials may not
				// read the dashboard. Its drivers look for orders on a timer.
				s.log.Warn("no dashboard stream; the drivers check for assignments every few seconds", "restaurant", rid)
				w.degrade()
			}
		})
	}
	for _, d := range devices {
		wg.Go(func() { d.run(ctx) })
	}
	if s.cfg.Rate > 0 {
		wg.Go(func() { s.customers(ctx, restaurants) })
	}
	<-ctx.Done()
	wg.Wait()
	st := s.Stats()
	s.log.Info("simulation ended", "orders_placed", st.OrdersPlaced, "orders_rejected", st.OrdersRejected, "pickups", st.PickupsConfirmed,
		"delivered", st.OrdersDelivered, "gps_points", st.GPSPoints, "errors", st.Errors)
	return nil
}

// stopped reports err unless the run was merely cut short.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (s *Simulator) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := s.api.do(ctx, nil, http.MethodGet, "/readyz", nil, "", nil)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway %s is not ready: %w", s.cfg.GatewayURL, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (s *Simulator) loadRestaurants(ctx context.Context) ([]*simRestaurant, error) {
	var all []*simRestaurant
	if err := s.api.do(ctx, nil, http.MethodGet, "/api/restaurants", nil, "", &all); err != nil {
		return nil, fmt.Errorf("list restaurants: %w", err)
	}
	var out []*simRestaurant
	for _, r := range all {
		if len(s.cfg.Restaurants) == 0 || slices.Contains(s.cfg.Restaurants, r.ID) {
			out = append(out, r)
		}
	}
	for _, want := range s.cfg.Restaurants {
		if !slices.ContainsFunc(out, func(r *simRestaurant) bool { return r.ID == want }) {
			return nil, fmt.Errorf("no restaurant %q at %s", want, s.cfg.GatewayURL)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the gateway lists no restaurant")
	}
	for _, r := range out {
		if err := s.api.do(ctx, nil, http.MethodGet, "/api/menu/"+url.PathEscape(r.ID), nil, "", &r.menu); err != nil {
			return nil, fmt.Errorf("menu of %s: %w", r.ID, err)
		}
		if len(r.menu.Pizzas) == 0 || len(r.menu.Sizes) == 0 {
			return nil, fmt.Errorf("restaurant %s has an empty menu", r.ID)
		}
	}
	return out, nil
}

func (s *Simulator) loadDevices(ctx context.Context, restaurants []*simRestaurant) ([]*device, error) {
	if s.cfg.NoDrivers {
		return nil, nil
	}
	var drivers []simDriver
	byID := map[string]*simRestaurant{}
	for _, r := range restaurants {
		byID[r.ID] = r
		var list []simDriver
		if err := s.api.do(ctx, s.manager, http.MethodGet, "/api/drivers?restaurantId="+url.QueryEscape(r.ID), nil, "", &list); err != nil {
			var pe *apiError
			if errors.As(err, &pe) && (pe.Status == http.StatusUnauthorized || pe.Status == http.StatusForbidden) {
				return nil, fmt.Errorf("the gateway refused the simulator's credentials (%w): pass --token with an operator token, or the platform's --data-dir or --jwt-secret", err)
			}
			return nil, fmt.Errorf("list the drivers of %s: %w", r.ID, err)
		}
		drivers = append(drivers, list...)
	}
	var out []*device
	for i, d := range drivers {
		r, ok := byID[d.RestaurantID]
		if !ok || (len(s.cfg.Drivers) > 0 && !slices.Contains(s.cfg.Drivers, d.DriverID)) {
			continue
		}
		out = append(out, &device{s: s, id: d.DriverID, vehicle: d.Vehicle, restaurant: r,
			rng: rand.New(rand.NewPCG(uint64(s.cfg.Seed), uint64(i)+1))})
	}
	for _, want := range s.cfg.Drivers {
		if !slices.ContainsFunc(out, func(d *device) bool { return d.id == want }) {
			return nil, fmt.Errorf("driver %q is not registered with the simulated restaurants", want)
		}
	}
	return out, nil
}

// --- customers ---

var simPayments = []string{"CreditCard", "DebitCard", "Cash", "DigitalWallet"}

// plannedOrder is one customer order, chosen before it is sent.
type plannedOrder struct {
	N          int
	Restaurant string
	Customer   string
	Body       map[string]any
	Dropoff    geo
}

// planOrder draws the n-th order. It depends on the random source and the
// restaurants only, so a seed always plans the same orders.
func planOrder(rng *rand.Rand, n int, restaurants []*simRestaurant) plannedOrder {
	r := restaurants[rng.IntN(len(restaurants))]
	var items []map[string]any
	for range 1 + rng.IntN(2) {
		p := r.menu.Pizzas[rng.IntN(len(r.menu.Pizzas))]
		line := map[string]any{"pizzaType": p.PizzaType, "size": r.menu.Sizes[rng.IntN(len(r.menu.Sizes))], "quantity": 1 + rng.IntN(2)}
		if len(r.menu.Toppings) > 0 && rng.IntN(3) == 0 {
			line["toppings"] = []string{r.menu.Toppings[rng.IntN(len(r.menu.Toppings))].Name}
		}
		items = append(items, line)
	}
	dest, street := destinationNear(rng, r.Location)
	city, state := cityOf(r.Address)
	customer := fmt.Sprintf("sim-customer-%d", 1+rng.IntN(500))
	return plannedOrder{N: n, Restaurant: r.ID, Customer: customer, Dropoff: dest, Body: map[string]any{
		"customerId":   customer,
		"restaurantId": r.ID,
		"items":        items,
		"address": map[string]any{"street": street, "city": city, "state": state,
			"coordinates": map[string]float64{"latitude": dest.Latitude, "longitude": dest.Longitude}},
		"paymentMethod": simPayments[rng.IntN(len(simPayments))],
	}}
}

// cityOf takes the city and state from an address like "1 Pioneer Sq, Portland, OR".
func cityOf(address string) (string, string) {
	parts := splitList(address)
	switch {
	case len(parts) >= 3:
		return parts[len(parts)-2], parts[len(parts)-1]
	case len(parts) == 2:
		return parts[1], ""
	default:
		return "Portland", "OR"
	}
}

func (s *Simulator) customers(ctx context.Context, restaurants []*simRestaurant) {
	rng := rand.New(rand.NewPCG(uint64(s.cfg.Seed), 0))
	interval := time.Duration(float64(time.Minute) / s.cfg.Rate)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	defer wg.Wait()
	next := time.Now()
	for n := 1; ; n++ {
		o := planOrder(rng, n, restaurants)
		// Arrivals are spread around the mean interval.
		next = next.Add(time.Duration(float64(interval) * (0.5 + rng.Float64())))
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		select {
		case <-ctx.Done():
			return
		case sem <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-sem }()
			s.place(ctx, o)
		})
	}
}

// place sends an order, retrying with the same Idempotency-Key when the
// answer is lost or the platform is briefly unavailable.
func (s *Simulator) place(ctx context.Context, o plannedOrder) {
	key := fmt.Sprintf("sim-%s-%d", s.runID, o.N)
	var placed struct {
		OrderID string `json:"orderId"`
	}
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			}
		}
		err = s.api.do(ctx, asCustomer(o.Customer), http.MethodPost, "/api/orders", o.Body, key, &placed)
		if err == nil || final(err) || ctx.Err() != nil {
			break
		}
	}
	switch {
	case err == nil:
		s.placed.Add(1)
		s.log.Debug("order placed", "order_id", placed.OrderID, "restaurant", o.Restaurant)
	case ctx.Err() != nil:
	case final(err):
		s.rejected.Add(1)
		s.log.Info("order refused", "restaurant", o.Restaurant, "err", err)
	default:
		s.errs.Add(1)
		s.log.Warn("placing an order failed", "restaurant", o.Restaurant, "err", err)
	}
}

// --- drivers ---

type simDriver struct {
	DriverID        string       `json:"driverId"`
	RestaurantID    string       `json:"restaurantId"`
	Vehicle         string       `json:"vehicle"`
	Status          string       `json:"status"`
	CurrentDelivery *simDelivery `json:"currentDelivery"`
	Location        *geo         `json:"location"`
}

type simDelivery struct {
	OrderID    string     `json:"orderId"`
	Pickup     geo        `json:"pickup"`
	Dropoff    geo        `json:"dropoff"`
	PickedUpAt *time.Time `json:"pickedUpAt"`
}

// device is one driver's phone.
type device struct {
	s          *Simulator
	id         string
	vehicle    string
	restaurant *simRestaurant
	rng        *rand.Rand
	wake       *wakeup
	pos        geo
}

// run waits for an assignment, delivers it, and waits again. The first
// state comes from GET /api/drivers/{id}; afterwards the restaurant's
// stream says when to look again, and the order's stream follows the order.
func (d *device) run(ctx context.Context) {
	view, ok := d.load(ctx)
	for !ok {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		view, ok = d.load(ctx)
	}
	if view.Location != nil {
		d.pos = *view.Location
	} else {
		// Never reported: the driver starts at the restaurant.
		d.pos = d.restaurant.Location
		d.report(ctx, 0, 0)
	}
	for ctx.Err() == nil {
		if view.CurrentDelivery != nil {
			view = d.deliver(ctx, view)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-d.wake.C():
		case <-d.wake.fallback():
		}
		if v, ok := d.load(ctx); ok {
			view = v
		}
	}
}

func (d *device) load(ctx context.Context) (simDriver, bool) {
	var v simDriver
	if err := d.s.api.do(ctx, asDriver(d.id), http.MethodGet, "/api/drivers/"+url.PathEscape(d.id), nil, "", &v); err != nil {
		if ctx.Err() == nil {
			d.s.errs.Add(1)
			d.s.log.Warn("reading the driver failed", "driver_id", d.id, "err", err)
		}
		return v, false
	}
	return v, true
}

// deliver drives to the restaurant (unless the order was already picked
// up), confirms the pickup, drives to the customer and confirms the
// delivery. It returns the driver as the last command left it.
func (d *device) deliver(ctx context.Context, view simDriver) simDriver {
	cd := *view.CurrentDelivery
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	var status atomic.Value
	status.Store("")
	go d.s.api.follow(octx, asDriver(d.id), "/api/orders/"+url.PathEscape(cd.OrderID)+"/track", true, func(f sseFrame) bool {
		if f.event != "order" {
			return true // the driver's own position, echoed back
		}
		var o struct {
			Status string `json:"status"`
		}
		if json.Unmarshal(f.data, &o) == nil && o.Status != "" {
			status.Store(o.Status)
		}
		return o.Status != "Delivered"
	})
	log := d.s.log.With("driver_id", d.id, "order_id", cd.OrderID)
	if cd.PickedUpAt == nil {
		// Cancelled or failed before the pickup: the platform takes the
		// order away from the driver.
		withdrawn := func() bool { s := status.Load().(string); return s == "Cancelled" || s == "Failed" }
		if !d.travel(ctx, cd.Pickup, withdrawn) {
			return d.reload(ctx, view)
		}
		var v simDriver
		if err := d.command(ctx, "pickup", cd.OrderID, &v); err != nil {
			log.Info("pickup refused", "err", err)
			return d.reload(ctx, view)
		}
		d.s.pickups.Add(1)
		log.Debug("picked up")
	}
	if !d.travel(ctx, cd.Dropoff, nil) {
		return view
	}
	var v simDriver
	if err := d.command(ctx, "deliver", cd.OrderID, &v); err != nil {
		log.Info("delivery refused", "err", err)
		return d.reload(ctx, view)
	}
	d.s.delivered.Add(1)
	log.Debug("delivered")
	return v
}

func (d *device) reload(ctx context.Context, old simDriver) simDriver {
	if v, ok := d.load(ctx); ok {
		return v
	}
	old.CurrentDelivery = nil
	return old
}

// command confirms a pickup or a delivery, retrying with the same key.
func (d *device) command(ctx context.Context, verb, orderID string, out *simDriver) error {
	key := fmt.Sprintf("sim-%s-%s-%s-%s", d.s.runID, d.id, verb, orderID)
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 300 * time.Millisecond):
			}
		}
		err = d.s.api.do(ctx, asDriver(d.id), http.MethodPost, "/api/drivers/"+url.PathEscape(d.id)+"/"+verb, map[string]string{"orderId": orderID}, key, out)
		if err == nil || final(err) || ctx.Err() != nil {
			return err
		}
	}
	d.s.errs.Add(1)
	return err
}

// travel moves the device along the streets to dest, reporting a fix
// every GPS interval. It returns false when ctx ends or abort says so.
func (d *device) travel(ctx context.Context, dest geo, abort func() bool) bool {
	path := streetPath(d.pos, dest, d.rng.IntN(2) == 0)
	speed := vehicleSpeed(d.vehicle) * (0.9 + 0.2*d.rng.Float64())
	step := speed / 3.6 * d.s.cfg.TimeScale * d.s.cfg.GPSInterval.Seconds() // metres per fix
	tick := time.NewTicker(d.s.cfg.GPSInterval)
	defer tick.Stop()
	for len(path) > 0 {
		var heading float64
		d.pos, path, heading = advance(d.pos, path, step)
		d.report(ctx, speed, heading)
		if len(path) == 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
		if abort != nil && abort() {
			return false
		}
	}
	return true
}

func (d *device) report(ctx context.Context, speed, heading float64) {
	fix := Fix{Latitude: d.pos.Latitude, Longitude: d.pos.Longitude, SpeedKmh: speed, Heading: heading, AccuracyM: 5, At: time.Now()}
	if err := d.s.sink.ReportPosition(ctx, d.id, fix); err != nil {
		if ctx.Err() == nil {
			d.s.errs.Add(1)
			d.s.log.Warn("position report failed", "driver_id", d.id, "err", err)
		}
		return
	}
	d.s.gps.Add(1)
}

// vehicleSpeed is a vehicle's cruising speed in km/h (the platform's
// defaults for its delivery estimates).
func vehicleSpeed(vehicle string) float64 {
	switch vehicle {
	case "car":
		return 30
	case "bike":
		return 15
	default:
		return 25
	}
}

// waker fans one restaurant's stream out to its devices.
type waker struct {
	mu       sync.Mutex
	subs     []chan struct{}
	degraded atomic.Bool
}

// wakeup is a device's side of a waker.
type wakeup struct {
	w *waker
	c chan struct{}
}

func (w *waker) subscribe() *wakeup {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := make(chan struct{}, 1)
	w.subs = append(w.subs, c)
	return &wakeup{w: w, c: c}
}

func (w *waker) signal() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// degrade switches the devices to a timer, for lack of a stream.
func (w *waker) degrade() {
	w.degraded.Store(true)
	w.signal()
}

// C is signalled when the restaurant changed.
func (u *wakeup) C() <-chan struct{} { return u.c }

// fallback ticks only when the restaurant has no stream.
func (u *wakeup) fallback() <-chan time.Time {
	if !u.w.degraded.Load() {
		return nil
	}
	return time.After(3 * time.Second)
}

// --- the street grid ---
//
// The simulated city is a grid of streets: east-west streets every
// gridLat degrees of latitude, north-south avenues every gridLon degrees of
// longitude (about 200 m each way at Portland's latitude), anchored at 0°,
// so every client draws the same grid. The web UI's map draws it with the
// same constants (services/gateway/web/ui/map.js).

const (
	gridLat      = 0.0018
	gridLon      = 0.0025
	metresPerDeg = 111_320.0
)

type geo struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

func snapLat(lat float64) float64 { return math.Round(lat/gridLat) * gridLat }
func snapLon(lon float64) float64 { return math.Round(lon/gridLon) * gridLon }

// streetPath is a route from a to b along the grid: onto the nearest
// street, along it to b's avenue (or b's street), then to b. Every leg
// runs north-south or east-west. eastWestFirst picks which way it turns.
func streetPath(a, b geo, eastWestFirst bool) []geo {
	var pts []geo
	if eastWestFirst {
		row, col := snapLat(a.Latitude), snapLon(b.Longitude)
		pts = []geo{{row, a.Longitude}, {row, col}, {b.Latitude, col}, b}
	} else {
		col, row := snapLon(a.Longitude), snapLat(b.Latitude)
		pts = []geo{{a.Latitude, col}, {row, col}, {row, b.Longitude}, b}
	}
	out := make([]geo, 0, len(pts))
	prev := a
	for _, p := range pts {
		if distance(prev, p) > 0.01 {
			out = append(out, p)
			prev = p
		}
	}
	if len(out) == 0 {
		out = append(out, b)
	}
	return out
}

// distance in metres (equirectangular; plenty for a city).
func distance(a, b geo) float64 {
	dx, dy := offset(a, b)
	return math.Hypot(dx, dy)
}

// offset is b - a in metres east and north.
func offset(a, b geo) (float64, float64) {
	lat := (a.Latitude + b.Latitude) / 2 * math.Pi / 180
	return (b.Longitude - a.Longitude) * metresPerDeg * math.Cos(lat), (b.Latitude - a.Latitude) * metresPerDeg
}

// advance moves pos up to step metres along path, returning the new
// position, what is left of the path and the heading of the last move.
func advance(pos geo, path []geo, step float64) (geo, []geo, float64) {
	heading := 0.0
	for len(path) > 0 && step > 0 {
		next := path[0]
		dx, dy := offset(pos, next)
		dist := math.Hypot(dx, dy)
		if dist > 0 {
			heading = math.Mod(math.Atan2(dx, dy)*180/math.Pi+360, 360)
		}
		if dist <= step {
			pos, path, step = next, path[1:], step-dist
			continue
		}
		f := step / dist
		pos = geo{pos.Latitude + (next.Latitude-pos.Latitude)*f, pos.Longitude + (next.Longitude-pos.Longitude)*f}
		step = 0
	}
	if heading >= 360 {
		heading = 0
	}
	return pos, path, heading
}

var streetNames = []string{"Alder", "Burnside", "Couch", "Davis", "Everett", "Flanders", "Glisan", "Hoyt", "Irving", "Johnson",
	"Kearney", "Lovejoy", "Marshall", "Northrup", "Overton", "Pettygrove", "Quimby", "Raleigh", "Savier", "Thurman"}

// destinationNear draws a delivery point on a street within about 2 km of
// p (never at p's own crossing) and a street address for it.
func destinationNear(rng *rand.Rand, p geo) (geo, string) {
	row0, col0 := int(math.Round(p.Latitude/gridLat)), int(math.Round(p.Longitude/gridLon))
	dr, dc := rng.IntN(13)-6, rng.IntN(13)-6
	if dr == 0 && dc == 0 {
		dr = 1
	}
	frac := 0.1 + 0.8*rng.Float64()
	row, col := row0+dr, col0+dc
	dest := geo{Latitude: float64(row) * gridLat, Longitude: (float64(col) + frac) * gridLon}
	name := streetNames[((row%len(streetNames))+len(streetNames))%len(streetNames)]
	number := 100*(((col%90)+90)%90+1) + int(frac*98) + 1
	return dest, fmt.Sprintf("%d %s St", number, name)
}

// --- a small client of the gateway ---

type simAPI struct {
	base   string
	hc     *http.Client
	tokens TokenSource
}

// authorize adds the actor's bearer token (none for public routes).
func (a *simAPI) authorize(req *http.Request, as *auth.Principal) error {
	if as == nil || a.tokens == nil {
		return nil
	}
	tok, err := a.tokens(*as)
	if err != nil {
		return fmt.Errorf("token for %s %s: %w", as.Role, as.Subject, err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return nil
}

// apiError is an answer of the gateway other than 2xx (a problem document).
type apiError struct {
	Status        int    `json:"status"`
	Type          string `json:"type"`
	Title         string `json:"title"`
	Detail        string `json:"detail"`
	CurrentStatus string `json:"currentStatus"`
}

// final reports an answer that a retry cannot change: a 4xx other than
// 429 (too many requests).
func final(err error) bool {
	var pe *apiError
	return errors.As(err, &pe) && pe.Status < 500 && pe.Status != http.StatusTooManyRequests
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("%d %s", e.Status, e.Title)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.CurrentStatus != "" {
		msg += " (current status " + e.CurrentStatus + ")"
	}
	return msg
}

func (a *simAPI) do(ctx context.Context, as *auth.Principal, method, path string, body any, key string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if err := a.authorize(req, as); err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	res, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if res.StatusCode >= 300 {
		pe := &apiError{}
		_ = json.Unmarshal(b, pe)
		pe.Status = res.StatusCode
		if pe.Title == "" {
			pe.Title = http.StatusText(res.StatusCode)
		}
		return pe
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
		}
	}
	return nil
}

// sseFrame is one Server-Sent Events message.
type sseFrame struct {
	id, event string
	data      []byte
}

// follow reads an SSE stream as an actor and calls onFrame for every
// message until ctx ends or onFrame returns false, reconnecting after the
// server's retry delay (or Retry-After, when it limits streams) when the
// connection drops. With resume it sends the last id seen (Last-Event-ID);
// without, every reconnection starts with a snapshot. A stream the actor
// may not open, or that does not exist, ends the call.
func (a *simAPI) follow(ctx context.Context, as *auth.Principal, path string, resume bool, onFrame func(sseFrame) bool) {
	retry := 2 * time.Second
	lastID := ""
	for ctx.Err() == nil {
		wait := retry
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
		if err != nil {
			return
		}
		req.Header.Set("Accept", "text/event-stream")
		if err := a.authorize(req, as); err != nil {
			return
		}
		if resume && lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		res, err := a.hc.Do(req)
		if err == nil {
			switch res.StatusCode {
			case http.StatusOK:
				cont := readSSE(res.Body, func(f sseFrame) bool {
					if f.id != "" {
						lastID = f.id
					}
					return onFrame(f)
				}, func(d time.Duration) { retry = d })
				res.Body.Close()
				if !cont {
					return
				}
			case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusGone:
				res.Body.Close()
				return
			default:
				if secs, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && secs > 0 {
					wait = time.Duration(secs) * time.Second
				}
				res.Body.Close()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// readSSE parses an event stream; it returns false when onFrame asked to stop.
func readSSE(r io.Reader, onFrame func(sseFrame) bool, onRetry func(time.Duration)) bool {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var f sseFrame
	var data [][]byte
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if data != nil {
				f.data = bytes.Join(data, []byte("\n"))
				if !onFrame(f) {
					return false
				}
			}
			f, data = sseFrame{}, nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			f.id = value
		case "event":
			f.event = value
		case "data":
			data = append(data, []byte(value))
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms > 0 {
				onRetry(time.Duration(ms) * time.Millisecond)
			}
		}
	}
	return true
}
