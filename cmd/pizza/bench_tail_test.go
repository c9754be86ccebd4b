package main

import (
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// placementSpans builds one placement's trace: the gateway's span, its
// request to the orders service, the handler, its append, and an append
// of a reaction under another span (which must not count). stages are the
// six stage lengths in ms.
func placementSpans(n byte, stages [6]float64) []sdktrace.ReadOnlySpan {
	t0 := time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Second)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	cut := []float64{0}
	for _, s := range stages {
		cut = append(cut, cut[len(cut)-1]+s)
	}
	tid := trace.TraceID{n}
	sc := func(id byte) trace.SpanContext {
		return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{n, id}})
	}
	stub := func(name string, id, parent byte, start, end float64) tracetest.SpanStub {
		s := tracetest.SpanStub{Name: name, SpanContext: sc(id), StartTime: at(start), EndTime: at(end)}
		if parent != 0 {
			s.Parent = sc(parent)
		}
		return s
	}
	stubs := tracetest.SpanStubs{
		stub(benchSpanPlace, 1, 0, cut[0], cut[6]),
		stub(benchSpanRequest, 2, 1, cut[1], cut[5]),
		stub(benchSpanHandle, 3, 2, cut[2], cut[4]+0.01),
		// An append under another span (a reaction's), earlier than the
		// placement's own: ignored.
		stub(benchSpanAppend, 9, 8, cut[2], cut[2]+0.5),
		stub(benchSpanAppend, 4, 3, cut[3], cut[4]),
	}
	return stubs.Snapshots()
}

func TestBenchTailBreakdown(t *testing.T) {
	var spans []sdktrace.ReadOnlySpan
	// 199 ordinary placements and one slow one, slow in its wait.
	for i := range 199 {
		spans = append(spans, placementSpans(byte(i+1), [6]float64{0.1, 0.1, 0.2, 0.1, 0.1, 1})...)
	}
	spans = append(spans, placementSpans(200, [6]float64{0.1, 0.1, 0.2, 0.1, 0.1, 30})...)
	// An incomplete trace (no handler span) is left out.
	spans = append(spans, placementSpans(201, [6]float64{1, 1, 1, 1, 1, 100})[:2]...)

	tail, median, nTail, nAll, ok := benchTailBreakdown(spans)
	if !ok || nAll != 200 || nTail != 2 {
		t.Fatalf("ok %v, %d complete placements, tail of %d; want 200 and 2", ok, nAll, nTail)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	wantTail := []float64{0.1, 0.1, 0.2, 0.1, 0.1, 15.5} // the slow one and an ordinary one
	wantMedian := []float64{0.1, 0.1, 0.2, 0.1, 0.1, 1}
	for i, name := range benchTailStages {
		if got := ms(tail[i]); got < wantTail[i]-0.002 || got > wantTail[i]+0.002 {
			t.Errorf("%s: slowest mean %.3f ms, want %.3f", name, got, wantTail[i])
		}
		if got := ms(median[i]); got < wantMedian[i]-0.002 || got > wantMedian[i]+0.002 {
			t.Errorf("%s: median %.3f ms, want %.3f", name, got, wantMedian[i])
		}
	}
	if _, _, _, _, ok := benchTailBreakdown(spans[:3]); ok {
		t.Error("a lone incomplete trace must give no breakdown")
	}
}
