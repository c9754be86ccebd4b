package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// --trace-tail: where the slowest placements spend their time.
//
// During the first open-loop intake phase the platform's own spans are
// recorded in process. Each placement's trace is cut into consecutive
// stages that add up to its total. The report gives each stage's mean over
// the slowest 1 % of placements, against its median over all of them: the
// ratio shows which stage makes the tail.

// benchTailStages name the stages of a placement, in order.
var benchTailStages = []string{
	"gateway, before the command", // HTTP server span start → command request start
	"to the orders service",       // request start → the service's handler starts
	"orders service, before the append",
	"append to ORDERS",
	"after the append, until the reply arrives",
	"read-your-writes wait and response", // reply → HTTP server span end
}

// Span names of the stages' boundaries (the platform's tracing).
const (
	benchSpanPlace   = "POST /api/orders"
	benchSpanRequest = "request svc.orders.place"
	benchSpanHandle  = "handle svc.orders.place"
	benchSpanAppend  = "append ORDERS"
)

// benchTraceStart records the platform's spans until the returned stop
// is called; stop returns what was recorded.
func benchTraceStart() (stop func() []sdktrace.ReadOnlySpan) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	return func() []sdktrace.ReadOnlySpan {
		otel.SetTracerProvider(prev)
		// A shut down provider records nothing more, even for the
		// tracers taken from it while it was installed.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(ctx)
		return rec.Ended()
	}
}

// benchTailBreakdown cuts each complete placement trace into the stages of
// benchTailStages. It returns the per-stage mean over the slowest 1 % (at
// least one placement), the per-stage median over all, and how many
// placements each covers. ok is false when no trace is complete.
func benchTailBreakdown(spans []sdktrace.ReadOnlySpan) (tail, median []time.Duration, nTail, nAll int, ok bool) {
	type parts struct{ place, request, handle, app sdktrace.ReadOnlySpan }
	byTrace := map[trace.TraceID]*parts{}
	get := func(s sdktrace.ReadOnlySpan) *parts {
		id := s.SpanContext().TraceID()
		p := byTrace[id]
		if p == nil {
			p = &parts{}
			byTrace[id] = p
		}
		return p
	}
	// The first append under the handler is the placement's own; the
	// trace goes on with the appends of the reactions it sets off.
	handles := map[trace.SpanID]bool{}
	for _, s := range spans {
		switch s.Name() {
		case benchSpanPlace:
			get(s).place = s
		case benchSpanRequest:
			get(s).request = s
		case benchSpanHandle:
			get(s).handle = s
			handles[s.SpanContext().SpanID()] = true
		}
	}
	for _, s := range spans {
		if s.Name() != benchSpanAppend || !handles[s.Parent().SpanID()] {
			continue
		}
		if p := get(s); p.app == nil || s.StartTime().Before(p.app.StartTime()) {
			p.app = s
		}
	}
	type placement struct {
		total  time.Duration
		stages []time.Duration
	}
	var all []placement
	for _, p := range byTrace {
		if p.place == nil || p.request == nil || p.handle == nil || p.app == nil {
			continue
		}
		cuts := []time.Time{p.place.StartTime(), p.request.StartTime(), p.handle.StartTime(), p.app.StartTime(), p.app.EndTime(), p.request.EndTime(), p.place.EndTime()}
		st := make([]time.Duration, len(benchTailStages))
		for i := range st {
			st[i] = cuts[i+1].Sub(cuts[i])
		}
		all = append(all, placement{total: p.place.EndTime().Sub(p.place.StartTime()), stages: st})
	}
	if len(all) == 0 {
		return nil, nil, 0, 0, false
	}
	slices.SortFunc(all, func(a, b placement) int { return int(b.total - a.total) })
	nTail = max(len(all)/100, 1)
	tail = make([]time.Duration, len(benchTailStages))
	median = make([]time.Duration, len(benchTailStages))
	for i := range benchTailStages {
		var sum time.Duration
		col := make([]time.Duration, len(all))
		for j, p := range all {
			col[j] = p.stages[i]
			if j < nTail {
				sum += p.stages[i]
			}
		}
		tail[i] = sum / time.Duration(nTail)
		slices.Sort(col)
		median[i] = col[len(col)/2]
	}
	return tail, median, nTail, len(all), true
}

// benchReportTail adds the breakdown of a traced phase to the report.
func benchReportTail(r *benchRecorder, tag string, spans []sdktrace.ReadOnlySpan) {
	tail, median, nTail, nAll, ok := benchTailBreakdown(spans)
	if !ok {
		r.logf("  --trace-tail: no complete placement trace among %d spans", len(spans))
		return
	}
	var line strings.Builder
	for i, name := range benchTailStages {
		fmt.Fprintf(&line, "\n    %-45s slowest %6.2f ms, median %6.2f ms", name, benchMS(tail[i]), benchMS(median[i]))
		r.addVs(fmt.Sprintf("slowest 1%% %s: %s", tag, name), "ms", benchMS(tail[i]), benchMS(median[i]),
			fmt.Sprintf("--trace-tail: mean over the slowest %d of %d traced placements; baseline: the stage's median over all of them", nTail, nAll))
	}
	r.logf("  where the slowest %d of %d traced placements spent their time:%s", nTail, nAll, line.String())
}
