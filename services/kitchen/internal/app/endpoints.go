package app

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/kitchen/internal/domain"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Endpoints serves the kitchen's commands over NATS micro, each request
// on its own goroutine (service.Endpoints).
type Endpoints struct {
	cmds *Commands
	run  *service.Endpoints
}

// NewEndpoints returns the endpoint handlers; concurrency bounds commands in flight.
func NewEndpoints(ctx context.Context, nc *nats.Conn, cmds *Commands, log *slog.Logger, concurrency int) *Endpoints {
	if concurrency <= 0 {
		concurrency = 64
	}
	return &Endpoints{cmds: cmds, run: service.NewEndpoints(ctx, nc, log, concurrency, 8*time.Second, func(err error, _ any) *problem.Problem { return ToProblem(err) })}
}

// Wait blocks until every command in flight has been answered.
func (e *Endpoints) Wait() { e.run.Wait() }

// Register adds the endpoints to a micro service.
func (e *Endpoints) Register(svc micro.Service) error {
	if err := svc.AddEndpoint("chef-break", service.Handle(e.run, e.cmds.ChefBreak), micro.WithEndpointSubject(kitchenapi.SubjectChefBreak)); err != nil {
		return err
	}
	return svc.AddEndpoint("alert", service.Handle(e.run, e.cmds.Alert), micro.WithEndpointSubject(kitchenapi.SubjectAlert))
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
	case errors.Is(err, ErrRestaurantNotFound):
		return problem.NotFound("Restaurant")
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
