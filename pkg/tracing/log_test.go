package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// A line logged inside a span carries the span's ids and the order the
// context names; a line outside carries neither; an order_id the logger
// already has is not repeated.
func TestLogLinesCarryTraceAndOrder(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("service", "test")
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	ctx, span := tp.Tracer("t").Start(WithOrderID(context.Background(), "o-42"), "work")
	sc := span.SpanContext()

	log.InfoContext(ctx, "inside")
	log.Info("no context")
	log.InfoContext(context.Background(), "outside")
	log.With("order_id", "o-7").WarnContext(ctx, "own order")
	log.ErrorContext(ctx, "explicit order", "order_id", "o-9")
	log.WithGroup("g").InfoContext(ctx, "grouped", "k", "v")
	span.End()

	lines := logLines(t, &buf)
	if len(lines) != 6 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	in := lines[0]
	if in["trace_id"] != sc.TraceID().String() || in["span_id"] != sc.SpanID().String() || in["order_id"] != "o-42" || in["service"] != "test" {
		t.Fatalf("line inside the span: %v", in)
	}
	for _, l := range lines[1:3] {
		if _, ok := l["trace_id"]; ok {
			t.Fatalf("line outside a span has a trace id: %v", l)
		}
		if _, ok := l["order_id"]; ok {
			t.Fatalf("line outside an order has an order id: %v", l)
		}
	}
	for i, want := range map[int]string{3: "o-7", 4: "o-9"} {
		if lines[i]["order_id"] != want || lines[i]["trace_id"] != sc.TraceID().String() {
			t.Fatalf("line %d: %v", i, lines[i])
		}
		if n := strings.Count(strings.Split(buf.String(), "\n")[i], `"order_id"`); n != 1 {
			t.Fatalf("line %d has %d order ids", i, n)
		}
	}
	if g, _ := lines[5]["g"].(map[string]any); g["trace_id"] != sc.TraceID().String() {
		t.Fatalf("grouped line: %v", lines[5])
	}
	// Wrapping twice adds nothing twice.
	if h := LogHandler(LogHandler(slog.NewJSONHandler(&buf, nil))); h.(*logHandler).inner == nil {
		t.Fatal("no inner handler")
	}
}

func TestOrderIDFromJSON(t *testing.T) {
	for in, want := range map[string]string{
		`{"orderId":"o1","x":1}`:    "o1",
		`{"orderId":12}`:            "",
		`{"order":{"orderId":"x"}}`: "",
		`[1]`:                       "",
		`not json`:                  "",
		``:                          "",
	} {
		if got := OrderIDFromJSON([]byte(in)); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}

func TestStartNamesTheOrder(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	withProvider(t, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	_, s := Start(WithOrderID(context.Background(), "o-1"), "handle", trace.SpanKindServer, "k", "v")
	s.End()
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans", len(ended))
	}
	attrs := map[string]string{}
	for _, a := range ended[0].Attributes() {
		attrs[string(a.Key)] = a.Value.AsString()
	}
	if attrs["order_id"] != "o-1" || attrs["k"] != "v" {
		t.Fatalf("attributes %v", attrs)
	}
}
