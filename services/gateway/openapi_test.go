package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/gateway"
	"github.com/awesome-pizza/pizza/services/orders"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/redis/go-redis/v9"
)

// loadDocument parses the embedded OpenAPI document.
func loadDocument(t testing.TB) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(gateway.OpenAPI())
	if err != nil {
		t.Fatalf("loading the OpenAPI document: %v", err)
	}
	return doc
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc := loadDocument(t)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	if doc.Info == nil || doc.Info.Title != "Awesome Pizza API" {
		t.Errorf("info.title is not %q", "Awesome Pizza API")
	}
	// Examples are validated against their schemas too.
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
		}
	}
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

func isHTTPMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodTrace, http.MethodConnect:
		return true
	}
	return false
}

func TestEveryRouteIsDocumented(t *testing.T) {
	doc := loadDocument(t)

	// The gateway only needs live connections to serve; building its routes
	// needs the objects. Redis is not dialled until used.
	ns := testkit.RunJetStream(t)
	nc := testkit.Connect(t, ns)
	js := testkit.JetStream(t, nc)
	opt, err := redis.ParseURL(testkit.RedisURL())
	if err != nil {
		t.Fatalf("REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	g, err := gateway.New(gateway.Config{}, gateway.Deps{NC: nc, JS: js, Redis: rdb, Catalog: catalog.Default(), Log: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}

	served := map[string]bool{}
	ui := gateway.UIRoutes()
	for _, r := range g.Echo().Routes() {
		if !isHTTPMethod(r.Method) {
			continue // echo's internal entries (such as its not-found routes)
		}
		if r.Method == http.MethodGet && slices.Contains(ui, r.Path) {
			continue // the web UI's pages and assets, not the API
		}
		if strings.Contains(r.Path, "*") {
			t.Errorf("route %s %s has a wildcard, which the document cannot describe", r.Method, r.Path)
			continue
		}
		served[r.Method+" "+echoParam.ReplaceAllString(r.Path, "{$1}")] = true
	}
	if len(served) == 0 {
		t.Fatal("the gateway registers no routes")
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	for _, k := range sortedKeys(served) {
		if !documented[k] {
			t.Errorf("%s is served but not in the OpenAPI document", k)
		}
	}
	for _, k := range sortedKeys(documented) {
		if !served[k] {
			t.Errorf("%s is in the OpenAPI document but no route serves it", k)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// forbidUndocumentedProperties makes every object schema that lists its
// properties and says nothing about others refuse undocumented ones, so that
// responses are checked to hold exactly the documented fields. The document
// itself stays open to additions; only the test's copy is tightened.
func forbidUndocumentedProperties(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(*openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			no := false
			s.AdditionalProperties.Has = &no
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		walk(s.Not)
		for _, group := range [][]*openapi3.SchemaRef{s.AllOf, s.AnyOf, s.OneOf} {
			for _, sub := range group {
				walk(sub)
			}
		}
	}
	for _, s := range doc.Components.Schemas {
		walk(s)
	}
	walkContent := func(c openapi3.Content) {
		for _, mt := range c {
			walk(mt.Schema)
		}
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				walkContent(op.RequestBody.Value.Content)
			}
			for _, r := range op.Responses.Map() {
				if r.Value != nil {
					walkContent(r.Value.Content)
				}
			}
		}
	}
}

// --- conformance against the running server ---

type harness struct {
	srv        *httptest.Server
	gw         *gateway.Gateway
	doc        *openapi3.T
	router     routers.Router
	stopOrders func()
}

// startPlatform runs a real nats-server with JetStream, the orders service
// and the gateway on a real Redis, and serves the gateway over HTTP.
func startPlatform(t *testing.T, cfg gateway.Config) *harness {
	t.Helper()
	return startPlatformWith(t, cfg, nil)
}

// startPlatformWith is startPlatform; before the orders service starts,
// more (if set) starts other services on the same connections and keyspace.
func startPlatformWith(t *testing.T, cfg gateway.Config, more func(t *testing.T, deps platformDeps)) *harness {
	t.Helper()
	ns := testkit.RunJetStream(t)
	nc := testkit.Connect(t, ns)
	js := testkit.JetStream(t, nc)
	rdb, prefix := testkit.Redis(t)
	cat := catalog.Default()
	log := quietLogger()
	if more != nil {
		more(t, platformDeps{NC: nc, JS: js, Redis: rdb, Keyspace: prefix, Catalog: cat, Log: log})
	}

	svc, err := orders.New(orders.Config{Keyspace: prefix}, orders.Deps{NC: nc, JS: js, Redis: rdb, Catalog: cat, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ordersCtx, cancelOrders := context.WithCancel(context.Background())
	if err := svc.Start(ordersCtx); err != nil {
		cancelOrders()
		t.Fatalf("starting the orders service: %v", err)
	}
	var once sync.Once
	stopOrders := func() { once.Do(func() { cancelOrders(); svc.Stop() }) }
	t.Cleanup(stopOrders)

	cfg.Keyspace = prefix
	g, err := gateway.New(cfg, gateway.Deps{NC: nc, JS: js, Redis: rdb, Catalog: cat, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	gwCtx, cancelGW := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(gwCtx) }()
	t.Cleanup(func() {
		cancelGW()
		if err := <-done; err != nil {
			t.Errorf("gateway Run: %v", err)
		}
	})
	readyTimer := time.NewTimer(15 * time.Second)
	defer readyTimer.Stop()
	select {
	case <-g.Ready():
	case err := <-done:
		done <- err
		t.Fatalf("gateway stopped before it was ready: %v", err)
	case <-readyTimer.C:
		t.Fatal("gateway not ready within 15s")
	}

	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)

	doc := loadDocument(t)
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	forbidUndocumentedProperties(doc)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router from the document: %v", err)
	}
	return &harness{srv: srv, gw: g, doc: doc, router: router, stopOrders: stopOrders}
}

// call is one request of the conformance test.
type call struct {
	name    string
	method  string
	path    string
	header  map[string]string
	body    []byte
	chunked bool // send the body without a Content-Length
	// want is the status the server must answer.
	want int
	// invalid says the document itself must reject the request (the server
	// refuses it too: both agree on what is acceptable).
	invalid bool
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func (c call) request(t *testing.T, ctx context.Context, base string) *http.Request {
	t.Helper()
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
		if c.chunked {
			body = io.MultiReader(body) // hides the length: sent chunked
		}
	}
	req, err := http.NewRequestWithContext(ctx, c.method, base+c.path, body)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	return req
}

// validateRequest checks a request against the document and returns the
// input that response validation needs.
func (h *harness) validateRequest(t *testing.T, c call) *openapi3filter.RequestValidationInput {
	t.Helper()
	req := c.request(t, context.Background(), h.srv.URL)
	route, params, err := h.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s: %s %s matches no documented operation: %v", c.name, c.method, c.path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true}}
	err = openapi3filter.ValidateRequest(context.Background(), in)
	switch {
	case !c.invalid && err != nil:
		t.Errorf("%s: the document rejects the request: %v", c.name, err)
	case c.invalid && err == nil:
		t.Errorf("%s: the document accepts a request that the server refuses with %d", c.name, c.want)
	}
	return in
}

func (h *harness) validateResponse(t *testing.T, name string, in *openapi3filter.RequestValidationInput, status int, header http.Header, body []byte, skipBody bool) {
	t.Helper()
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: skipBody}}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s: the %d response does not conform to the document: %v\nheaders: %v\nbody: %s", name, status, err, header, truncate(body))
	}
}

// do validates the request, sends it, checks the status and validates the response.
func (h *harness) do(t *testing.T, c call) result {
	t.Helper()
	in := h.validateRequest(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := h.srv.Client().Do(c.request(t, ctx, h.srv.URL))
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatalf("%s: reading the body: %v", c.name, err)
	}
	if resp.StatusCode != c.want {
		t.Fatalf("%s: status %d, want %d; body: %s", c.name, resp.StatusCode, c.want, truncate(body))
	}
	h.validateResponse(t, c.name, in, resp.StatusCode, resp.Header, body, false)
	if resp.StatusCode >= 400 {
		if mt := mediaType(resp.Header); mt != gateway.ProblemContentType {
			t.Errorf("%s: error content type %q, want %s", c.name, mt, gateway.ProblemContentType)
		}
	}
	return result{status: resp.StatusCode, header: resp.Header, body: body}
}

func mediaType(h http.Header) string {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt
}

func truncate(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

func decodeProblem(t *testing.T, name string, r result) ordersapi.Problem {
	t.Helper()
	var p ordersapi.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("%s: problem body: %v", name, err)
	}
	if p.Status != r.status {
		t.Errorf("%s: problem status %d in a %d response", name, p.Status, r.status)
	}
	return p
}

func expectProblem(t *testing.T, name string, r result, typ string, fields ...string) ordersapi.Problem {
	t.Helper()
	p := decodeProblem(t, name, r)
	if p.Type != typ {
		t.Errorf("%s: problem type %q, want %q (%s)", name, p.Type, typ, p.Error())
	}
	for _, f := range fields {
		if !slices.ContainsFunc(p.Errors, func(e ordersapi.FieldError) bool { return e.Field == f }) {
			t.Errorf("%s: problem does not name field %q: %+v", name, f, p.Errors)
		}
	}
	return p
}

type orderDoc struct {
	OrderID            string `json:"orderId"`
	Status             string `json:"status"`
	Version            uint64 `json:"version"`
	CancellationReason string `json:"cancellationReason"`
}

func decodeOrder(t *testing.T, name string, body []byte) orderDoc {
	t.Helper()
	var o orderDoc
	if err := json.Unmarshal(body, &o); err != nil {
		t.Fatalf("%s: order body: %v", name, err)
	}
	if o.OrderID == "" || o.Version == 0 {
		t.Fatalf("%s: order without id or version: %s", name, body)
	}
	return o
}

func orderBody(customerID string, mutate func(m map[string]any)) []byte {
	m := map[string]any{
		"customerId":   customerID,
		"restaurantId": "downtown",
		"items": []any{
			map[string]any{"pizzaType": "Margherita", "size": "Large", "toppings": []string{"Basil"}, "quantity": 2},
		},
		"address": map[string]any{
			"street": "1 Main St", "city": "Portland", "state": "OR", "zipCode": "97201",
			"coordinates": map[string]any{"latitude": 45.52, "longitude": -122.68},
		},
		"paymentMethod": "CreditCard",
	}
	if mutate != nil {
		mutate(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func firstItem(m map[string]any) map[string]any { return m["items"].([]any)[0].(map[string]any) }

var jsonHeader = map[string]string{"Content-Type": "application/json"}

func withHeader(kv ...string) map[string]string {
	h := map[string]string{"Content-Type": "application/json"}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

// placeOrder places a valid order and waits until it can be read.
func (h *harness) placeOrder(t *testing.T, customerID string) orderDoc {
	t.Helper()
	r := h.do(t, call{name: "place order for " + customerID, method: http.MethodPost, path: "/api/orders",
		header: jsonHeader, body: orderBody(customerID, nil), want: http.StatusCreated})
	o := decodeOrder(t, "place order", r.body)
	h.awaitReadable(t, o.OrderID)
	return o
}

// awaitReadable polls until GET /api/orders/{id} answers 200.
func (h *harness) awaitReadable(t *testing.T, orderID string) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, func() error {
		resp, err := h.srv.Client().Get(h.srv.URL + "/api/orders/" + orderID)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("order %s: status %d", orderID, resp.StatusCode)
		}
		return nil
	})
}

func TestResponsesConformToDocument(t *testing.T) {
	h := startPlatform(t, gateway.Config{Heartbeat: 20 * time.Millisecond})

	t.Run("operations", func(t *testing.T) {
		r := h.do(t, call{name: "healthz", method: http.MethodGet, path: "/healthz", header: map[string]string{"X-Request-Id": "conformance-1"}, want: http.StatusOK})
		if got := r.header.Get("X-Request-Id"); got != "conformance-1" {
			t.Errorf("X-Request-Id = %q, want the client's conformance-1", got)
		}
		testkit.Eventually(t, 10*time.Second, func() error {
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
		h.do(t, call{name: "readyz", method: http.MethodGet, path: "/readyz", want: http.StatusOK})
		r = h.do(t, call{name: "metrics", method: http.MethodGet, path: "/metrics", want: http.StatusOK})
		if mediaType(r.header) != "text/plain" || !bytes.Contains(r.body, []byte("pizza_http_requests_total")) {
			t.Errorf("metrics: content type %q, body %s", r.header.Get("Content-Type"), truncate(r.body))
		}
		r = h.do(t, call{name: "openapi.yaml", method: http.MethodGet, path: "/openapi.yaml", want: http.StatusOK})
		if !bytes.Equal(r.body, gateway.OpenAPI()) {
			t.Error("/openapi.yaml does not serve the embedded document")
		}
	})

	t.Run("catalogue", func(t *testing.T) {
		r := h.do(t, call{name: "list restaurants", method: http.MethodGet, path: "/api/restaurants", want: http.StatusOK})
		if !bytes.Contains(r.body, []byte(`"id":"downtown"`)) {
			t.Errorf("restaurants: %s", truncate(r.body))
		}
		r = h.do(t, call{name: "menu", method: http.MethodGet, path: "/api/menu/downtown", want: http.StatusOK})
		if !bytes.Contains(r.body, []byte(`"pizzaType":"Margherita"`)) {
			t.Errorf("menu: %s", truncate(r.body))
		}
		r = h.do(t, call{name: "menu of an unknown restaurant", method: http.MethodGet, path: "/api/menu/nowhere", want: http.StatusNotFound})
		expectProblem(t, "menu of an unknown restaurant", r, ordersapi.TypeNotFound)
	})

	var placed orderDoc
	t.Run("place", func(t *testing.T) {
		key := "conformance-key-1"
		body := orderBody("customer-1", nil)
		r := h.do(t, call{name: "place order", method: http.MethodPost, path: "/api/orders",
			header: withHeader("Idempotency-Key", key), body: body, want: http.StatusCreated})
		placed = decodeOrder(t, "place order", r.body)
		if placed.Status == "Cancelled" || placed.Status == "Failed" {
			t.Errorf("placed order status %q", placed.Status)
		}
		if got, want := r.header.Get("Location"), "/api/orders/"+placed.OrderID; got != want {
			t.Errorf("Location = %q, want %q", got, want)
		}
		if r.header.Get("Idempotent-Replayed") != "" {
			t.Error("a first placement is marked Idempotent-Replayed")
		}
		if r.header.Get("Pizza-Read-Your-Writes") == "ok" {
			// The read model already shows the order: an immediate read sees it.
			g := h.do(t, call{name: "read own write", method: http.MethodGet, path: "/api/orders/" + placed.OrderID, want: http.StatusOK})
			if o := decodeOrder(t, "read own write", g.body); o.Version < placed.Version {
				t.Errorf("read own write: version %d < placement's %d", o.Version, placed.Version)
			}
		}

		r = h.do(t, call{name: "replayed placement", method: http.MethodPost, path: "/api/orders",
			header: withHeader("Idempotency-Key", key), body: body, want: http.StatusCreated})
		if got := decodeOrder(t, "replayed placement", r.body); got.OrderID != placed.OrderID {
			t.Errorf("replayed placement made order %s, want %s", got.OrderID, placed.OrderID)
		}
		if r.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replayed placement: Idempotent-Replayed = %q, want true", r.header.Get("Idempotent-Replayed"))
		}

		r = h.do(t, call{name: "key reused with another body", method: http.MethodPost, path: "/api/orders",
			header: withHeader("Idempotency-Key", key), want: http.StatusUnprocessableEntity,
			body: orderBody("customer-1", func(m map[string]any) { firstItem(m)["quantity"] = 3 })})
		expectProblem(t, "key reused", r, ordersapi.TypeIdempotencyKeyReused, "Idempotency-Key")

		r = h.do(t, call{name: "malformed JSON", method: http.MethodPost, path: "/api/orders",
			header: jsonHeader, body: []byte(`{"customerId": "c1", "items": [`), want: http.StatusBadRequest, invalid: true})
		expectProblem(t, "malformed JSON", r, ordersapi.TypeMalformedRequest)

		r = h.do(t, call{name: "unknown field", method: http.MethodPost, path: "/api/orders", header: jsonHeader,
			body: orderBody("customer-2", func(m map[string]any) { m["coupon"] = "FREE" }), want: http.StatusBadRequest, invalid: true})
		expectProblem(t, "unknown field", r, ordersapi.TypeMalformedRequest, "coupon")

		r = h.do(t, call{name: "quantity out of range", method: http.MethodPost, path: "/api/orders", header: jsonHeader,
			body: orderBody("customer-2", func(m map[string]any) { firstItem(m)["quantity"] = 0 }), want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "quantity out of range", r, ordersapi.TypeValidation, "items[0].quantity")

		r = h.do(t, call{name: "too many items", method: http.MethodPost, path: "/api/orders", header: jsonHeader,
			body: orderBody("customer-2", func(m map[string]any) {
				items := make([]any, 26)
				for i := range items {
					items[i] = map[string]any{"pizzaType": "Margherita", "size": "Small", "quantity": 1}
				}
				m["items"] = items
			}), want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "too many items", r, ordersapi.TypeValidation, "items")

		r = h.do(t, call{name: "latitude out of range", method: http.MethodPost, path: "/api/orders", header: jsonHeader,
			body: orderBody("customer-2", func(m map[string]any) {
				m["address"].(map[string]any)["coordinates"] = map[string]any{"latitude": 91, "longitude": 0}
			}), want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "latitude out of range", r, ordersapi.TypeValidation, "address.coordinates.latitude")

		// The document cannot know the menu: the request is well-formed.
		r = h.do(t, call{name: "unknown pizza", method: http.MethodPost, path: "/api/orders", header: jsonHeader,
			body: orderBody("customer-2", func(m map[string]any) { firstItem(m)["pizzaType"] = "Pineapple-Anchovy" }), want: http.StatusUnprocessableEntity})
		expectProblem(t, "unknown pizza", r, ordersapi.TypeValidation, "items[0].pizzaType")

		r = h.do(t, call{name: "Idempotency-Key too long", method: http.MethodPost, path: "/api/orders",
			header: withHeader("Idempotency-Key", strings.Repeat("k", 201)), body: orderBody("customer-2", nil),
			want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "Idempotency-Key too long", r, ordersapi.TypeValidation, "Idempotency-Key")

		// A well-formed order padded past 64 KiB: the size limit is in the
		// document's words only (OpenAPI 3.0 cannot state a byte limit).
		oversized := append(orderBody("customer-2", nil), bytes.Repeat([]byte(" "), 70<<10)...)
		r = h.do(t, call{name: "oversized body", method: http.MethodPost, path: "/api/orders", header: jsonHeader,
			body: oversized, want: http.StatusRequestEntityTooLarge})
		expectProblem(t, "oversized body", r, ordersapi.TypeBodyTooLarge)
		r = h.do(t, call{name: "oversized chunked body", method: http.MethodPost, path: "/api/orders", header: jsonHeader,
			body: oversized, chunked: true, want: http.StatusRequestEntityTooLarge})
		expectProblem(t, "oversized chunked body", r, ordersapi.TypeBodyTooLarge)

		r = h.do(t, call{name: "text/plain body", method: http.MethodPost, path: "/api/orders",
			header: map[string]string{"Content-Type": "text/plain"}, body: orderBody("customer-2", nil),
			want: http.StatusUnsupportedMediaType, invalid: true})
		expectProblem(t, "text/plain body", r, ordersapi.TypeUnsupportedMediaType)
	})
	if placed.OrderID == "" {
		t.Fatal("no order was placed")
	}

	t.Run("read", func(t *testing.T) {
		h.awaitReadable(t, placed.OrderID)
		r := h.do(t, call{name: "get order", method: http.MethodGet, path: "/api/orders/" + placed.OrderID, want: http.StatusOK})
		if o := decodeOrder(t, "get order", r.body); o.OrderID != placed.OrderID {
			t.Errorf("get order: id %s, want %s", o.OrderID, placed.OrderID)
		}
		r = h.do(t, call{name: "get unknown order", method: http.MethodGet, path: "/api/orders/0195c7f4-0000-7000-8000-000000000000", want: http.StatusNotFound})
		expectProblem(t, "get unknown order", r, ordersapi.TypeNotFound)
		r = h.do(t, call{name: "get order with an impossible id", method: http.MethodGet, path: "/api/orders/not.an.id", want: http.StatusNotFound})
		expectProblem(t, "impossible id", r, ordersapi.TypeNotFound)
	})

	t.Run("cancel", func(t *testing.T) {
		path := "/api/orders/" + placed.OrderID + "/cancel"
		r := h.do(t, call{name: "cancel", method: http.MethodPost, path: path, header: jsonHeader,
			body: []byte(`{"reason":"changed my mind"}`), want: http.StatusOK})
		o := decodeOrder(t, "cancel", r.body)
		if o.Status != "Cancelled" || o.CancellationReason != "changed my mind" || o.Version <= placed.Version {
			t.Errorf("cancel: %+v", o)
		}
		r = h.do(t, call{name: "second cancel", method: http.MethodPost, path: path, want: http.StatusConflict})
		if p := expectProblem(t, "second cancel", r, ordersapi.TypeInvalidTransition); p.CurrentStatus != "Cancelled" {
			t.Errorf("second cancel: currentStatus %q, want Cancelled", p.CurrentStatus)
		}

		// With an Idempotency-Key, a retried cancellation is answered, not refused.
		other := h.placeOrder(t, "customer-3")
		otherPath := "/api/orders/" + other.OrderID + "/cancel"
		first := h.do(t, call{name: "cancel with key", method: http.MethodPost, path: otherPath,
			header: map[string]string{"Idempotency-Key": "cancel-1"}, want: http.StatusOK})
		retry := h.do(t, call{name: "retried cancel with key", method: http.MethodPost, path: otherPath,
			header: map[string]string{"Idempotency-Key": "cancel-1"}, want: http.StatusOK})
		if a, b := decodeOrder(t, "cancel with key", first.body), decodeOrder(t, "retried cancel", retry.body); a.Version != b.Version || b.Status != "Cancelled" {
			t.Errorf("retried cancel: %+v after %+v", b, a)
		}
		if first.header.Get("Idempotent-Replayed") != "" || retry.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("cancel with key: Idempotent-Replayed %q then %q, want absent then true",
				first.header.Get("Idempotent-Replayed"), retry.header.Get("Idempotent-Replayed"))
		}

		r = h.do(t, call{name: "cancel unknown order", method: http.MethodPost, path: "/api/orders/no-such-order/cancel", want: http.StatusNotFound})
		expectProblem(t, "cancel unknown order", r, ordersapi.TypeNotFound)
		r = h.do(t, call{name: "cancel with unknown field", method: http.MethodPost, path: otherPath, header: jsonHeader,
			body: []byte(`{"why":"no"}`), want: http.StatusBadRequest, invalid: true})
		expectProblem(t, "cancel with unknown field", r, ordersapi.TypeMalformedRequest, "why")
		r = h.do(t, call{name: "cancel reason too long", method: http.MethodPost, path: otherPath, header: jsonHeader,
			body: []byte(`{"reason":"` + strings.Repeat("r", 501) + `"}`), want: http.StatusUnprocessableEntity, invalid: true})
		expectProblem(t, "cancel reason too long", r, ordersapi.TypeValidation, "reason")
		r = h.do(t, call{name: "cancel with text/plain", method: http.MethodPost, path: otherPath,
			header: map[string]string{"Content-Type": "text/plain"}, body: []byte("please"), want: http.StatusUnsupportedMediaType, invalid: true})
		expectProblem(t, "cancel with text/plain", r, ordersapi.TypeUnsupportedMediaType)
		r = h.do(t, call{name: "cancel with oversized body", method: http.MethodPost, path: otherPath, header: jsonHeader,
			body: append([]byte(`{"reason":"x"}`), bytes.Repeat([]byte(" "), 70<<10)...), want: http.StatusRequestEntityTooLarge})
		expectProblem(t, "cancel with oversized body", r, ordersapi.TypeBodyTooLarge)
	})

	t.Run("track", func(t *testing.T) {
		r := h.do(t, call{name: "track unknown order", method: http.MethodGet, path: "/api/orders/no-such-order/track", want: http.StatusNotFound})
		expectProblem(t, "track unknown order", r, ordersapi.TypeNotFound)

		o := h.placeOrder(t, "customer-4")
		g := h.do(t, call{name: "get tracked order", method: http.MethodGet, path: "/api/orders/" + o.OrderID, want: http.StatusOK})
		current := decodeOrder(t, "get tracked order", g.body)
		v := current.Version

		// A: a fresh client gets the retry hint, then the current snapshot.
		a := h.openStream(t, "stream", o.OrderID, nil, "")
		if f := a.frame(t); f.retry != "2000" {
			t.Errorf("stream: first frame %+v, want retry: 2000", f)
		}
		if f := h.nextOrder(t, a); f.order.Version != v || f.order.Status != current.Status {
			t.Errorf("stream: first snapshot %+v, want version %d (%s)", f.order, v, current.Status)
		}
		// B: resuming at the current id, nothing is repeated: heartbeats only.
		b := h.openStream(t, "resume with Last-Event-ID", o.OrderID, map[string]string{"Last-Event-ID": strconv.FormatUint(v, 10)}, "")
		b.heartbeatBeforeAnyOrder(t)
		// C: resuming from an older id through the query parameter sends the current snapshot.
		c := h.openStream(t, "resume with lastEventId", o.OrderID, nil, "?lastEventId="+strconv.FormatUint(v-1, 10))
		if f := h.nextOrder(t, c); f.order.Version != v {
			t.Errorf("resume with lastEventId=%d: snapshot version %d, want %d", v-1, f.order.Version, v)
		}
		// D: the query parameter at the current id: heartbeats only.
		d := h.openStream(t, "resume with lastEventId at the current id", o.OrderID, nil, "?lastEventId="+strconv.FormatUint(v, 10))
		d.heartbeatBeforeAnyOrder(t)

		// A change reaches every open stream.
		cr := h.do(t, call{name: "cancel tracked order", method: http.MethodPost, path: "/api/orders/" + o.OrderID + "/cancel", want: http.StatusOK})
		cancelled := decodeOrder(t, "cancel tracked order", cr.body)
		for name, s := range map[string]*sseStream{"stream": a, "resume with Last-Event-ID": b, "resume at the current id": d} {
			if f := h.nextOrder(t, s); f.order.Version != cancelled.Version || f.order.Status != "Cancelled" {
				t.Errorf("%s: snapshot after the cancellation %+v, want version %d (Cancelled)", name, f.order, cancelled.Version)
			}
		}
	})

	t.Run("orders service unavailable", func(t *testing.T) {
		h.stopOrders()
		r := h.do(t, call{name: "place without an orders service", method: http.MethodPost, path: "/api/orders",
			header: jsonHeader, body: orderBody("customer-5", nil), want: http.StatusServiceUnavailable})
		expectProblem(t, "place without an orders service", r, ordersapi.TypeUnavailable)
		r = h.do(t, call{name: "cancel without an orders service", method: http.MethodPost, path: "/api/orders/" + placed.OrderID + "/cancel",
			want: http.StatusServiceUnavailable})
		expectProblem(t, "cancel without an orders service", r, ordersapi.TypeUnavailable)
	})
}

// --- Server-Sent Events ---

type sseFrame struct {
	id, event, data, retry string
	hasID                  bool
	comments               []string
}

type sseStream struct {
	name string
	r    *bufio.Reader
}

type orderFrame struct {
	sseFrame
	order orderDoc
}

// openStream opens GET /api/orders/{id}/track, checks the request and the
// response's status and headers against the document, and returns the
// stream. The stream is closed when the test ends.
func (h *harness) openStream(t *testing.T, name, orderID string, header map[string]string, query string) *sseStream {
	t.Helper()
	return h.openSSE(t, name, "/api/orders/"+orderID+"/track"+query, header)
}

// openSSE opens a Server-Sent Events stream at path (with its query),
// checks the request and the response's status and headers against the
// document, and returns the stream. The stream is closed when the test ends.
func (h *harness) openSSE(t *testing.T, name, path string, header map[string]string) *sseStream {
	t.Helper()
	c := call{name: name, method: http.MethodGet, path: path, header: header, want: http.StatusOK}
	in := h.validateRequest(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	resp, err := h.srv.Client().Do(c.request(t, ctx, h.srv.URL))
	if err != nil {
		cancel()
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		cancel()
		_ = resp.Body.Close()
	})
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: status %d: %s", name, resp.StatusCode, truncate(b))
	}
	// The body is a stream: check status and headers only.
	h.validateResponse(t, name, in, resp.StatusCode, resp.Header, nil, true)
	if mt := mediaType(resp.Header); mt != "text/event-stream" {
		t.Fatalf("%s: content type %q, want text/event-stream", name, resp.Header.Get("Content-Type"))
	}
	if in.Route.Operation.Responses.Status(http.StatusOK).Value.Content.Get("text/event-stream") == nil {
		t.Fatalf("%s: the document does not describe a text/event-stream response", name)
	}
	return &sseStream{name: name, r: bufio.NewReader(resp.Body)}
}

// frame reads the next frame (up to its blank line).
func (s *sseStream) frame(t *testing.T) sseFrame {
	t.Helper()
	var f sseFrame
	var data []string
	started := false
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: reading the stream: %v (partial frame %+v)", s.name, err, f)
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if !started {
				continue
			}
			f.data = strings.Join(data, "\n")
			return f
		}
		started = true
		if rest, ok := strings.CutPrefix(line, ":"); ok {
			f.comments = append(f.comments, strings.TrimSpace(rest))
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			f.id, f.hasID = value, true
		case "event":
			f.event = value
		case "data":
			data = append(data, value)
		case "retry":
			f.retry = value
		default:
			t.Errorf("%s: unexpected field %q in frame", s.name, field)
		}
	}
}

// nextOrder skips comments and hints up to the next `event: order` frame,
// checks its data against the Order schema and its id against the order's
// version.
func (h *harness) nextOrder(t *testing.T, s *sseStream) orderFrame {
	t.Helper()
	for {
		f := s.frame(t)
		if f.event == "" && f.data == "" {
			continue // a heartbeat comment or the retry hint
		}
		if f.event != "order" {
			t.Fatalf("%s: frame of event %q, want order: %+v", s.name, f.event, f)
		}
		var v any
		if err := json.Unmarshal([]byte(f.data), &v); err != nil {
			t.Fatalf("%s: data is not JSON: %v: %s", s.name, err, f.data)
		}
		if err := h.doc.Components.Schemas["Order"].Value.VisitJSON(v, openapi3.VisitAsResponse(), openapi3.MultiErrors()); err != nil {
			t.Errorf("%s: data does not conform to the Order schema: %v\n%s", s.name, err, f.data)
		}
		o := decodeOrder(t, s.name, []byte(f.data))
		if !f.hasID || f.id != strconv.FormatUint(o.Version, 10) {
			t.Errorf("%s: frame id %q, want the order's version %d", s.name, f.id, o.Version)
		}
		return orderFrame{sseFrame: f, order: o}
	}
}

// heartbeatBeforeAnyOrder reads until a heartbeat comment, failing on any
// order frame before it.
func (s *sseStream) heartbeatBeforeAnyOrder(t *testing.T) {
	t.Helper()
	for {
		f := s.frame(t)
		if f.event != "" || f.data != "" {
			t.Fatalf("%s: got a frame before any heartbeat although the client is up to date: %+v", s.name, f)
		}
		if slices.Contains(f.comments, "heartbeat") {
			return
		}
	}
}
