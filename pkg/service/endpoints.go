package service

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/tracing"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Endpoints runs a service's micro command handlers concurrently: each
// request on its own goroutine, at most Concurrency at once, each within
// Timeout, answered with JSON or a typed problem reply. micro alone would
// run one endpoint's requests one after another, so one slow append would
// hold up every command behind it.
type Endpoints struct {
	nc      *nats.Conn
	log     *slog.Logger
	sem     chan struct{}
	timeout time.Duration
	base    context.Context
	mu      sync.Mutex // guards closed and wg.Add against Close
	closed  bool
	wg      sync.WaitGroup
	// ToProblem maps a handler's error (and the reply it returned with it)
	// to the problem the caller gets.
	toProblem func(err error, reply any) *problem.Problem
}

// NewEndpoints returns a runner. base bounds the handlers' lifetime beyond
// their timeout (pass a context that outlives Stop, so commands in flight
// finish); toProblem maps errors at the service's edge.
func NewEndpoints(base context.Context, nc *nats.Conn, log *slog.Logger, concurrency int, timeout time.Duration, toProblem func(error, any) *problem.Problem) *Endpoints {
	if concurrency <= 0 {
		concurrency = 256
	}
	if timeout <= 0 {
		timeout = 8 * time.Second
	}
	return &Endpoints{nc: nc, log: log, sem: make(chan struct{}, concurrency), timeout: timeout, base: base, toProblem: toProblem}
}

// Close refuses requests from now on (answered with 503: micro drains its
// subscriptions asynchronously, so some may still arrive after the
// service's Stop) and waits until every request in flight has been answered.
func (e *Endpoints) Close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.wg.Wait()
}

// Wait is Close: kept for callers that stop their micro service first.
func (e *Endpoints) Wait() { e.Close() }

// enter registers a request, or reports that the runner is closed.
func (e *Endpoints) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	return true
}

// Handle adapts a typed command handler to micro. The command is decoded
// from JSON; the reply is encoded as JSON; an error becomes a typed micro
// error whose code is the HTTP status and whose data is the problem.
func Handle[C, R any](e *Endpoints, fn func(context.Context, C) (R, error)) micro.HandlerFunc {
	return func(req micro.Request) {
		// Take what the goroutine needs now: the request must not be used
		// after this function returns (see RespondJSON).
		subject, replyTo, data, headers := req.Subject(), req.Reply(), req.Data(), req.Headers()
		if !e.enter() {
			_ = RespondProblem(e.nc, replyTo, &problem.Problem{Type: problem.TypeUnavailable, Title: "The service is shutting down", Status: 503,
				Detail: "retry the command (with the same Idempotency-Key)"})
			return
		}
		e.sem <- struct{}{}
		go func() {
			defer func() { <-e.sem; e.wg.Done() }()
			var cmd C
			if err := codec.Unmarshal(data, &cmd); err != nil {
				_ = RespondProblem(e.nc, replyTo, problem.Malformed("", "command is not valid JSON: "+err.Error()))
				return
			}
			ctx, cancel := context.WithTimeout(e.base, e.timeout)
			defer cancel()
			// Commands name their order as "orderId": the handler's log
			// lines and span carry it.
			ctx = tracing.WithOrderID(tracing.ExtractNATS(ctx, headers), tracing.OrderIDFromJSON(data))
			ctx, span := tracing.Start(ctx, "handle "+subject, trace.SpanKindServer)
			defer span.End()
			reply, err := fn(ctx, cmd)
			if err != nil {
				p := e.toProblem(err, reply)
				if p.Status >= 500 {
					span.RecordError(err)
					span.SetStatus(codes.Error, p.Title)
					e.log.ErrorContext(ctx, "command failed", "subject", subject, "err", err)
				}
				_ = RespondProblem(e.nc, replyTo, p)
				return
			}
			if err := RespondJSON(e.nc, replyTo, reply); err != nil {
				e.log.WarnContext(ctx, "reply not sent", "subject", subject, "err", err)
			}
		}()
	}
}
