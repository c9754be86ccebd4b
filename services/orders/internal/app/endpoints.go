package app

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/orders/internal/domain"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats.go/micro"
)

// Endpoints serves the commands over NATS micro. Each request is handled on
// its own goroutine (bounded by a semaphore), so one slow append does not
// hold up the others.
type Endpoints struct {
	cmds    *Commands
	log     *slog.Logger
	sem     chan struct{}
	timeout time.Duration
	baseCtx context.Context
	wg      sync.WaitGroup
}

// Wait blocks until every command in flight has been answered.
func (e *Endpoints) Wait() { e.wg.Wait() }

// The handler deadline (8 s) stays below the gateway's command timeout
// (10 s), so a slow command is answered with a 503 from here rather than
// left to time out at the caller while it may still be stored.

// NewEndpoints returns the endpoint handlers; concurrency bounds commands in flight.
func NewEndpoints(ctx context.Context, cmds *Commands, log *slog.Logger, concurrency int) *Endpoints {
	if concurrency <= 0 {
		concurrency = 256
	}
	return &Endpoints{cmds: cmds, log: log, sem: make(chan struct{}, concurrency), timeout: 8 * time.Second, baseCtx: ctx}
}

// Register adds the endpoints to a micro service.
func (e *Endpoints) Register(svc micro.Service) error {
	for subject, h := range map[string]micro.HandlerFunc{
		ordersapi.SubjectPlace:      handle(e, e.cmds.Place),
		ordersapi.SubjectCancel:     handle(e, e.cmds.Cancel),
		ordersapi.SubjectTransition: handle(e, e.cmds.Transition),
	} {
		name := subject[len("svc.orders."):]
		if err := svc.AddEndpoint(name, h, micro.WithEndpointSubject(subject)); err != nil {
			return err
		}
	}
	return nil
}

func handle[C any](e *Endpoints, fn func(context.Context, C) (ordersapi.CommandReply, error)) micro.HandlerFunc {
	return func(req micro.Request) {
		e.sem <- struct{}{}
		e.wg.Add(1)
		go func() {
			defer func() { <-e.sem; e.wg.Done() }()
			var cmd C
			if err := json.Unmarshal(req.Data(), &cmd); err != nil {
				respondProblem(req, ordersapi.Malformed("", "command is not valid JSON: "+err.Error()))
				return
			}
			ctx, cancel := context.WithTimeout(e.baseCtx, e.timeout)
			defer cancel()
			reply, err := fn(ctx, cmd)
			if err != nil {
				p := ToProblem(err, reply)
				if p.Status >= 500 {
					e.log.Error("command failed", "subject", req.Subject(), "err", err)
				}
				respondProblem(req, p)
				return
			}
			_ = req.RespondJSON(reply)
		}()
	}
}

func respondProblem(req micro.Request, p *ordersapi.Problem) {
	b, _ := json.Marshal(p)
	_ = req.Error(strconv.Itoa(p.Status), p.Title, b)
}

// ToProblem maps an application error to the problem the caller gets.
func ToProblem(err error, reply ordersapi.CommandReply) *ordersapi.Problem {
	var (
		p  *ordersapi.Problem
		ve *domain.ValidationError
		te *domain.TransitionError
	)
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &ve):
		fields := make([]ordersapi.FieldError, len(ve.Fields))
		for i, f := range ve.Fields {
			fields[i] = ordersapi.FieldError{Field: f.Field, Detail: f.Detail}
		}
		return ordersapi.Validation(fields...)
	case errors.As(err, &te):
		return &ordersapi.Problem{Type: ordersapi.TypeInvalidTransition, Title: "The order cannot make this transition", Status: 409, Detail: te.Error(), CurrentStatus: string(te.From)}
	case errors.Is(err, domain.ErrWrongDriver), errors.Is(err, domain.ErrDriverRequired), errors.Is(err, domain.ErrReasonRequired):
		return &ordersapi.Problem{Type: ordersapi.TypeInvalidTransition, Title: "The order cannot make this transition", Status: 409, Detail: err.Error(), CurrentStatus: reply.Order.Status}
	case errors.Is(err, ErrNotFound):
		return &ordersapi.Problem{Type: ordersapi.TypeNotFound, Title: "Order not found", Status: 404}
	case errors.Is(err, ErrIdempotencyMismatch):
		return &ordersapi.Problem{Type: ordersapi.TypeIdempotencyKeyReused, Title: "Idempotency-Key reused with a different request", Status: 422, Detail: err.Error(),
			Errors: []ordersapi.FieldError{{Field: "Idempotency-Key", Detail: "was already used for a different order request"}}}
	case errors.Is(err, ErrConcurrentUpdate):
		return &ordersapi.Problem{Type: ordersapi.TypeConcurrentUpdate, Title: "The order is being changed concurrently", Status: 409, Detail: err.Error()}
	case errors.Is(err, eventstore.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &ordersapi.Problem{Type: ordersapi.TypeUnavailable, Title: "The event log is unavailable", Status: 503, Detail: "the command may or may not have been stored; retry it with the same Idempotency-Key"}
	default:
		return &ordersapi.Problem{Type: ordersapi.TypeInternal, Title: "Internal error", Status: 500}
	}
}
