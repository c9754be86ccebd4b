package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
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
//   - a location is appended to TELEMETRY as driver_location_reported,
//     built and validated as the drivers service builds it for the HTTP
//     route (driversapi.NewLocationFix), once the driver is known to be
//     registered (knownDriver);
//   - a status becomes svc.drivers.status (driver_status_changed on DRIVERS);
//   - an oven reading is appended to TELEMETRY as oven_reading_reported;
//   - a kitchen alert becomes svc.kitchen.alert (kitchen_device_alert_raised
//     on KITCHEN), then is appended to TELEMETRY as kitchen_alert_raised,
//     logged and counted;
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
		fix, err := driversapi.NewLocationFix(cmd, now)
		if inv := (*driversapi.InvalidLocationError)(nil); errors.As(err, &inv) {
			return &device.InvalidPayloadError{Fields: deviceFields(inv.Fields)}
		}
		if err != nil {
			return err
		}
		if err := b.knownDriver(ctx, topic.ID); err != nil {
			return err
		}
		ack, err := b.append(ctx, fix.Msg)
		if err != nil {
			return err
		}
		if ack.Duplicate {
			b.log.Debug("location was already stored", "driver_id", topic.ID, "seq", ack.Sequence)
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
		// The alert is the kitchen's domain event first: the kitchen
		// service appends kitchen_device_alert_raised to KITCHEN. The raw
		// message then goes to TELEMETRY for the kitchen-telemetry read
		// model. Both are deduplicated by the content key, so a resend
		// after a failure between the two stores each once.
		raisedAt := alert.RaisedAt
		cmd := kitchenapi.AlertCommand{RestaurantID: topic.ID, DeviceID: who.ID, Alert: alert.Alert, Severity: alert.Severity, Details: alert.Details,
			RaisedAt: &raisedAt, IdempotencyKey: key, CorrelationID: who.ID}
		var reply kitchenapi.AlertReply
		if err := b.request(ctx, kitchenapi.SubjectAlert, cmd, &reply); err != nil {
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
		log("ALERT: kitchen device raised an alert", "alert", "kitchen_alert", "kitchen_id", topic.ID, "what", alert.Alert, "severity", alert.Severity,
			"details", string(alert.Details), "kitchen_seq", reply.Seq, "replayed", reply.Replayed)
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

func deviceFields(in []driversapi.FieldError) []device.FieldError {
	out := make([]device.FieldError, len(in))
	for i, f := range in {
		out[i] = device.FieldError{Field: f.Field, Detail: f.Detail}
	}
	return out
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
	m, err := driversapi.TelemetryMsg(subject, env, commandID)
	if err != nil {
		return err
	}
	ack, err := b.append(ctx, m)
	if err != nil {
		return err
	}
	b.log.Debug("telemetry stored", "kitchen_id", kitchenID, "type", env.Type, "seq", ack.Sequence, "duplicate", ack.Duplicate)
	return nil
}

// AppendWindow bounds the telemetry appends in flight at once (one per
// connection at most: mochi handles a connection's packets in order).
const AppendWindow = 4096

// append stores a telemetry message and returns once JetStream
// acknowledged this message; any failure is ErrUnavailable (the device
// sends again). The publish is asynchronous so that a lost connection to
// NATS fails every append in flight at once (the async publisher fails
// its pending acks on a disconnect) instead of each waiting out its
// timeout; while NATS is unreachable, appends fail at once. A full window
// waits for a free slot until ctx's deadline.
func (b *Bridge) append(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
	fail := func(err error) (*jetstream.PubAck, error) {
		return nil, fmt.Errorf("append %s to %s: %w: %v", m.Header.Get(events.HeaderType), m.Subject, eventstore.ErrUnavailable, err)
	}
	if !b.nc.IsConnected() {
		return fail(nats.ErrDisconnected)
	}
	stall := b.opts.CommandTimeout
	if dl, ok := ctx.Deadline(); ok {
		stall = time.Until(dl)
	}
	if stall <= 0 {
		return fail(context.DeadlineExceeded)
	}
	f, err := b.pub.PublishMsgAsync(m, jetstream.WithStallWait(stall))
	if err != nil {
		return fail(err)
	}
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return fail(err)
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

// knownDriver refuses a fix of a driver the platform does not know (404),
// as the drivers service does. A device's credentials are only issued for
// a registered (or catalogue) driver and drivers are never removed, so
// this is a safety net: DRIVERS is asked once per driver id (direct get
// of the last message on drivers.<id>), and a registered driver is
// remembered for the bridge's lifetime. An unknown
// id is asked again at its next fix (it may be registered by then).
func (b *Bridge) knownDriver(ctx context.Context, driverID string) error {
	if _, ok := b.known.Load(driverID); ok {
		return nil
	}
	if !b.nc.IsConnected() {
		return fmt.Errorf("is driver %s registered: %w: %v", driverID, eventstore.ErrUnavailable, nats.ErrDisconnected)
	}
	// A direct get, which any replica answers without going through the
	// JetStream API queue (a thousand phones send their first fix at once
	// after a restart); only a "no" is confirmed by the stream leader, in
	// case a replica has not applied a registration yet.
	seq, err := b.drivers.LastSeq(ctx, driverID)
	if err == nil && seq == 0 {
		seq, err = b.drivers.LastSeqFromLeader(ctx, driverID)
	}
	if err != nil {
		if errors.Is(err, eventstore.ErrUnavailable) {
			return fmt.Errorf("is driver %s registered: %w", driverID, err)
		}
		return fmt.Errorf("is driver %s registered: %w: %v", driverID, eventstore.ErrUnavailable, err)
	}
	if seq == 0 {
		nf := problem.NotFound("Driver")
		nf.Detail = "no driver " + driverID + " is registered"
		return &RejectedError{Subject: events.DriverLocationSubject(driverID), Problem: nf}
	}
	b.known.Store(driverID, struct{}{})
	return nil
}
