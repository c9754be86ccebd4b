package tracing

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// withProvider installs tp as the global provider for the test.
func withProvider(t *testing.T, tp trace.TracerProvider) {
	t.Helper()
	prev, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); otel.SetTextMapPropagator(prevProp) })
}

// collector is an in-process OTLP/HTTP receiver.
type collector struct {
	mu    sync.Mutex
	paths []string
	reqs  []*coltracepb.ExportTraceServiceRequest
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.paths = append(c.paths, r.URL.Path)
	c.reqs = append(c.reqs, req)
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// spans lists the received spans by name, with the service.name of their resource.
func (c *collector) spans() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for _, req := range c.reqs {
		for _, rs := range req.GetResourceSpans() {
			svc := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					svc = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					out[s.GetName()] = svc
				}
			}
		}
	}
	return out
}

func clearOTelEnv(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
}

// Spans reach an OTLP/HTTP collector named by the standard environment:
// the base endpoint gets /v1/traces appended, the per-signal one is used as
// is; the resource names the service.
func TestSetupExportsOverOTLP(t *testing.T) {
	for _, tc := range []struct{ env, suffix, path string }{
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "", "/v1/traces"},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/custom/traces", "/custom/traces"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			clearOTelEnv(t)
			col := &collector{}
			srv := httptest.NewServer(col)
			defer srv.Close()
			t.Setenv(tc.env, srv.URL+tc.suffix)
			withProvider(t, otel.GetTracerProvider())

			shutdown, err := Setup(context.Background(), "orders", slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			ctx, parent := Start(context.Background(), "handle svc.orders.place", trace.SpanKindServer)
			_, child := Start(ctx, "append ORDERS", trace.SpanKindProducer)
			child.End()
			parent.End()
			// The W3C propagator is installed for libraries that use the global one.
			carrier := propagation.MapCarrier{}
			otel.GetTextMapPropagator().Inject(ctx, carrier)
			if carrier["traceparent"] == "" {
				t.Fatal("global propagator does not write traceparent")
			}
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := shutdown(sctx); err != nil {
				t.Fatal(err)
			}
			got := col.spans()
			if got["handle svc.orders.place"] != "orders" || got["append ORDERS"] != "orders" {
				t.Fatalf("collector received %v", got)
			}
			col.mu.Lock()
			defer col.mu.Unlock()
			for _, p := range col.paths {
				if p != tc.path {
					t.Fatalf("exported to %s, want %s", p, tc.path)
				}
			}
		})
	}
}

// Without an endpoint nothing is exported, yet spans have ids (so logs
// correlate); OTEL_SDK_DISABLED installs nothing; gRPC and unknown
// exporters are refused with a clear error.
func TestSetupWithoutExporter(t *testing.T) {
	clearOTelEnv(t)
	withProvider(t, otel.GetTracerProvider())
	shutdown, err := Setup(context.Background(), "kitchen", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, span := Start(context.Background(), "x", trace.SpanKindInternal)
	if !span.SpanContext().IsValid() {
		t.Fatal("no span ids without an exporter")
	}
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	t.Setenv("OTEL_SDK_DISABLED", "true")
	before := otel.GetTracerProvider()
	if _, err := Setup(context.Background(), "kitchen", slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if otel.GetTracerProvider() != before {
		t.Fatal("OTEL_SDK_DISABLED installed a provider")
	}
	t.Setenv("OTEL_SDK_DISABLED", "")

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	if _, err := Setup(context.Background(), "kitchen", slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("grpc accepted")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "zipkin")
	if _, err := Setup(context.Background(), "kitchen", slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("zipkin accepted")
	}
}

func TestErrorLoggerIsRateLimited(t *testing.T) {
	var n int
	h := slog.New(countHandler{&n})
	e := newErrorLogger(h, time.Hour)
	for i := 0; i < 5; i++ {
		e.Handle(io.ErrUnexpectedEOF)
	}
	e.Handle(context.Canceled)
	if n != 1 {
		t.Fatalf("%d lines", n)
	}
}

type countHandler struct{ n *int }

func (countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (c countHandler) Handle(context.Context, slog.Record) error {
	*c.n++
	return nil
}
func (c countHandler) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c countHandler) WithGroup(string) slog.Handler      { return c }
