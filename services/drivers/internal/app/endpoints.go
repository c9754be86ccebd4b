package app

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/drivers/internal/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Endpoints serves the commands over NATS micro. Each request is handled
// on its own goroutine (bounded by a semaphore), so one slow append does
// not hold up the others. Replies are published to the request's reply
// subject directly: micro.Request's Respond and Error record their outcome
// in the request, which micro reads when the handler returns, so calling
// them from another goroutine is a data race.
type Endpoints struct {
	nc      *nats.Conn
	d       *Dispatcher
	log     *slog.Logger
	sem     chan struct{}
	timeout time.Duration
	baseCtx context.Context

	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
}

// NewEndpoints returns the endpoint handlers; concurrency bounds commands in flight.
func NewEndpoints(ctx context.Context, nc *nats.Conn, d *Dispatcher, log *slog.Logger, concurrency int) *Endpoints {
	if concurrency <= 0 {
		concurrency = 256
	}
	return &Endpoints{nc: nc, d: d, log: log, sem: make(chan struct{}, concurrency), timeout: 10 * time.Second, baseCtx: ctx}
}

// Close refuses further commands (503) and waits until every command in
// flight has been answered. Requests can still arrive while the micro
// service's subscriptions drain.
func (e *Endpoints) Close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.wg.Wait()
}

// begin admits a command unless the endpoints are closed.
func (e *Endpoints) begin() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	return true
}

// Register adds the endpoints to a micro service.
func (e *Endpoints) Register(svc micro.Service) error {
	for subject, h := range map[string]micro.HandlerFunc{
		driversapi.SubjectRegister: handle(e, e.d.Register),
		driversapi.SubjectStatus:   handle(e, e.d.SetStatus),
		driversapi.SubjectLocation: handle(e, e.d.ReportLocation),
		driversapi.SubjectPickup:   handle(e, e.d.PickUp),
		driversapi.SubjectDeliver:  handle(e, e.d.Deliver),
		driversapi.SubjectAssign:   handle(e, e.d.Assign),
	} {
		name := strings.TrimPrefix(subject, "svc.drivers.")
		if err := svc.AddEndpoint(name, h, micro.WithEndpointSubject(subject)); err != nil {
			return err
		}
	}
	return nil
}

func handle[C, R any](e *Endpoints, fn func(context.Context, C) (R, error)) micro.HandlerFunc {
	return func(req micro.Request) {
		subject, reply, data := req.Subject(), req.Reply(), req.Data()
		if !e.begin() {
			e.respondProblem(reply, &problem.Problem{Type: problem.TypeUnavailable, Title: "The drivers service is stopping", Status: 503, Detail: "retry the command"})
			return
		}
		e.sem <- struct{}{}
		go func() {
			defer func() { <-e.sem; e.wg.Done() }()
			var cmd C
			if err := codec.Unmarshal(data, &cmd); err != nil {
				e.respondProblem(reply, problem.Malformed("", "command is not valid JSON: "+err.Error()))
				return
			}
			ctx, cancel := context.WithTimeout(e.baseCtx, e.timeout)
			defer cancel()
			out, err := fn(ctx, cmd)
			if err != nil {
				status := ""
				if r, ok := any(out).(driversapi.CommandReply); ok {
					status = r.Driver.Status
				}
				p := ToProblem(err, status)
				if p.Status >= 500 {
					e.log.Error("command failed", "subject", subject, "err", err)
				}
				e.respondProblem(reply, p)
				return
			}
			b, err := codec.Marshal(out)
			if err != nil {
				e.respondProblem(reply, &problem.Problem{Type: problem.TypeInternal, Title: "Internal error", Status: 500})
				return
			}
			e.respond(reply, &nats.Msg{Data: b})
		}()
	}
}

// respondProblem sends a typed micro error reply: the status as the error
// code, the problem document as the body.
func (e *Endpoints) respondProblem(reply string, p *problem.Problem) {
	b, _ := json.Marshal(p)
	m := &nats.Msg{Data: b, Header: nats.Header{}}
	m.Header.Set(micro.ErrorHeader, p.Title)
	m.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(p.Status))
	e.respond(reply, m)
}

func (e *Endpoints) respond(reply string, m *nats.Msg) {
	if reply == "" {
		return // a publish without a reply subject expects no answer
	}
	m.Subject = reply
	if err := e.nc.PublishMsg(m); err != nil {
		e.log.Warn("reply not sent", "err", err)
	}
}

// ToProblem maps an application or domain error to the problem the caller
// gets. currentStatus is the driver's status when the command was refused
// (empty when unknown).
func ToProblem(err error, currentStatus string) *problem.Problem {
	var (
		p  *problem.Problem
		ve *domain.ValidationError
	)
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &ve):
		fields := make([]problem.FieldError, len(ve.Fields))
		for i, f := range ve.Fields {
			fields[i] = problem.FieldError{Field: f.Field, Detail: f.Detail}
		}
		return problem.Validation(fields...)
	case errors.Is(err, ErrDriverNotFound), errors.Is(err, domain.ErrNotRegistered):
		return problem.NotFound("Driver")
	case errors.Is(err, ErrOrderNotFound):
		nf := problem.NotFound("Delivery")
		nf.Detail = err.Error()
		return nf
	case errors.Is(err, domain.ErrAlreadyRegistered):
		return problem.Conflict("a driver with this id is already registered")
	case errors.Is(err, domain.ErrHoldingOrder), errors.Is(err, domain.ErrNotAvailable), errors.Is(err, domain.ErrNotHolding),
		errors.Is(err, domain.ErrAlreadyPickedUp), errors.Is(err, domain.ErrNotPickedUp), errors.Is(err, domain.ErrNotWaiting),
		errors.Is(err, domain.ErrOtherRestaurant):
		return &problem.Problem{Type: problem.TypeInvalidTransition, Title: "The driver cannot do this now", Status: 409, Detail: err.Error(), CurrentStatus: currentStatus}
	case errors.Is(err, ErrConcurrentUpdate):
		return &problem.Problem{Type: problem.TypeConcurrentUpdate, Title: "The driver is being changed concurrently", Status: 409, Detail: err.Error()}
	case errors.Is(err, eventstore.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &problem.Problem{Type: problem.TypeUnavailable, Title: "The event log is unavailable", Status: 503, Detail: "the command may or may not have been stored; retry it with the same Idempotency-Key"}
	default:
		return &problem.Problem{Type: problem.TypeInternal, Title: "Internal error", Status: 500}
	}
}
