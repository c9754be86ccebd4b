package app

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/inventory/internal/domain"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Endpoints serves the commands over NATS micro, each request on its own
// goroutine (service.Endpoints); commands on the same restaurant are
// serialised by the aggregate lock.
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
	for subject, h := range map[string]micro.HandlerFunc{
		inventoryapi.SubjectRestock: service.Handle(e.run, e.cmds.Restock),
		inventoryapi.SubjectAdjust:  service.Handle(e.run, e.cmds.Adjust),
	} {
		name := subject[len("svc.inventory."):]
		if err := svc.AddEndpoint(name, h, micro.WithEndpointSubject(subject)); err != nil {
			return err
		}
	}
	return nil
}

// ToProblem maps an application or domain error to the problem the caller
// gets. It is the only place where errors become statuses.
func ToProblem(err error) *inventoryapi.Problem {
	var (
		p  *inventoryapi.Problem
		ve *domain.ValidationError
		be *domain.BelowReservedError
	)
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &ve):
		fields := make([]inventoryapi.FieldError, len(ve.Fields))
		for i, f := range ve.Fields {
			fields[i] = inventoryapi.FieldError{Field: f.Field, Detail: f.Detail}
		}
		return inventoryapi.Validation(fields...)
	case errors.As(err, &be):
		return &inventoryapi.Problem{Type: problem.TypeConflict, Title: "The adjustment would leave less stock than is reserved", Status: 409, Detail: be.Error()}
	case errors.Is(err, ErrUnknownRestaurant):
		return problem.NotFound("Restaurant")
	case errors.Is(err, ErrIdempotencyKeyReused):
		return &inventoryapi.Problem{Type: problem.TypeIdempotencyKeyReused, Title: "Idempotency-Key reused with a different request", Status: 422, Detail: err.Error()}
	case errors.Is(err, ErrConcurrentUpdate):
		return &inventoryapi.Problem{Type: problem.TypeConcurrentUpdate, Title: "The stock is being changed concurrently", Status: 409, Detail: err.Error()}
	case errors.Is(err, domain.ErrNotInitialized):
		return &inventoryapi.Problem{Type: problem.TypeUnavailable, Title: "The restaurant's stock is not open yet", Status: 503, Detail: "retry shortly"}
	case errors.Is(err, eventstore.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &inventoryapi.Problem{Type: problem.TypeUnavailable, Title: "The event log is unavailable", Status: 503, Detail: "the command may or may not have been stored; retry it with the same Idempotency-Key"}
	default:
		return &inventoryapi.Problem{Type: problem.TypeInternal, Title: "Internal error", Status: 500}
	}
}
