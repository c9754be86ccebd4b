package app

import (
	"context"
	"errors"

	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/orders/internal/domain"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats.go/micro"
)

// Register adds the command endpoints to a micro service; e runs them.
func Register(svc micro.Service, e *service.Endpoints, cmds *Commands, audit *Audit) error {
	for subject, h := range map[string]micro.HandlerFunc{
		ordersapi.SubjectPlace:      service.Handle(e, cmds.Place),
		ordersapi.SubjectCancel:     service.Handle(e, cmds.Cancel),
		ordersapi.SubjectTransition: service.Handle(e, cmds.Transition),
		ordersapi.SubjectErase:      service.Handle(e, cmds.Erase),
		ordersapi.SubjectHistory:    service.Handle(e, audit.History),
		ordersapi.SubjectAsOf:       service.Handle(e, audit.AsOf),
	} {
		name := subject[len("svc.orders."):]
		if err := svc.AddEndpoint(name, h, micro.WithEndpointSubject(subject)); err != nil {
			return err
		}
	}
	return nil
}

// EdgeProblem is ToProblem in the shape service.Endpoints expects.
func EdgeProblem(err error, reply any) *ordersapi.Problem {
	r, _ := reply.(ordersapi.CommandReply)
	return ToProblem(err, r)
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
	case errors.Is(err, domain.ErrReasonRequired):
		return ordersapi.Validation(ordersapi.FieldError{Field: "reason", Detail: "is required for this transition"})
	case errors.Is(err, domain.ErrDriverRequired):
		return ordersapi.Validation(ordersapi.FieldError{Field: "status", Detail: "drivers are assigned with POST /api/orders/{id}/assign-driver"})
	case errors.Is(err, domain.ErrWrongDriver):
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
