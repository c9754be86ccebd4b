package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/drivers/internal/domain"
	"github.com/google/uuid"
)

// driverIDNamespace derives a new driver's id from an idempotency key, so
// a retried registration names the same driver.
var driverIDNamespace = uuid.MustParse("0d3c7f64-5a8e-4f43-9b0e-2c1e6a9d7b21")

// Register registers a driver with a restaurant of the catalogue. The
// driver starts Offline.
func (d *Dispatcher) Register(ctx context.Context, cmd driversapi.RegisterCommand) (driversapi.CommandReply, error) {
	in := domain.RegisterInput{RestaurantID: cmd.RestaurantID, Name: cmd.Name, Vehicle: cmd.Vehicle}
	errs := domain.ValidateRegistration(in)
	if cmd.DriverID != "" {
		if err := events.ValidateID(cmd.DriverID); err != nil {
			errs = append(errs, domain.FieldError{Field: "driverId", Detail: err.Error()})
		} else if strings.HasPrefix(cmd.DriverID, dispatchPrefix) {
			errs = append(errs, domain.FieldError{Field: "driverId", Detail: fmt.Sprintf("must not start with %q", dispatchPrefix)})
		}
	}
	if cmd.RestaurantID != "" {
		if _, ok := d.cat.Restaurant(cmd.RestaurantID); !ok {
			errs = append(errs, domain.FieldError{Field: "restaurantId", Detail: "is not a restaurant of the chain"})
		}
	}
	errs = append(errs, checkKey(cmd.IdempotencyKey)...)
	if len(errs) > 0 {
		return driversapi.CommandReply{}, &domain.ValidationError{Fields: errs}
	}
	id := cmd.DriverID
	switch {
	case id != "":
	case cmd.IdempotencyKey != "":
		id = uuid.NewSHA1(driverIDNamespace, []byte(cmd.IdempotencyKey)).String()
	default:
		id = uuid.Must(uuid.NewV7()).String()
	}
	commandID := commandIDFor("register", id, cmd.IdempotencyKey)
	meta := events.Meta{CorrelationID: orEmpty(cmd.CorrelationID, id), TraceParent: cmd.TraceParent}

	unlock := d.lockRestaurant(cmd.RestaurantID)
	defer unlock()
	res, _, err := d.commit(ctx, func() (decision, error) {
		drv, seq := domain.NewDriver(id), uint64(0)
		if a, ok := d.fleet.drivers[id]; ok {
			if slices.Contains(a.recent, commandID) {
				return decision{}, errReplay
			}
			drv, seq = &a.d, a.seq
		}
		evs, err := drv.Register(in)
		return one(commandID, meta, id, seq, evs), err
	})
	if errors.Is(err, errReplay) {
		return d.reply(id, 0, true), nil
	}
	if err != nil {
		return driversapi.CommandReply{}, err
	}
	d.log.Info("driver registered", "driver_id", id, "restaurant_id", cmd.RestaurantID, "seq", res.LastSeq)
	return d.reply(id, res.LastSeq, res.Duplicate), nil
}

// SetStatus records the status a driver (or a manager) chose. A driver
// who is Available afterwards gets the restaurant's oldest waiting order.
func (d *Dispatcher) SetStatus(ctx context.Context, cmd driversapi.StatusCommand) (driversapi.CommandReply, error) {
	if errs := checkKey(cmd.IdempotencyKey); len(errs) > 0 {
		return driversapi.CommandReply{}, &domain.ValidationError{Fields: errs}
	}
	rid, ok := d.fleet.restaurantOf(cmd.DriverID)
	if !ok {
		return driversapi.CommandReply{}, ErrDriverNotFound
	}
	commandID := commandIDFor("status-"+cmd.Status, cmd.DriverID, cmd.IdempotencyKey)
	meta := events.Meta{CorrelationID: orEmpty(cmd.CorrelationID, cmd.DriverID), TraceParent: cmd.TraceParent}
	unlock := d.lockRestaurant(rid)
	defer unlock()
	res, changed, err := d.commit(ctx, func() (decision, error) {
		a, _ := d.fleet.registeredLocked(cmd.DriverID)
		if slices.Contains(a.recent, commandID) {
			return decision{}, errReplay
		}
		evs, err := a.d.SetStatus(cmd.Status)
		return one(commandID, meta, cmd.DriverID, a.seq, evs), err
	})
	if errors.Is(err, errReplay) {
		return d.reply(cmd.DriverID, 0, true), nil
	}
	if err != nil {
		return d.reply(cmd.DriverID, 0, false), err
	}
	if changed {
		d.log.Info("driver status changed", "driver_id", cmd.DriverID, "restaurant_id", rid, "status", cmd.Status, "seq", res.LastSeq)
	}
	seq := res.LastSeq
	if cmd.Status == events.DriverAvailable {
		last, err := d.drain(ctx, rid, cmd.DriverID)
		if err != nil {
			// The status stands; the order is assigned on the next trigger.
			d.log.Error("assignment after becoming Available failed", "driver_id", cmd.DriverID, "restaurant_id", rid, "err", err)
		}
		seq = max(seq, last)
	}
	return d.reply(cmd.DriverID, seq, res.Duplicate), nil
}

// PickUp confirms that the driver collected the order it holds, with an
// estimated delivery time.
func (d *Dispatcher) PickUp(ctx context.Context, cmd driversapi.PickupCommand) (driversapi.CommandReply, error) {
	return d.onHeldOrder(ctx, "pickup", cmd.DriverID, cmd.OrderID, cmd.CommandMeta, func(a *driverAgg) ([]events.Event, error) {
		var speed *float64
		if p, ok := d.fleet.positionLocked(a.d.ID()); ok {
			speed = p.speedKmh
		}
		return a.d.PickUp(cmd.OrderID, d.clock(), speed, d.opts.TimeScale)
	})
}

// Deliver confirms the hand-over; the driver is Available again and gets
// the restaurant's oldest waiting order.
func (d *Dispatcher) Deliver(ctx context.Context, cmd driversapi.DeliverCommand) (driversapi.CommandReply, error) {
	return d.onHeldOrder(ctx, "deliver", cmd.DriverID, cmd.OrderID, cmd.CommandMeta, func(a *driverAgg) ([]events.Event, error) {
		return a.d.Deliver(cmd.OrderID)
	})
}

// onHeldOrder runs a driver's decision about the order it holds.
func (d *Dispatcher) onHeldOrder(ctx context.Context, kind, driverID, orderID string, cm driversapi.CommandMeta, decide func(*driverAgg) ([]events.Event, error)) (driversapi.CommandReply, error) {
	errs := checkKey(cm.IdempotencyKey)
	if err := events.ValidateID(orderID); err != nil {
		errs = append(errs, domain.FieldError{Field: "orderId", Detail: err.Error()})
	}
	if len(errs) > 0 {
		return driversapi.CommandReply{}, &domain.ValidationError{Fields: errs}
	}
	rid, ok := d.fleet.restaurantOf(driverID)
	if !ok {
		return driversapi.CommandReply{}, ErrDriverNotFound
	}
	commandID := commandIDFor(kind+"-"+orderID, driverID, cm.IdempotencyKey)
	meta := events.Meta{CorrelationID: orEmpty(cm.CorrelationID, orderID), TraceParent: cm.TraceParent}
	unlock := d.lockRestaurant(rid)
	defer unlock()
	res, _, err := d.commit(ctx, func() (decision, error) {
		a, _ := d.fleet.registeredLocked(driverID)
		if slices.Contains(a.recent, commandID) {
			return decision{}, errReplay
		}
		evs, err := decide(a)
		return one(commandID, meta, driverID, a.seq, evs), err
	})
	if errors.Is(err, errReplay) {
		return d.reply(driverID, 0, true), nil
	}
	if err != nil {
		return d.reply(driverID, 0, false), err
	}
	d.log.Info("delivery step confirmed", "step", kind, "driver_id", driverID, "order_id", orderID, "restaurant_id", rid, "seq", res.LastSeq)
	seq := res.LastSeq
	if kind == "deliver" {
		last, err := d.drain(ctx, rid, driverID)
		if err != nil {
			d.log.Error("assignment after delivery failed", "driver_id", driverID, "restaurant_id", rid, "err", err)
		}
		seq = max(seq, last)
	}
	return d.reply(driverID, seq, res.Duplicate), nil
}

// Assign is a manager's manual assignment of an Available driver to a
// waiting order: the same atomic append as an automatic one.
func (d *Dispatcher) Assign(ctx context.Context, cmd driversapi.AssignCommand) (driversapi.CommandReply, error) {
	errs := checkKey(cmd.IdempotencyKey)
	if err := events.ValidateID(cmd.OrderID); err != nil {
		errs = append(errs, domain.FieldError{Field: "orderId", Detail: err.Error()})
	}
	if err := events.ValidateID(cmd.DriverID); err != nil {
		errs = append(errs, domain.FieldError{Field: "driverId", Detail: err.Error()})
	}
	if len(cmd.By) > driversapi.MaxByLength {
		errs = append(errs, domain.FieldError{Field: "by", Detail: fmt.Sprintf("is longer than %d characters", driversapi.MaxByLength)})
	}
	if len(errs) > 0 {
		return driversapi.CommandReply{}, &domain.ValidationError{Fields: errs}
	}
	rid, ok := d.fleet.restaurantOf(cmd.DriverID)
	if !ok {
		return driversapi.CommandReply{}, ErrDriverNotFound
	}
	orderRestaurant, _, ok := d.fleet.findOrder(cmd.OrderID)
	if !ok {
		return driversapi.CommandReply{}, ErrOrderNotFound
	}
	if orderRestaurant != rid {
		return driversapi.CommandReply{}, &domain.ValidationError{Fields: []domain.FieldError{{Field: "driverId",
			Detail: fmt.Sprintf("drives for restaurant %s; the order is dispatched by %s", rid, orderRestaurant)}}}
	}
	commandID := commandIDFor("assign-"+cmd.OrderID, cmd.DriverID, cmd.IdempotencyKey)
	meta := events.Meta{CorrelationID: orEmpty(cmd.CorrelationID, cmd.OrderID), TraceParent: cmd.TraceParent}
	unlock := d.lockRestaurant(rid)
	defer unlock()
	res, _, err := d.commit(ctx, func() (decision, error) {
		a, _ := d.fleet.registeredLocked(cmd.DriverID)
		if slices.Contains(a.recent, commandID) {
			return decision{}, errReplay
		}
		q := d.fleet.queueLocked(rid)
		dEvs, qEvs, err := domain.Assign(&a.d, q.q, cmd.OrderID, true, cmd.By)
		if err != nil {
			return decision{}, err
		}
		return decision{commandID: commandID, meta: meta, changes: []change{
			{aggregateID: cmd.DriverID, expectedSeq: a.seq, events: dEvs},
			{aggregateID: events.DispatchAggregateID(rid), expectedSeq: q.seq, events: qEvs},
		}}, nil
	})
	if errors.Is(err, errReplay) {
		return d.reply(cmd.DriverID, 0, true), nil
	}
	if err != nil {
		return d.reply(cmd.DriverID, 0, false), err
	}
	d.log.Info("driver assigned by hand", "order_id", cmd.OrderID, "driver_id", cmd.DriverID, "restaurant_id", rid, "by", cmd.By, "seq", res.LastSeq)
	if d.opts.OnAssigned != nil && !res.Duplicate {
		d.opts.OnAssigned(true)
	}
	return d.reply(cmd.DriverID, res.LastSeq, res.Duplicate), nil
}

// ReportLocation validates a position fix and stores it as telemetry on
// the driver's TELEMETRY subject, wrapped in an envelope like every event.
// The message is the one the MQTT bridge appends for a phone's fix
// (driversapi.NewLocationFix).
func (d *Dispatcher) ReportLocation(ctx context.Context, cmd driversapi.LocationCommand) (driversapi.LocationReply, error) {
	fix, err := driversapi.NewLocationFix(cmd, d.clock())
	var inv *driversapi.InvalidLocationError
	if errors.As(err, &inv) {
		return driversapi.LocationReply{}, &domain.ValidationError{Fields: inv.Fields}
	}
	if err != nil {
		return driversapi.LocationReply{}, err
	}
	rid, ok := d.fleet.restaurantOf(cmd.DriverID)
	if !ok {
		return driversapi.LocationReply{}, ErrDriverNotFound
	}
	ack, err := d.js.PublishMsg(ctx, fix.Msg)
	if err != nil {
		return driversapi.LocationReply{}, fmt.Errorf("store location of %s: %w: %v", cmd.DriverID, eventstore.ErrUnavailable, err)
	}
	ev := fix.Event
	d.fleet.setPosition(cmd.DriverID, position{point: events.GeoPoint{Latitude: ev.Latitude, Longitude: ev.Longitude}, speedKmh: ev.SpeedKmh, seq: ack.Sequence})
	view := positionView(cmd.DriverID, rid, ev, ack.Sequence)
	return driversapi.LocationReply{Position: view, Seq: ack.Sequence, ReadModel: driversapi.PositionsModel, Replayed: ack.Duplicate}, nil
}

func positionView(driverID, restaurantID string, ev events.DriverLocationReported, seq uint64) driversapi.PositionView {
	return driversapi.PositionView{DriverID: driverID, RestaurantID: restaurantID, Latitude: ev.Latitude, Longitude: ev.Longitude,
		SpeedKmh: ev.SpeedKmh, Heading: ev.Heading, AccuracyM: ev.AccuracyM, At: ev.RecordedAt, Seq: seq}
}

func checkKey(key string) []domain.FieldError {
	return driversapi.ValidateIdempotencyKey(key)
}

// reply is a command's answer: the driver as it is now, and the last
// sequence the command wrote (at least the driver's own).
func (d *Dispatcher) reply(driverID string, seq uint64, replayed bool) driversapi.CommandReply {
	view, dseq, _ := d.fleet.view(driverID)
	return driversapi.CommandReply{Driver: view, Seq: max(seq, dseq), ReadModel: driversapi.ReadModel, Replayed: replayed}
}
