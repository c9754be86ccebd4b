package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Namespace is the service.namespace resource attribute of every process.
const Namespace = "awesome-pizza"

// Setup installs the process's tracer provider, configured by the standard
// OpenTelemetry environment:
//
//   - OTEL_SDK_DISABLED=true: nothing is installed (spans stay no-ops, only
//     a caller's traceparent is passed on).
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or
//     OTEL_EXPORTER_OTLP_ENDPOINT (a base URL; /v1/traces is appended):
//     spans are exported over OTLP/HTTP (http/protobuf, or http/json by
//     OTEL_EXPORTER_OTLP_PROTOCOL; grpc is refused), with the exporter's
//     other OTEL_EXPORTER_OTLP_* settings (headers, timeout, certificates,
//     compression) and the batch processor's OTEL_BSP_*.
//   - OTEL_TRACES_EXPORTER=none turns the export off; otlp exports to the
//     default endpoint (http://localhost:4318) when none is given.
//   - OTEL_TRACES_SAMPLER(_ARG) choose the sampler (default: follow the
//     caller's decision, sample new traces); OTEL_SERVICE_NAME and
//     OTEL_RESOURCE_ATTRIBUTES override the resource.
//
// Without an exporter, spans are still created (and not kept), so log
// lines carry trace ids that match across the services.
//
// The returned shutdown flushes the spans not yet exported; call it once
// at exit.
func Setup(ctx context.Context, service string, log *slog.Logger) (shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	if log == nil {
		log = slog.Default()
	}
	if on, _ := strconv.ParseBool(os.Getenv("OTEL_SDK_DISABLED")); on {
		log.Info("OpenTelemetry disabled (OTEL_SDK_DISABLED)")
		return noop, nil
	}
	exp, endpoint, err := exporterFromEnv(ctx)
	if err != nil {
		return noop, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service), attribute.String("service.namespace", Namespace)),
		resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithHost())
	if err != nil {
		// A partial resource is still usable; say what was missing.
		log.Warn("OpenTelemetry resource incomplete", "err", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exp != nil {
		opts = append(opts, sdktrace.WithBatcher(exp))
		log.Info("exporting traces over OTLP/HTTP", "endpoint", endpoint)
	} else {
		log.Debug("traces are not exported (set OTEL_EXPORTER_OTLP_ENDPOINT to export them)")
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetErrorHandler(newErrorLogger(log, 30*time.Second))
	return tp.Shutdown, nil
}

// exporterFromEnv builds the OTLP/HTTP exporter the environment asks for,
// nil when it asks for none.
func exporterFromEnv(ctx context.Context) (sdktrace.SpanExporter, string, error) {
	kind := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")))
	switch kind {
	case "", "otlp":
	case "none":
		return nil, "", nil
	default:
		return nil, "", fmt.Errorf("OTEL_TRACES_EXPORTER=%s is not supported (use otlp or none)", kind)
	}
	endpoint := firstEnv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
	if endpoint == "" && kind == "" {
		return nil, "", nil
	}
	switch p := firstEnv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); p {
	case "", "http/protobuf", "http/json":
	default:
		return nil, "", fmt.Errorf("OTLP protocol %q is not supported: traces are exported over HTTP (http/protobuf or http/json, port 4318)", p)
	}
	if endpoint == "" {
		endpoint = "http://localhost:4318"
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("OTLP trace exporter: %w", err)
	}
	return exp, endpoint, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(os.Getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

// errorLogger logs OpenTelemetry's internal errors (a collector that is
// down fails every export) at most once per interval, counting the rest.
type errorLogger struct {
	log        *slog.Logger
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newErrorLogger(log *slog.Logger, every time.Duration) *errorLogger {
	return &errorLogger{log: log, every: every}
}

func (e *errorLogger) Handle(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	e.mu.Lock()
	now := time.Now()
	if !e.last.IsZero() && now.Sub(e.last) < e.every {
		e.suppressed++
		e.mu.Unlock()
		return
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	e.mu.Unlock()
	e.log.Warn("OpenTelemetry error", "err", err, "suppressed_since_last", n)
}
