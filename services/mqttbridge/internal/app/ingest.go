package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/mqttbridge/internal/device"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// RejectedError is a command its owner service refused (a 4xx problem):
// sending it again cannot succeed.
type RejectedError struct {
	Subject string
	Problem *problem.Problem
}

func (e *RejectedError) Error() string { return e.Subject + ": " + e.Problem.Error() }

// ingest turns one device publish into its effect, and returns once that
// effect is durably in the log:
//
//   - a location becomes svc.drivers.location (the drivers service appends
//     driver_location_reported to TELEMETRY and answers after the ack);
//   - a status becomes svc.drivers.status (driver_status_changed on DRIVERS);
//   - an oven reading is appended to TELEMETRY as oven_reading_reported;
//   - a kitchen alert is logged, counted and appended as kitchen_alert_raised;
//   - an order event is validated, logged and counted: it changes nothing.
//
// Telemetry is deduplicated by content: the idempotency key of a location,
// oven reading or alert is a hash of the device, topic and payload, so a
// message resent after a lost or refused PUBACK is stored once (within
// the stream's duplicate window).
func (b *Bridge) ingest(ctx context.Context, who device.Identity, topic device.Topic, name string, payload []byte) error {
	now := b.clock()
	key := contentKey(who.ID, name, payload)
	switch topic.Kind {
	case device.Location:
		cmd, err := device.DecodeLocation(topic.ID, payload, now)
		if err != nil {
			return err
		}
		cmd.IdempotencyKey, cmd.CorrelationID = key, who.ID
		var reply driversapi.LocationReply
		if err := b.request(ctx, driversapi.SubjectLocation, cmd, &reply); err != nil {
			return err
		}
		if reply.Replayed {
			b.log.Debug("location was already stored", "driver_id", topic.ID, "seq", reply.Seq)
		}
		return nil
	case device.Status:
		status, err := device.DecodeStatus(payload)
		if err != nil {
			return err
		}
		// A status is not deduplicated by content: "Available" twice with
		// "OnBreak" between them are three changes. Setting the current
		// status again records nothing, so a resent status is harmless.
		cmd := driversapi.StatusCommand{DriverID: topic.ID, Status: status, CommandMeta: driversapi.CommandMeta{CorrelationID: who.ID}}
		var reply driversapi.CommandReply
		if err := b.request(ctx, driversapi.SubjectStatus, cmd, &reply); err != nil {
			return err
		}
		b.log.Info("driver status set from the phone", "driver_id", topic.ID, "status", status, "seq", reply.Seq)
		return nil
	case device.Oven:
		reading, err := device.DecodeOven(topic.ID, payload, now)
		if err != nil {
			return err
		}
		return b.appendTelemetry(ctx, topic.ID, reading, "mqttbridge:oven:"+topic.ID+":"+key, now)
	case device.Alerts:
		alert, err := device.DecodeAlert(topic.ID, payload, now)
		if err != nil {
			return err
		}
		if err := b.appendTelemetry(ctx, topic.ID, alert, "mqttbridge:alert:"+topic.ID+":"+key, now); err != nil {
			return err
		}
		b.metrics.KitchenAlerts.WithLabelValues(alert.Severity).Inc()
		log := b.log.Warn
		if alert.Severity == "critical" {
			log = b.log.Error
		}
		log("ALERT: kitchen device raised an alert", "alert", "kitchen_alert", "kitchen_id", topic.ID, "what", alert.Alert, "severity", alert.Severity, "details", string(alert.Details))
		return nil
	case device.OrderEvents:
		ev, err := device.DecodeOrderEvent(payload, now)
		if err != nil {
			return err
		}
		b.metrics.OrderEvents.WithLabelValues(ev.Event).Inc()
		b.log.Info("driver reported an order event", "order_id", topic.ID, "driver_id", who.ID, "event", ev.Event, "details", ev.Details)
		return nil
	default:
		// The ACL lets no other topic through.
		return &device.InvalidPayloadError{Fields: []device.FieldError{{Field: "topic", Detail: "no device publishes on " + name}}}
	}
}

// contentKey identifies a message by what it says.
func contentKey(deviceID, topic string, payload []byte) string {
	h := sha256.New()
	h.Write([]byte(deviceID))
	h.Write([]byte{0})
	h.Write([]byte(topic))
	h.Write([]byte{0})
	h.Write(payload)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// request sends a command to a service over NATS request/reply. A typed
// error reply becomes a RejectedError (4xx) or an ErrUnavailable (5xx); no
// responder, a timeout or a lost connection is ErrUnavailable.
func (b *Bridge) request(ctx context.Context, subject string, cmd, out any) error {
	data, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	msg, err := b.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return fmt.Errorf("%s: %w: %v", subject, eventstore.ErrUnavailable, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		status, _ := strconv.Atoi(code)
		p := &problem.Problem{Status: status, Title: msg.Header.Get(micro.ErrorHeader)}
		_ = json.Unmarshal(msg.Data, p)
		if status >= 500 || status == 0 {
			return fmt.Errorf("%s: %w: %s", subject, eventstore.ErrUnavailable, p.Error())
		}
		return &RejectedError{Subject: subject, Problem: p}
	}
	if err := json.Unmarshal(msg.Data, out); err != nil {
		return fmt.Errorf("%s: bad reply: %w", subject, err)
	}
	return nil
}

// appendTelemetry stores one of the bridge's telemetry events on its
// TELEMETRY subject, in the platform's envelope, with the command id as
// Nats-Msg-Id. It returns once JetStream acknowledged it.
func (b *Bridge) appendTelemetry(ctx context.Context, kitchenID string, ev events.Event, commandID string, now time.Time) error {
	var subject string
	switch ev.(type) {
	case mqttapi.OvenReadingReported:
		subject = mqttapi.OvenReadingSubject(kitchenID)
	case mqttapi.KitchenAlertRaised:
		subject = mqttapi.KitchenAlertSubject(kitchenID)
	default:
		return fmt.Errorf("no telemetry subject for %s", ev.EventType())
	}
	env, err := events.NewEnvelope(kitchenID, ev, now, events.Meta{CorrelationID: kitchenID, CausationID: commandID})
	if err != nil {
		return err
	}
	body, err := env.Marshal()
	if err != nil {
		return err
	}
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(events.HeaderType, env.Type)
	m.Header.Set(events.HeaderVersion, strconv.Itoa(env.Version))
	m.Header.Set(events.HeaderCommandID, commandID)
	m.Header.Set(events.HeaderCorrelation, env.CorrelationID)
	m.Header.Set(jetstream.MsgIDHeader, commandID)
	ack, err := b.js.PublishMsg(ctx, m)
	if err != nil {
		return fmt.Errorf("append %s to %s: %w: %v", env.Type, subject, eventstore.ErrUnavailable, err)
	}
	b.log.Debug("telemetry stored", "kitchen_id", kitchenID, "type", env.Type, "seq", ack.Sequence, "duplicate", ack.Duplicate)
	return nil
}
