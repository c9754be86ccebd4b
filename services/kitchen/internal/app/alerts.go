package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/kitchen/internal/domain"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
)

// ErrRestaurantNotFound: the alert names no restaurant of the catalogue.
var ErrRestaurantNotFound = errors.New("restaurant not found")

// Alert records an alert raised by one of a restaurant's kitchen devices
// as kitchen_device_alert_raised on kitchen.devices-<restaurantId>. Alerts
// are facts, not decisions on state, so the append only has to keep the
// aggregate's order: it expects the subject's current last sequence and
// retries on a conflict. With an idempotency key the command id is stable,
// so an alert sent again (a device that got no acknowledgement) is stored
// once: the server's Msg-Id check answers "duplicate" within the stream's
// duplicate window, and the store recognises its own command as the
// subject's last message after a conflict.
func (c *Commands) Alert(ctx context.Context, cmd kitchenapi.AlertCommand) (kitchenapi.AlertReply, error) {
	var errs []domain.FieldError
	if cmd.RestaurantID == "" {
		errs = append(errs, domain.FieldError{Field: "restaurantId", Detail: "is required"})
	}
	if len(cmd.IdempotencyKey) > maxIdempotencyKey {
		errs = append(errs, domain.FieldError{Field: "idempotencyKey", Detail: fmt.Sprintf("is longer than %d characters", maxIdempotencyKey)})
	}
	if len(errs) > 0 {
		return kitchenapi.AlertReply{}, &domain.ValidationError{Fields: errs}
	}
	if _, ok := c.restaurants[cmd.RestaurantID]; !ok {
		return kitchenapi.AlertReply{}, ErrRestaurantNotFound
	}
	ev, err := domain.RaiseAlert(domain.AlertInput{
		RestaurantID: cmd.RestaurantID, DeviceID: cmd.DeviceID, Alert: cmd.Alert, Severity: cmd.Severity, Details: cmd.Details, RaisedAt: cmd.RaisedAt,
	}, c.clock())
	if err != nil {
		return kitchenapi.AlertReply{}, err
	}
	aggregate := events.KitchenDevicesAggregateID(cmd.RestaurantID)
	commandID := commandIDFor("kitchen-alert", cmd.RestaurantID, cmd.IdempotencyKey)
	meta := events.Meta{CorrelationID: orEmpty(cmd.CorrelationID, commandID), CausationID: commandID, TraceParent: cmd.TraceParent}
	envs, err := envelopes(aggregate, []events.Event{ev}, c.clock(), meta)
	if err != nil {
		return kitchenapi.AlertReply{}, err
	}
	reply := kitchenapi.AlertReply{RestaurantID: cmd.RestaurantID, AggregateID: aggregate, Severity: ev.Severity, RaisedAt: ev.RaisedAt}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		last, err := c.store.LastSeq(ctx, aggregate)
		if err != nil {
			return kitchenapi.AlertReply{}, err
		}
		res, err := c.store.Append(ctx, eventstore.Append{AggregateID: aggregate, ExpectedSeq: last, CommandID: commandID, Events: envs})
		if errors.Is(err, eventstore.ErrConflict) {
			continue
		}
		if err != nil {
			return kitchenapi.AlertReply{}, err
		}
		reply.Seq, reply.Replayed = res.LastSeq, res.Duplicate
		if !res.Duplicate {
			log := c.log.Warn
			if ev.Severity == "critical" {
				log = c.log.Error
			}
			log("ALERT: kitchen device alert recorded", "alert", "kitchen_device_alert", "restaurant_id", cmd.RestaurantID,
				"device_id", ev.DeviceID, "what", ev.Alert, "severity", ev.Severity, "seq", res.LastSeq)
		}
		return reply, nil
	}
	return kitchenapi.AlertReply{}, ErrConcurrentUpdate
}
