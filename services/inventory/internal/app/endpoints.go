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

	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/services/inventory/internal/domain"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
	"github.com/nats-io/nats.go/micro"
)

// Endpoints serves the commands over NATS micro. Each request is handled on
// its own goroutine (bounded by a semaphore); commands on the same
// restaurant queue on that restaurant's lock, others proceed.
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
	for subject, h := range map[string]micro.HandlerFunc{
		inventoryapi.SubjectRestock: handle(e, e.cmds.Restock),
		inventoryapi.SubjectAdjust:  handle(e, e.cmds.Adjust),
	} {
		name := strings.TrimPrefix(subject, "svc.inventory.")
		if err := svc.AddEndpoint(name, h, micro.WithEndpointSubject(subject)); err != nil {
			return err
		}
	}
	return nil
}

func handle[C any](e *Endpoints, fn func(context.Context, C) (inventoryapi.CommandReply, error)) micro.HandlerFunc {
	return func(req micro.Request) {
		e.sem <- struct{}{}
		e.wg.Add(1)
		go func() {
			defer func() { <-e.sem; e.wg.Done() }()
			var cmd C
			if err := json.Unmarshal(req.Data(), &cmd); err != nil {
				respondProblem(req, inventoryapi.Malformed("", "command is not valid JSON: "+err.Error()))
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
			if err := req.RespondJSON(reply); err != nil {
				e.log.Warn("reply failed", "subject", req.Subject(), "err", err)
			}
		}()
	}
}

func respondProblem(req micro.Request, p *inventoryapi.Problem) {
	b, _ := json.Marshal(p)
	_ = req.Error(strconv.Itoa(p.Status), p.Title, b)
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
