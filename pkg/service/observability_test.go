package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/pkg/tracing"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// syncBuffer is a log sink written by several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		out = append(out, m)
	}
	return out
}

// A command carried over NATS with the caller's trace context is handled
// inside a span of that trace: the handler's log lines and the runner's
// own ("command failed") carry the trace id, their span id, and the order
// the command names, as JSON fields.
func TestCommandLogLinesCarryTraceAndOrder(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	defer otel.SetTracerProvider(prev)

	var sink syncBuffer
	log := service.NewLogger(&sink, "json", "info").With("service", "orders")
	nc := testkit.Connect(t, testkit.RunJetStream(t))
	e := service.NewEndpoints(context.Background(), nc, log, 4, 5*time.Second, func(err error, _ any) *problem.Problem {
		return &problem.Problem{Type: problem.TypeUnavailable, Title: "failed", Status: 500, Detail: err.Error()}
	})
	defer e.Close()
	type cancelCmd struct {
		OrderID string `json:"orderId"`
	}
	handlerSpan := make(chan trace.SpanContext, 1)
	svc, err := micro.AddService(nc, micro.Config{Name: "orders-test", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Stop() }()
	if err := svc.AddEndpoint("cancel", service.Handle(e, func(ctx context.Context, c cancelCmd) (struct{}, error) {
		handlerSpan <- trace.SpanContextFromContext(ctx)
		log.InfoContext(ctx, "cancelling")
		return struct{}{}, errors.New("log unavailable")
	}), micro.WithEndpointSubject("svc.test.cancel")); err != nil {
		t.Fatal(err)
	}

	ctx, caller := tp.Tracer("test").Start(context.Background(), "caller")
	msg := nats.NewMsg("svc.test.cancel")
	msg.Data = []byte(`{"orderId":"o-123"}`)
	tracing.InjectNATS(ctx, msg.Header)
	if _, err := nc.RequestMsg(msg, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	caller.End()
	sc := <-handlerSpan
	if sc.TraceID() != caller.SpanContext().TraceID() {
		t.Fatal("the handler is not in the caller's trace")
	}
	var got []string
	testkit.Eventually(t, 5*time.Second, func() error {
		got = got[:0]
		for _, l := range sink.lines(t) {
			if l["trace_id"] != sc.TraceID().String() || l["span_id"] != sc.SpanID().String() || l["order_id"] != "o-123" || l["service"] != "orders" {
				return fmt.Errorf("line without its trace, span or order: %v", l)
			}
			got = append(got, l["msg"].(string))
		}
		if len(got) != 2 {
			return fmt.Errorf("lines %v", got)
		}
		return nil
	})
	if got[0] != "cancelling" || got[1] != "command failed" {
		t.Fatalf("lines %v", got)
	}
}

// nullProjector keeps nothing but its checkpoint.
type nullProjector struct{}

func (nullProjector) Name() string     { return "null" }
func (nullProjector) Stream() string   { return events.Orders.Stream }
func (nullProjector) Filter() []string { return []string{events.Orders.Wildcard()} }
func (nullProjector) Apply(context.Context, *projection.Tx, eventstore.Record) error {
	return nil
}

// sample reads one series of a gathered registry (-1 when absent).
func sample(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// Every service's registry exports its durable consumers' lag and counts,
// its projectors' lag and the streams' sizes: events appended while the
// readers are held show as lag, which returns to zero once they caught up.
func TestEventLogMetricsAreExported(t *testing.T) {
	nc := testkit.Connect(t, testkit.RunJetStream(t))
	js := testkit.JetStream(t, nc)
	ctx := context.Background()
	if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{}, events.Orders); err != nil {
		t.Fatal(err)
	}
	store := eventstore.New(js, events.NewRegistry(), events.Orders)
	const n = 4
	for i := 0; i < n; i++ {
		id := "m" + strconv.Itoa(i)
		env, err := events.NewEnvelope(id, events.OrderPlaced{RestaurantID: "r1"}, time.Now(), events.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Append(ctx, eventstore.Append{AggregateID: id, CommandID: id, Events: []events.Envelope{env}}); err != nil {
			t.Fatal(err)
		}
	}
	reg := service.NewMetrics()

	release := make(chan struct{})
	c, err := eventstore.Consume(ctx, js, events.NewRegistry(), eventstore.ConsumerSpec{Stream: "ORDERS", Durable: "metrics-test"},
		func(ctx context.Context, _ eventstore.Record) error {
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}, eventstore.ConsumerOptions{LagInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	cons := map[string]string{"stream": "ORDERS", "consumer": "metrics-test"}
	testkit.Eventually(t, 10*time.Second, func() error {
		p, a := sample(t, reg, service.MetricConsumerPending, cons), sample(t, reg, service.MetricConsumerAckPending, cons)
		if p+a != n || a <= 0 {
			return fmt.Errorf("pending %v, ack pending %v", p, a)
		}
		return nil
	})

	rdb, keyspace := testkit.Redis(t)
	rt := projection.New(js, rdb, events.NewRegistry(), nullProjector{}, projection.Options{Keyspace: keyspace, LagInterval: 20 * time.Millisecond})
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rt.Run(pctx) }()
	defer func() { stop(); <-done }()

	close(release)
	proj := map[string]string{"projector": "null", "stream": "ORDERS"}
	testkit.Eventually(t, 10*time.Second, func() error {
		for name, want := range map[string]float64{
			service.MetricConsumerPending: 0, service.MetricConsumerAckPending: 0, service.MetricConsumerRedelivered: 0,
		} {
			if got := sample(t, reg, name, cons); got != want {
				return fmt.Errorf("%s = %v", name, got)
			}
		}
		if got := sample(t, reg, service.MetricEventsConsumed, map[string]string{"stream": "ORDERS", "consumer": "metrics-test", "outcome": "handled"}); got != n {
			return fmt.Errorf("consumed %v", got)
		}
		for name, want := range map[string]float64{
			service.MetricProjectionLagEvents: 0, service.MetricProjectionLagSeconds: 0, service.MetricProjectionCheckpoint: n,
			service.MetricProjectionApplied: n,
		} {
			if got := sample(t, reg, name, proj); got != want {
				return fmt.Errorf("%s = %v", name, got)
			}
		}
		if got := sample(t, reg, service.MetricStreamEvents, map[string]string{"stream": "ORDERS"}); got != n {
			return fmt.Errorf("stream events %v", got)
		}
		return nil
	})
}
