package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/region"
	"github.com/awesome-pizza/pizza/pkg/testkit"
)

// twoFreePorts finds a port p such that p and p+1 are free on 127.0.0.1.
func twoFreePorts(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		_ = l.Close()
		if err == nil {
			_ = l2.Close()
			return p
		}
	}
	t.Fatal("no two consecutive free ports")
	return 0
}

// TestDevRegions runs `pizza dev --regions 2` in process: an order placed
// through the first region's gateway for a restaurant of the second is
// processed in the second region (its gateway serves it, the first does
// not), and the chain-wide view counts it.
func TestDevRegions(t *testing.T) {
	_, keyspace := testkit.Redis(t)
	port := twoFreePorts(t)
	cfg := PlatformConfig{HTTPAddr: "127.0.0.1:" + strconv.Itoa(port), DataDir: t.TempDir(), RedisURL: testkit.RedisURL(),
		Keyspace: keyspace, TimeScale: 1, NoAuth: true, RateLimit: 1e6}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rs, err := StartRegions(ctx, cfg, 2, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Stop()
	first, second := rs.Topology.Regions[0], rs.Topology.Regions[1]
	if len(second.Restaurants) == 0 {
		t.Fatalf("topology %+v gives the second region no restaurant", rs.Topology)
	}
	remote := second.Restaurants[0]
	body := strings.Replace(orderBody, `"restaurantId":"downtown"`, `"restaurantId":"`+remote+`"`, 1)
	res, err := http.Post(rs.Platforms()[0].HTTPURL()+"/api/orders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var placed struct {
		OrderID string `json:"orderId"`
		Status  string `json:"status"`
	}
	err = json.NewDecoder(res.Body).Decode(&placed)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("place via %s: %d %v", first.Name, res.StatusCode, err)
	}
	if got := res.Header.Get("Pizza-Region"); got != second.Name {
		t.Fatalf("Pizza-Region = %q, want %q", got, second.Name)
	}
	if got := res.Header.Get("Pizza-Read-Your-Writes"); got != "remote" {
		t.Fatalf("Pizza-Read-Your-Writes = %q, want remote", got)
	}
	get := func(p *Platform) int {
		r, err := http.Get(p.HTTPURL() + "/api/orders/" + placed.OrderID)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	testkit.Eventually(t, 20*time.Second, func() error {
		if c := get(rs.Platforms()[1]); c != http.StatusOK {
			return fmt.Errorf("%s's gateway answers %d for the order", second.Name, c)
		}
		return nil
	})
	if c := get(rs.Platforms()[0]); c != http.StatusNotFound {
		t.Fatalf("%s's gateway answers %d for an order of %s", first.Name, c, second.Name)
	}
	// A local order in the first region too; the global view counts both.
	local := first.Restaurants[0]
	body = strings.Replace(orderBody, `"restaurantId":"downtown"`, `"restaurantId":"`+local+`"`, 1)
	res, err = http.Post(rs.Platforms()[0].HTTPURL()+"/api/orders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated || res.Header.Get("Pizza-Region") != first.Name || res.Header.Get("Pizza-Read-Your-Writes") != "ok" {
		t.Fatalf("local order: %d %v", res.StatusCode, res.Header)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		v, err := rs.GlobalView(ctx)
		if err != nil {
			return err
		}
		if v.Totals[first.Name] != 1 || v.Totals[second.Name] != 1 {
			return fmt.Errorf("global view %+v", v.Totals)
		}
		return nil
	})
	// The first region's gateway serves the chain-wide view; the other
	// region's has none to serve.
	res, err = http.Get(rs.Platforms()[0].HTTPURL() + "/api/global/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	var served region.GlobalView
	err = json.NewDecoder(res.Body).Decode(&served)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || served.Totals[first.Name] != 1 || served.Totals[second.Name] != 1 {
		t.Fatalf("GET /api/global/dashboard from %s: %d %+v %v", first.Name, res.StatusCode, served, err)
	}
	if c := func() int {
		r, err := http.Get(rs.Platforms()[1].HTTPURL() + "/api/global/dashboard")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}(); c != http.StatusNotFound {
		t.Fatalf("GET /api/global/dashboard from %s: %d, want 404", second.Name, c)
	}
	// The view's source watch reports both regions reachable and complete
	// on the first region's gateway (it checks every 10 s).
	testkit.Eventually(t, 40*time.Second, func() error {
		r, err := http.Get(rs.Platforms()[0].HTTPURL() + "/metrics")
		if err != nil {
			return err
		}
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return err
		}
		for _, name := range []string{first.Name, second.Name} {
			for _, line := range []string{
				`pizza_global_source_reachable{region="` + name + `"} 1`,
				`pizza_global_source_behind_events{region="` + name + `"} 0`,
			} {
				if !strings.Contains(string(b), line+"\n") {
					return fmt.Errorf("/metrics of %s has no line %q", first.Name, line)
				}
			}
		}
		if !strings.Contains(string(b), "pizza_global_source_reseeds_total 0\n") || !strings.Contains(string(b), "pizza_global_source_holes_total 0\n") {
			return fmt.Errorf("/metrics of %s has no pizza_global_source_reseeds_total 0 or pizza_global_source_holes_total 0", first.Name)
		}
		return nil
	})
}
