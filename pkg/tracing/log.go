package tracing

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"go.opentelemetry.io/otel/trace"
)

// Log attribute names the handler adds.
const (
	LogTraceID = "trace_id"
	LogSpanID  = "span_id"
	LogOrderID = "order_id"
)

type orderKey struct{}

// WithOrderID marks ctx as concerning an order: log lines written with
// that context (InfoContext and friends) carry its id, and spans started
// from it get an order_id attribute. An empty id leaves ctx as it is.
func WithOrderID(ctx context.Context, orderID string) context.Context {
	if orderID == "" {
		return ctx
	}
	return context.WithValue(ctx, orderKey{}, orderID)
}

// OrderID is the order ctx concerns, "" if none.
func OrderID(ctx context.Context) string {
	if ctx == nil {
		return ""
	}
	id, _ := ctx.Value(orderKey{}).(string)
	return id
}

// OrderIDFromJSON reads a top-level "orderId" field of a JSON object (the
// name every event payload and command of the platform uses), "" when there
// is none or the document is not an object.
func OrderIDFromJSON(data []byte) string {
	var v struct {
		OrderID json.RawMessage `json:"orderId"`
	}
	if len(data) == 0 || data[0] != '{' || codec.Unmarshal(data, &v) != nil {
		return ""
	}
	var id string
	if codec.Unmarshal(v.OrderID, &id) != nil {
		return ""
	}
	return id
}

// LogHandler wraps a slog handler so that every record logged with a
// context (InfoContext, WarnContext, ...) inside a span carries the span's
// trace_id and span_id, and order_id when the context names an order
// (WithOrderID) and the logger does not set one already. Records logged
// without a context, or outside any span, pass through unchanged.
func LogHandler(h slog.Handler) slog.Handler {
	if lh, ok := h.(*logHandler); ok {
		return lh
	}
	return &logHandler{inner: h}
}

type logHandler struct {
	inner slog.Handler
	// hasOrder: an order_id attribute was added with Logger.With, so the
	// context's is not repeated.
	hasOrder bool
}

func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx == nil {
		return h.inner.Handle(ctx, r)
	}
	var add [3]slog.Attr
	n := 0
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		add[n] = slog.String(LogTraceID, sc.TraceID().String())
		add[n+1] = slog.String(LogSpanID, sc.SpanID().String())
		n += 2
	}
	if id := OrderID(ctx); id != "" && !h.hasOrder && !recordHas(r, LogOrderID) {
		add[n] = slog.String(LogOrderID, id)
		n++
	}
	if n == 0 {
		return h.inner.Handle(ctx, r)
	}
	r = r.Clone()
	r.AddAttrs(add[:n]...)
	return h.inner.Handle(ctx, r)
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	has := h.hasOrder
	for _, a := range attrs {
		if a.Key == LogOrderID {
			has = true
		}
	}
	return &logHandler{inner: h.inner.WithAttrs(attrs), hasOrder: has}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{inner: h.inner.WithGroup(name), hasOrder: h.hasOrder}
}

func recordHas(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}
