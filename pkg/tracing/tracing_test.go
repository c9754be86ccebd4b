package tracing

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestTraceContextCrossesNATSAndEnvelopes(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, span := tp.Tracer("t").Start(context.Background(), "root")
	h := nats.Header{}
	InjectNATS(ctx, h)
	if h.Get("traceparent") == "" {
		t.Fatal("nothing injected")
	}
	got := trace.SpanContextFromContext(ExtractNATS(context.Background(), h))
	if got.TraceID() != span.SpanContext().TraceID() {
		t.Fatal("trace lost across NATS headers")
	}
	tp2 := TraceParent(ctx)
	back := trace.SpanContextFromContext(FromTraceParent(context.Background(), tp2))
	if back.TraceID() != span.SpanContext().TraceID() || back.SpanID() != span.SpanContext().SpanID() {
		t.Fatal("trace lost across a stored traceparent")
	}
	if TraceParent(context.Background()) != "" || FromTraceParent(context.Background(), "") != context.Background() {
		t.Fatal("no span must give no traceparent")
	}
	span.End()
}
