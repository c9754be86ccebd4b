package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/gateway/auth"
)

// expectation per role: "ok" (the route let the caller through: any status
// but 401, 403 and 404), or the exact refusal.
type access map[string]string

// TestRoleRouteMatrix enumerates the routes from the router itself and
// checks every role on each: a route without an entry here fails the test.
// The fixture: alice's order at pearl, assigned to driver D; bob is another
// customer; staff of pearl and of downtown.
func TestRoleRouteMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	_, keyspace := testkit.Redis(t)
	h := startPlatform(t, PlatformConfig{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), RedisURL: testkit.RedisURL(),
		Keyspace: keyspace, TimeScale: 3000})
	defer func() { h.stop() }()
	mint := func(p auth.Principal) string {
		tok, err := h.p.keys.Mint(p, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tokens := map[string]string{
		"anonymous":        "",
		"alice":            mint(auth.Principal{Subject: "alice", Role: auth.RoleCustomer}),
		"bob":              mint(auth.Principal{Subject: "bob", Role: auth.RoleCustomer}),
		"kitchen-pearl":    mint(auth.Principal{Subject: "k1", Role: auth.RoleKitchen, Restaurants: []string{"pearl"}}),
		"kitchen-downtown": mint(auth.Principal{Subject: "k2", Role: auth.RoleKitchen, Restaurants: []string{"downtown"}}),
		"manager-pearl":    mint(auth.Principal{Subject: "m1", Role: auth.RoleManager, Restaurants: []string{"pearl"}}),
		"manager-downtown": mint(auth.Principal{Subject: "m2", Role: auth.RoleManager, Restaurants: []string{"downtown"}}),
		"operator":         mint(auth.Principal{Subject: "op", Role: auth.RoleOperator}),
	}
	// alice's order, until a driver holds it.
	res, b := h.doAs(tokens["alice"], "POST", "/api/orders", strings.Replace(pearlOrder, "cust-c", "alice", 1))
	if res.StatusCode != 201 {
		t.Fatalf("alice's order: %d %s", res.StatusCode, b)
	}
	order := strings.Split(strings.Split(string(b), `"orderId":"`)[1], `"`)[0]
	var driver string
	testkit.Eventually(t, 30*time.Second, func() error {
		o := h.order(order)
		if o.AssignedDriverID == nil {
			return fmt.Errorf("order is %s", o.Status)
		}
		driver = *o.AssignedDriverID
		return nil
	})
	other := "pearl-driver-1"
	if driver == other {
		other = "pearl-driver-2"
	}
	tokens["driver"] = mint(auth.Principal{Subject: driver, Role: auth.RoleDriver})
	tokens["other-driver"] = mint(auth.Principal{Subject: other, Role: auth.RoleDriver})

	everyone := access{"anonymous": "ok", "alice": "ok", "bob": "ok", "driver": "ok", "other-driver": "ok", "kitchen-pearl": "ok",
		"kitchen-downtown": "ok", "manager-pearl": "ok", "manager-downtown": "ok", "operator": "ok"}
	only := func(ok []string, notFound []string) access {
		a := access{"anonymous": "401"}
		for role := range tokens {
			if role != "anonymous" {
				a[role] = "403"
			}
		}
		for _, r := range ok {
			a[r] = "ok"
		}
		for _, r := range notFound {
			a[r] = "404"
		}
		a["operator"] = "ok"
		return a
	}
	orderReaders := only([]string{"alice", "driver", "manager-pearl"}, []string{"bob", "other-driver", "manager-downtown"})
	orderOwners := only([]string{"alice", "manager-pearl"}, []string{"bob", "manager-downtown"})
	managers := only([]string{"manager-pearl"}, []string{"manager-downtown"})
	kitchenStaff := only([]string{"kitchen-pearl", "manager-pearl"}, []string{"kitchen-downtown", "manager-downtown"})
	driverSelf := only([]string{"driver", "manager-pearl"}, []string{"other-driver", "manager-downtown"})
	// Operators only; a single-region platform keeps no chain-wide view.
	operatorsNoGlobalView := only(nil, nil)
	operatorsNoGlobalView["operator"] = "404"
	matrix := map[string]struct {
		body string
		want access
	}{
		"GET /api/restaurants":                                {"", everyone},
		"GET /api/menu/:restaurantId":                         {"", everyone},
		"POST /api/orders":                                    {`{}`, only([]string{"alice", "bob"}, nil)},
		"GET /api/orders/:orderId":                            {"", orderReaders},
		"GET /api/orders/:orderId/track":                      {"", orderReaders},
		"GET /api/orders/:orderId/events":                     {"", orderOwners},
		"POST /api/orders/:orderId/cancel":                    {`{"unknown":1}`, orderOwners},
		"PUT /api/orders/:orderId/status":                     {`{}`, managers},
		"POST /api/orders/:orderId/assign-driver":             {`{}`, managers},
		"DELETE /api/customers/:customerId/personal-data":     {"", only([]string{"alice"}, []string{"bob"})},
		"GET /api/restaurants/:restaurantId/orders":           {"", managers},
		"GET /api/kitchen/:restaurantId/queue":                {"", kitchenStaff},
		"GET /api/kitchen/:restaurantId/stream":               {"", kitchenStaff},
		"POST /api/kitchen/:restaurantId/chefs/:chefId/break": {`{}`, kitchenStaff},
		"GET /api/inventory/:restaurantId":                    {"", kitchenStaff},
		"PUT /api/inventory/:restaurantId/stock":              {`{}`, managers},
		"POST /api/drivers":                                   {`{"restaurantId":"pearl"}`, managers},
		"GET /api/drivers":                                    {"", managers},
		"GET /api/drivers/:driverId":                          {"", driverSelf},
		"GET /api/drivers/:driverId/stream":                   {"", driverSelf},
		"PUT /api/drivers/:driverId/status":                   {`{}`, driverSelf},
		"POST /api/drivers/:driverId/location":                {`{}`, driverSelf},
		"POST /api/drivers/:driverId/pickup":                  {`{}`, driverSelf},
		"POST /api/drivers/:driverId/deliver":                 {`{}`, driverSelf},
		"POST /api/drivers/:driverId/credentials":             {"", only([]string{"manager-pearl"}, []string{"manager-downtown", "driver", "other-driver"})},
		"POST /api/kitchens/:restaurantId/credentials":        {"", managers},
		"GET /api/kitchens/:restaurantId/telemetry":           {"", kitchenStaff},
		"GET /api/dashboard/:restaurantId":                    {"", managers},
		"GET /api/dashboard/:restaurantId/stream":             {"", managers},
		"GET /api/global/dashboard":                           {"", operatorsNoGlobalView},
	}
	params := strings.NewReplacer(":restaurantId", "pearl", ":orderId", order, ":driverId", driver, ":chefId", "pearl-chef-1", ":customerId", "alice")
	seen := 0
	for _, r := range h.p.gw.Echo().Routes() {
		if !strings.HasPrefix(r.Path, "/api/") {
			continue
		}
		key := r.Method + " " + r.Path
		entry, ok := matrix[key]
		if !ok {
			if r.Method == "echo_route_not_found" || r.Path == "/api/*" {
				continue
			}
			t.Errorf("route %s has no entry in the role matrix", key)
			continue
		}
		seen++
		path := params.Replace(r.Path)
		if key == "GET /api/drivers" {
			path += "?restaurantId=pearl"
		}
		for role, want := range entry.want {
			got := h.statusAs(tokens[role], r.Method, path, entry.body)
			deny := got == 401 || got == 403 || got == 404
			if (want == "ok" && deny) || (want != "ok" && fmt.Sprint(got) != want) {
				t.Errorf("%s as %s: %d, want %s", key, role, got, want)
			}
		}
	}
	if seen != len(matrix) {
		t.Errorf("%d routes checked, %d in the matrix", seen, len(matrix))
	}
}

// statusAs sends a request with a token and returns the status, closing
// streams at once.
func (h *harness) statusAs(token, method, path, body string) int {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, h.base+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	res.Body.Close()
	return res.StatusCode
}

func (h *harness) doAs(token, method, path, body string) (*http.Response, []byte) {
	h.t.Helper()
	saved := h.token
	h.token = token
	defer func() { h.token = saved }()
	return h.do(method, path, body, nil)
}

// Tokens that are not right get 401; limits answer 429 with Retry-After and
// cannot be dodged with a forged X-Forwarded-For; a foreign Origin gets no
// CORS allowance.
func TestTokensAndLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	_, keyspace := testkit.Redis(t)
	h := startPlatform(t, PlatformConfig{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), RedisURL: testkit.RedisURL(),
		Keyspace: keyspace, TimeScale: 1, RateLimit: 20, CORSOrigins: []string{"https://shop.awesome-pizza.example"}})
	defer func() { h.stop() }()
	alice, _ := h.p.keys.Mint(auth.Principal{Subject: "alice", Role: auth.RoleCustomer}, time.Hour)
	res, b := h.doAs(alice, "POST", "/api/orders", strings.Replace(pearlOrder, "cust-c", "alice", 1))
	if res.StatusCode != 201 {
		t.Fatalf("place: %d %s", res.StatusCode, b)
	}
	order := strings.Split(strings.Split(string(b), `"orderId":"`)[1], `"`)[0]

	other, _ := auth.NewKeys([]byte("some-other-secret-some-other-sec"))
	forged, _ := other.Mint(auth.Principal{Subject: "alice", Role: auth.RoleCustomer}, time.Hour)
	expiredKeys := h.p.keys
	expired, _ := expiredKeys.Mint(auth.Principal{Subject: "alice", Role: auth.RoleCustomer}, -time.Hour)
	parts := strings.Split(alice, ".")
	none := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
	for name, tok := range map[string]string{"missing": "", "bad signature": forged, "expired": expired, "alg none": none, "garbage": "abc"} {
		if got := h.statusAs(tok, "GET", "/api/orders/"+order, ""); got != http.StatusUnauthorized {
			t.Errorf("%s token: %d", name, got)
		}
	}

	// The rate limit: a burst of 100 then 20/s per address. Forged
	// X-Forwarded-For headers (no trusted proxy is configured) do not help.
	limited := 0
	for i := 0; i < 200 && limited == 0; i++ {
		req, _ := http.NewRequest("GET", h.base+"/api/restaurants", nil)
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i%250))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == http.StatusTooManyRequests {
			limited++
			if res.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		}
	}
	if limited == 0 {
		t.Fatal("200 requests in a burst were never limited")
	}

	// The stream cap: the 11th concurrent stream of one user is refused.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var opened []*http.Response
	defer func() {
		for _, r := range opened {
			r.Body.Close()
		}
	}()
	status := 0
	for i := 0; i < 11; i++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", h.base+"/api/orders/"+order+"/track", nil)
		req.Header.Set("Authorization", "Bearer "+alice)
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i))
		var res *http.Response
		testkit.Eventually(t, 10*time.Second, func() error { // wait out the address limit of the burst above
			var err error
			res, err = http.DefaultClient.Do(req.Clone(ctx))
			if err != nil {
				return err
			}
			if res.StatusCode == http.StatusTooManyRequests && res.Header.Get("Retry-After") != "5" {
				res.Body.Close()
				return fmt.Errorf("rate limited")
			}
			return nil
		})
		opened = append(opened, res)
		status = res.StatusCode
	}
	if status != http.StatusTooManyRequests || opened[9].StatusCode != http.StatusOK {
		t.Fatalf("10th stream %d, 11th stream %d", opened[9].StatusCode, status)
	}

	// CORS: only the configured origin is allowed.
	for origin, allowed := range map[string]bool{"https://shop.awesome-pizza.example": true, "https://evil.example": false} {
		testkit.Eventually(t, 10*time.Second, func() error {
			req, _ := http.NewRequest("OPTIONS", h.base+"/api/orders", nil)
			req.Header.Set("Origin", origin)
			req.Header.Set("Access-Control-Request-Method", "POST")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			res.Body.Close()
			if res.StatusCode == http.StatusTooManyRequests {
				return fmt.Errorf("rate limited")
			}
			if got := res.Header.Get("Access-Control-Allow-Origin"); (got == origin) != allowed {
				t.Errorf("origin %s: Access-Control-Allow-Origin %q", origin, got)
			}
			return nil
		})
	}
}
