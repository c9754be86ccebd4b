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
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/services/kitchen/internal/domain"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
	"github.com/nats-io/nats.go/micro"
)

// Endpoints serves the kitchen's commands over NATS micro. Each request is
// handled on its own goroutine, bounded by a semaphore.
type Endpoints struct {
	cmds    *Commands
	log     *slog.Logger
	sem     chan struct{}
	timeout time.Duration
	baseCtx context.Context
	wg      sync.WaitGroup
}

// NewEndpoints returns the endpoint handlers; concurrency bounds commands in flight.
func NewEndpoints(ctx context.Context, cmds *Commands, log *slog.Logger, concurrency int) *Endpoints {
	if concurrency <= 0 {
		concurrency = 64
	}
	return &Endpoints{cmds: cmds, log: log, sem: make(chan struct{}, concurrency), timeout: 10 * time.Second, baseCtx: ctx}
}

// Wait blocks until every command in flight has been answered.
func (e *Endpoints) Wait() { e.wg.Wait() }

// Register adds the endpoints to a micro service.
func (e *Endpoints) Register(svc micro.Service) error {
	return svc.AddEndpoint("chef-break", handle(e, e.cmds.ChefBreak), micro.WithEndpointSubject(kitchenapi.SubjectChefBreak))
}

func handle[C, R any](e *Endpoints, fn func(context.Context, C) (R, error)) micro.HandlerFunc {
	return func(req micro.Request) {
		e.sem <- struct{}{}
		e.wg.Add(1)
		go func() {
			defer func() { <-e.sem; e.wg.Done() }()
			var cmd C
			if err := json.Unmarshal(req.Data(), &cmd); err != nil {
				respondProblem(req, problem.Malformed("", "command is not valid JSON: "+err.Error()))
				return
			}
			ctx, cancel := context.WithTimeout(e.baseCtx, e.timeout)
			defer cancel()
			reply, err := fn(ctx, cmd)
			if err != nil {
				p := ToProblem(err)
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

func respondProblem(req micro.Request, p *problem.Problem) {
	b, _ := json.Marshal(p)
	_ = req.Error(strconv.Itoa(p.Status), p.Title, b)
}

// ToProblem maps an application error to the problem the caller gets.
func ToProblem(err error) *problem.Problem {
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
	case errors.Is(err, ErrChefNotFound):
		return problem.NotFound("Chef")
	case errors.Is(err, domain.ErrAlreadyOnBreak):
		c := problem.Conflict(err.Error())
		c.CurrentStatus = kitchenapi.ChefOnBreak
		return c
	case errors.Is(err, domain.ErrNotOnBreak):
		c := problem.Conflict(err.Error())
		c.CurrentStatus = kitchenapi.ChefWorking
		return c
	case errors.Is(err, ErrConcurrentUpdate):
		return &problem.Problem{Type: problem.TypeConcurrentUpdate, Title: "The chef is being changed concurrently", Status: 409, Detail: err.Error()}
	case errors.Is(err, eventstore.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &problem.Problem{Type: problem.TypeUnavailable, Title: "The event log is unavailable", Status: 503, Detail: "the command may or may not have been stored; retry it with the same idempotency key"}
	default:
		return &problem.Problem{Type: problem.TypeInternal, Title: "Internal error", Status: 500}
	}
}
