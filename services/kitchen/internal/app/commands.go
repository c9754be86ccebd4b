package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/kitchen/internal/domain"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
	"github.com/google/uuid"
)

// Application errors, mapped to problems at the service edge.
var (
	ErrChefNotFound     = errors.New("chef not found")
	ErrConcurrentUpdate = errors.New("the aggregate kept changing; try again")
)

// maxAttempts bounds decide-append rounds when other writers keep winning.
const maxAttempts = 5

// Limits of command fields.
const (
	maxByLength       = 200
	maxIdempotencyKey = 200
)

// Commands handles the kitchen's commands: chefs' breaks and the alerts
// of kitchen devices.
type Commands struct {
	store       *eventstore.Store
	chefs       map[string]string   // chef id -> restaurant id, from the catalogue
	restaurants map[string]struct{} // restaurant ids of the catalogue
	clock       func() time.Time
	log         *slog.Logger
}

// NewCommands wires the command handler.
func NewCommands(store *eventstore.Store, cat *catalog.Catalog, clock func() time.Time, log *slog.Logger) *Commands {
	restaurants := map[string]struct{}{}
	for _, r := range cat.Restaurants {
		restaurants[r.ID] = struct{}{}
	}
	return &Commands{store: store, chefs: chefIndex(cat), restaurants: restaurants, clock: clock, log: log}
}

// chefIndex maps every chef of the catalogue to its restaurant.
func chefIndex(cat *catalog.Catalog) map[string]string {
	idx := map[string]string{}
	for _, r := range cat.Restaurants {
		for _, c := range r.Chefs {
			idx[c.ID] = r.ID
		}
	}
	return idx
}

// ChefBreak starts or ends a chef's break. Starting a break while already
// on one (or ending one that is not running) is refused; with an
// idempotency key, a retry of a command that was applied gets its reply.
func (c *Commands) ChefBreak(ctx context.Context, cmd kitchenapi.ChefBreakCommand) (kitchenapi.ChefBreakReply, error) {
	var errs []domain.FieldError
	if cmd.ChefID == "" {
		errs = append(errs, domain.FieldError{Field: "chefId", Detail: "is required"})
	}
	if cmd.OnBreak == nil {
		errs = append(errs, domain.FieldError{Field: "onBreak", Detail: "is required (true or false)"})
	}
	if len(cmd.By) > maxByLength {
		errs = append(errs, domain.FieldError{Field: "by", Detail: fmt.Sprintf("is longer than %d characters", maxByLength)})
	}
	if len(cmd.IdempotencyKey) > maxIdempotencyKey {
		errs = append(errs, domain.FieldError{Field: "idempotencyKey", Detail: fmt.Sprintf("is longer than %d characters", maxIdempotencyKey)})
	}
	if len(errs) > 0 {
		return kitchenapi.ChefBreakReply{}, &domain.ValidationError{Fields: errs}
	}
	restaurantID, ok := c.chefs[cmd.ChefID]
	if !ok || (cmd.RestaurantID != "" && cmd.RestaurantID != restaurantID) {
		return kitchenapi.ChefBreakReply{}, ErrChefNotFound
	}
	onBreak := *cmd.OnBreak
	verb := "end"
	if onBreak {
		verb = "start"
	}
	commandID := commandIDFor("chef-break-"+verb, cmd.ChefID, cmd.IdempotencyKey)
	meta := events.Meta{CorrelationID: orEmpty(cmd.CorrelationID, commandID), CausationID: commandID, TraceParent: cmd.TraceParent}
	log := c.log.With("chef_id", cmd.ChefID, "restaurant_id", restaurantID, "by", cmd.By)
	for attempt := 0; attempt < maxAttempts; attempt++ {
		chef, version, lastCommand, err := loadChef(ctx, c.store, cmd.ChefID, restaurantID)
		if err != nil {
			return kitchenapi.ChefBreakReply{}, err
		}
		reply := kitchenapi.ChefBreakReply{ChefID: cmd.ChefID, RestaurantID: restaurantID, OnBreak: chef.OnBreak(), Seq: version}
		if lastCommand == commandID {
			reply.Replayed = true
			return reply, nil
		}
		evs, err := chef.SetBreak(onBreak)
		if err != nil {
			return reply, err
		}
		envs, err := envelopes(cmd.ChefID, evs, c.clock(), meta)
		if err != nil {
			return kitchenapi.ChefBreakReply{}, err
		}
		res, err := c.store.Append(ctx, eventstore.Append{AggregateID: cmd.ChefID, ExpectedSeq: version, CommandID: commandID, Events: envs})
		if errors.Is(err, eventstore.ErrConflict) {
			continue
		}
		if err != nil {
			return kitchenapi.ChefBreakReply{}, err
		}
		reply.OnBreak, reply.Seq, reply.Replayed = onBreak, res.LastSeq, res.Duplicate
		if !res.Duplicate {
			log.Info("chef break "+verb+"ed", "on_break", onBreak, "seq", res.LastSeq)
		}
		return reply, nil
	}
	return kitchenapi.ChefBreakReply{}, ErrConcurrentUpdate
}

// loadChef folds a chef's events from the log: the aggregate, the stream
// sequence of its last event (0 if none) and the command that wrote it.
func loadChef(ctx context.Context, store *eventstore.Store, chefID, restaurantID string) (*domain.Chef, uint64, string, error) {
	recs, version, err := store.Load(ctx, chefID)
	if err != nil {
		return nil, 0, "", err
	}
	chef := domain.NewChef(chefID, restaurantID)
	last := ""
	for _, rec := range recs {
		chef.Apply(rec.Event, rec.Envelope.OccurredAt)
		last = rec.CommandID
	}
	return chef, version, last, nil
}

// loadTicket folds an order's ticket from the log, like loadChef.
func loadTicket(ctx context.Context, store *eventstore.Store, orderID string) (*domain.Ticket, uint64, string, error) {
	recs, version, err := store.Load(ctx, orderID)
	if err != nil {
		return nil, 0, "", err
	}
	t := domain.NewTicket(orderID)
	last := ""
	for _, rec := range recs {
		t.Apply(rec.Event, rec.Envelope.OccurredAt)
		last = rec.CommandID
	}
	return t, version, last, nil
}

func envelopes(aggregateID string, evs []events.Event, now time.Time, meta events.Meta) ([]events.Envelope, error) {
	envs := make([]events.Envelope, len(evs))
	for i, e := range evs {
		env, err := events.NewEnvelope(aggregateID, e, now, meta)
		if err != nil {
			return nil, err
		}
		envs[i] = env
	}
	return envs, nil
}

// commandIDFor derives a command id from an idempotency key, or makes a
// unique one without.
func commandIDFor(kind, id, idempotencyKey string) string {
	if idempotencyKey == "" {
		return kind + ":" + id + ":" + uuid.NewString()
	}
	sum := sha256.Sum256([]byte(idempotencyKey))
	return kind + ":" + id + ":" + hex.EncodeToString(sum[:12])
}

func orEmpty(v, fallback string) string {
	if v != "" {
		return v
	}
	return fallback
}
