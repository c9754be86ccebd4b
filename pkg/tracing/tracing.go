// Package tracing carries W3C trace context across the platform's hops —
// HTTP requests, NATS requests and events in the log — so one order's path
// through the services is one OpenTelemetry trace. Spans go to the global
// tracer provider: a no-op until the program installs one (Setup, which
// exports over OTLP when the standard environment asks for it, or a
// recorder in tests). LogHandler puts the trace and span ids, and the
// order concerned, on every log line written inside a span.
package tracing

import (
	"context"
	"net/http"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// propagator reads and writes the traceparent and tracestate headers.
var propagator = propagation.TraceContext{}

// Tracer is the platform's tracer.
func Tracer() trace.Tracer { return otel.Tracer("github.com/awesome-pizza/pizza") }

// Start starts a span; attrs are string key/value pairs. A context that
// names an order (WithOrderID) gives the span an order_id attribute.
func Start(ctx context.Context, name string, kind trace.SpanKind, attrs ...string) (context.Context, trace.Span) {
	kv := make([]attribute.KeyValue, 0, len(attrs)/2+1)
	for i := 0; i+1 < len(attrs); i += 2 {
		kv = append(kv, attribute.String(attrs[i], attrs[i+1]))
	}
	if id := OrderID(ctx); id != "" {
		kv = append(kv, attribute.String(LogOrderID, id))
	}
	return Tracer().Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(kv...))
}

// Annotate adds string attributes (key/value pairs) to the context's span.
func Annotate(ctx context.Context, attrs ...string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	for i := 0; i+1 < len(attrs); i += 2 {
		span.SetAttributes(attribute.String(attrs[i], attrs[i+1]))
	}
}

// HTTPStatus records an HTTP response's status on the context's span; a
// server error marks the span failed.
func HTTPStatus(ctx context.Context, status int) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
}

// natsCarrier adapts NATS headers to the propagator.
type natsCarrier nats.Header

func (c natsCarrier) Get(key string) string { return nats.Header(c).Get(key) }
func (c natsCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }
func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectNATS writes the context's trace into message headers.
func InjectNATS(ctx context.Context, h nats.Header) { propagator.Inject(ctx, natsCarrier(h)) }

// ExtractNATS continues the trace carried by message headers.
func ExtractNATS(ctx context.Context, h map[string][]string) context.Context {
	return propagator.Extract(ctx, natsCarrier(h))
}

// TraceParent renders the context's span as a traceparent value ("" when
// there is no valid span), as stored in event envelopes.
func TraceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagator.Inject(ctx, c)
	return c["traceparent"]
}

// FromTraceParent continues the trace of a stored traceparent value.
func FromTraceParent(ctx context.Context, traceParent string) context.Context {
	if traceParent == "" {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceParent})
}

// HTTPCarrier adapts HTTP headers.
type HTTPCarrier = propagation.HeaderCarrier

// ExtractHTTP continues the trace of an incoming HTTP request's headers.
func ExtractHTTP(ctx context.Context, h HTTPCarrier) context.Context {
	return propagator.Extract(ctx, h)
}
