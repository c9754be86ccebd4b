package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/testkit"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// One order's path across the services is one trace: the gateway's
// request, the orders service's command, and the consumers that react to
// the stored events (inventory, then the kitchen, then the saga).
func TestOneOrderIsOneTrace(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	defer otel.SetTracerProvider(prev)

	_, keyspace := testkit.Redis(t)
	h := startPlatform(t, PlatformConfig{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), RedisURL: testkit.RedisURL(),
		Keyspace: keyspace, TimeScale: 1})
	defer func() { h.stop() }()
	h.placePearl()

	want := []string{"POST /api/orders", "request svc.orders.place", "handle svc.orders.place", "append ORDERS",
		"consume inventory-orders", "append INVENTORY", "consume kitchen-inventory", "append KITCHEN", "consume orders-saga-kitchen"}
	testkit.Eventually(t, 10*time.Second, func() error {
		var root sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Name() == "POST /api/orders" {
				root = s
			}
		}
		if root == nil {
			return fmt.Errorf("no gateway span")
		}
		names := map[string]bool{}
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == root.SpanContext().TraceID() {
				names[s.Name()] = true
			}
		}
		var missing []string
		for _, n := range want {
			if !names[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("trace %s lacks %s", root.SpanContext().TraceID(), strings.Join(missing, ", "))
		}
		return nil
	})
}
