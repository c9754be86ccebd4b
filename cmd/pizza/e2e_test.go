package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/gateway/auth"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats.go/jetstream"
)

const orderBody = `{"customerId":"cust-42","restaurantId":"downtown","items":[{"pizzaType":"Pepperoni","size":"Medium","toppings":["Olives"],"quantity":1},{"pizzaType":"Margherita","size":"Small","quantity":2}],
"address":{"street":"742 Evergreen Terrace","city":"Portland","state":"OR","zipCode":"97201","coordinates":{"latitude":45.52,"longitude":-122.67}},"paymentMethod":"DigitalWallet"}`

type harness struct {
	t      *testing.T
	cfg    PlatformConfig
	p      *Platform
	base   string
	client *http.Client
	token  string // sent as the bearer unless a request sets its own
}

func startPlatform(t *testing.T, cfg PlatformConfig) *harness {
	t.Helper()
	if cfg.RateLimit == 0 {
		cfg.RateLimit = 1e6 // tests drive the API far harder than a person
	}
	h := &harness{t: t, cfg: cfg, client: &http.Client{Timeout: 10 * time.Second}}
	h.start()
	return h
}

func (h *harness) start() {
	h.t.Helper()
	h.p = &Platform{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if err := h.p.Start(ctx, h.cfg, log); err != nil {
		h.t.Fatalf("platform start: %v", err)
	}
	h.base = h.p.HTTPURL()
	if h.p.keys != nil {
		tok, err := h.p.keys.Mint(auth.Principal{Subject: "test-operator", Role: auth.RoleOperator}, time.Hour)
		if err != nil {
			h.t.Fatal(err)
		}
		h.token = tok
	}
}

func (h *harness) stop() { h.p.Stop() }

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (h *harness) do(method, path, body string, hdr map[string]string) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.base+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return res, b
}

func count(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

func (h *harness) streamMessages() uint64 {
	h.t.Helper()
	js, _ := jetstream.New(h.p.nc)
	st, err := js.Stream(context.Background(), events.Orders.Stream)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Msgs
}

type sseEvent struct {
	id    uint64
	name  string
	order ordersapi.OrderView
}

// openTrack opens the tracking stream and returns its events as they come.
func (h *harness) openTrack(ctx context.Context, orderID string, lastEventID string) (<-chan sseEvent, *http.Response) {
	h.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.base+"/api/orders/"+orderID+"/track", nil)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	ch := make(chan sseEvent, 16)
	go func() {
		defer close(ch)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var ev sseEvent
		var data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.id, _ = strconv.ParseUint(strings.TrimPrefix(line, "id: "), 10, 64)
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			case line == "" && data != "":
				if err := json.Unmarshal([]byte(data), &ev.order); err != nil {
					return
				}
				ch <- ev
				ev, data = sseEvent{}, ""
			}
		}
	}()
	return ch, res
}

func next(t *testing.T, ch <-chan sseEvent, within time.Duration) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("stream closed")
		}
		return ev
	case <-time.After(within):
		t.Fatalf("no SSE event within %v", within)
	}
	return sseEvent{}
}

func TestPlatformEndToEnd(t *testing.T) {
	rdb, keyspace := testkit.Redis(t)
	cfg := PlatformConfig{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), RedisURL: testkit.RedisURL(), Keyspace: keyspace, TimeScale: 1}
	h := startPlatform(t, cfg)
	defer func() { h.stop() }()

	// Place → 201 → immediate GET 200 with the same order.
	res, body := h.do("POST", "/api/orders", orderBody, map[string]string{"Idempotency-Key": "e2e-1"})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("place: %d %s", res.StatusCode, body)
	}
	var placed ordersapi.OrderView
	if err := json.Unmarshal(body, &placed); err != nil {
		t.Fatal(err)
	}
	if placed.Status != "Validated" || placed.TotalCents != (1499+150)+2*999 || res.Header.Get("Location") != "/api/orders/"+placed.OrderID {
		t.Fatalf("placed order %+v (location %q)", placed, res.Header.Get("Location"))
	}
	res, body = h.do("GET", "/api/orders/"+placed.OrderID, "", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("read-your-writes GET: %d %s", res.StatusCode, body)
	}
	var got ordersapi.OrderView
	_ = json.Unmarshal(body, &got)
	// Read-your-writes: at least the placement's version (the kitchen may
	// already have moved the order on).
	if got.OrderID != placed.OrderID || got.Version < placed.Version {
		t.Fatalf("GET returned %+v, want version %d or later", got, placed.Version)
	}

	// The same Idempotency-Key and body: the same order and response, no new event.
	res, again := h.do("POST", "/api/orders", orderBody, map[string]string{"Idempotency-Key": "e2e-1"})
	if res.StatusCode != http.StatusCreated || res.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %v %s", res.StatusCode, res.Header, again)
	}
	var replay ordersapi.OrderView
	_ = json.Unmarshal(again, &replay)
	first, _ := json.Marshal(placed)
	second, _ := json.Marshal(replay)
	if !bytes.Equal(first, second) {
		t.Fatalf("replayed response differs:\n%s\n%s", first, second)
	}
	if n := count(h.orderLog(placed.OrderID), "order_placed"); n != 1 {
		t.Fatalf("order placed %d times after a replay", n)
	}
	// Same key, other body → 422, nothing appended.
	before := h.streamMessages()
	res, body = h.do("POST", "/api/orders", strings.Replace(orderBody, `"quantity":2`, `"quantity":3`, 1), map[string]string{"Idempotency-Key": "e2e-1"})
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(body), ordersapi.TypeIdempotencyKeyReused) {
		t.Fatalf("reused key: %d %s", res.StatusCode, body)
	}

	// Bad input: precise problems, nothing appended.
	bad := []struct {
		name, body, field string
		status            int
	}{
		{"malformed", `{"customerId":`, "", 400},
		{"unknown field", `{"customerId":"c","priceCents":1}`, "priceCents", 400},
		{"unknown restaurant", strings.Replace(orderBody, `"downtown"`, `"atlantis"`, 1), "restaurantId", 422},
		{"unknown pizza", strings.Replace(orderBody, `"Pepperoni"`, `"Calzone"`, 1), "items[0].pizzaType", 422},
		{"bad size", strings.Replace(orderBody, `"Medium"`, `"Gigantic"`, 1), "items[0].size", 422},
		{"zero quantity", strings.Replace(orderBody, `"quantity":1`, `"quantity":0`, 1), "items[0].quantity", 422},
		{"absurd quantity", strings.Replace(orderBody, `"quantity":1`, `"quantity":100000`, 1), "items[0].quantity", 422},
		{"latitude", strings.Replace(orderBody, `45.52`, `123.4`, 1), "address.coordinates.latitude", 422},
		{"unsafe customer", strings.Replace(orderBody, `"cust-42"`, `"cust.*"`, 1), "customerId", 422},
		{"oversized", `{"customerId":"` + strings.Repeat("x", 70<<10) + `"}`, "", 413},
	}
	for _, b := range bad {
		res, body := h.do("POST", "/api/orders", b.body, nil)
		if res.StatusCode != b.status || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s %s", b.name, res.StatusCode, res.Header.Get("Content-Type"), body)
			continue
		}
		var p ordersapi.Problem
		_ = json.Unmarshal(body, &p)
		if b.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != b.field) {
			t.Errorf("%s: problem %+v does not name %s first", b.name, p, b.field)
		}
	}
	if after := h.streamMessages(); after != before {
		t.Fatalf("bad requests appended %d events", after-before)
	}
	if res, _ := h.do("GET", "/api/orders/not.safe", "", nil); res.StatusCode != 404 {
		t.Fatalf("unsafe id: %d", res.StatusCode)
	}

	// SSE: the current snapshot first, then the cancellation.
	ctx, cancel := context.WithCancel(context.Background())
	stream, sres := h.openTrack(ctx, placed.OrderID, "")
	if ct := sres.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("track content type %q", ct)
	}
	// The first snapshot is the order as it is now (the kitchen may already
	// have queued it); every later one is newer.
	snap := next(t, stream, 5*time.Second)
	if snap.name != "order" || snap.id < placed.Version || snap.order.OrderID != placed.OrderID {
		t.Fatalf("first SSE event %+v", snap)
	}
	res, body = h.do("POST", "/api/orders/"+placed.OrderID+"/cancel", `{"reason":"changed my mind"}`, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("cancel: %d %s", res.StatusCode, body)
	}
	change := snap
	for change.order.Status != "Cancelled" {
		ev := next(t, stream, 5*time.Second)
		if ev.id <= change.id {
			t.Fatalf("SSE ids went from %d to %d", change.id, ev.id)
		}
		change = ev
	}
	if change.order.CancellationReason != "changed my mind" {
		t.Fatalf("cancellation event %+v", change)
	}
	cancel()
	// Cancelling again is a 409 that names the current status.
	res, body = h.do("POST", "/api/orders/"+placed.OrderID+"/cancel", "", nil)
	if res.StatusCode != http.StatusConflict || !strings.Contains(string(body), `"currentStatus":"Cancelled"`) {
		t.Fatalf("second cancel: %d %s", res.StatusCode, body)
	}
	// Resuming with the id of the first snapshot: the newer snapshot at once.
	ctx2, cancel2 := context.WithCancel(context.Background())
	resumed, _ := h.openTrack(ctx2, placed.OrderID, strconv.FormatUint(snap.id, 10))
	if ev := next(t, resumed, 5*time.Second); ev.id != change.id || ev.order.Status != "Cancelled" {
		t.Fatalf("resumed stream gave %+v", ev)
	}
	cancel2()

	// Stop, wipe Redis, start again on the same data dir: the order is back.
	h.stop()
	testkit.DeletePrefix(context.Background(), rdb, keyspace)
	h.start()
	res, body = h.do("GET", "/api/orders/"+placed.OrderID, "", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("after restart and Redis wipe: %d %s", res.StatusCode, body)
	}
	_ = json.Unmarshal(body, &got)
	if got.Status != "Cancelled" || got.Version != change.id {
		t.Fatalf("rebuilt order %+v", got)
	}
	if log := h.orderLog(placed.OrderID); log[len(log)-1] != "order_cancelled" || count(log, "order_placed") != 1 {
		t.Fatalf("order log %v", log)
	}
	res, body = h.do("GET", "/readyz", "", nil)
	if res.StatusCode != 200 {
		t.Fatalf("readyz: %d %s", res.StatusCode, body)
	}
}
