package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
)

// DriversProjector builds the "drivers" read model from DRIVERS: a view
// per driver, indexes of driver ids per restaurant and for the chain, the
// dispatch queue of each restaurant and the delivery of each order, with a
// notification per change.
type DriversProjector struct{}

func (DriversProjector) Name() string     { return driversapi.ReadModel }
func (DriversProjector) Stream() string   { return events.Drivers.Stream }
func (DriversProjector) Filter() []string { return []string{events.Drivers.Wildcard()} }

// Apply folds one driver or queue event into the read model.
func (DriversProjector) Apply(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
	id := rec.Envelope.AggregateID
	if rid, ok := strings.CutPrefix(id, dispatchPrefix); ok {
		return applyQueueEvent(ctx, tx, rid, rec)
	}
	return applyDriverEvent(ctx, tx, id, rec)
}

func applyDriverEvent(ctx context.Context, tx *projection.Tx, driverID string, rec eventstore.Record) error {
	key := tx.Key("driver", driverID)
	var view driversapi.DriverView
	if err := getJSON(ctx, tx, key, &view); err != nil {
		return err
	}
	if err := applyDriverView(&view, rec.Envelope, rec.Event, rec.Seq); err != nil {
		return err
	}
	if err := setJSON(tx, key, view); err != nil {
		return err
	}
	if _, ok := rec.Event.(events.DriverRegistered); ok {
		score := float64(view.RegisteredAt.UnixMilli())
		tx.ZAdd(tx.Key("restaurant", view.RestaurantID), score, driverID)
		tx.ZAdd(tx.Key("all"), score, driverID)
	}
	note := driversapi.Notification{Kind: driversapi.KindDriver, Seq: rec.Seq, RestaurantID: view.RestaurantID, DriverID: driverID, Driver: &view}
	if err := applyDeliveryEvent(ctx, tx, rec, &note); err != nil {
		return err
	}
	return notify(tx, note)
}

func applyQueueEvent(ctx context.Context, tx *projection.Tx, restaurantID string, rec eventstore.Record) error {
	key := tx.Key("queue", restaurantID)
	var view driversapi.QueueView
	if err := getJSON(ctx, tx, key, &view); err != nil {
		return err
	}
	if err := applyQueueView(&view, restaurantID, rec.Envelope, rec.Event, rec.Seq); err != nil {
		return err
	}
	if err := setJSON(tx, key, view); err != nil {
		return err
	}
	note := driversapi.Notification{Kind: driversapi.KindQueue, Seq: rec.Seq, RestaurantID: restaurantID, Queue: &view}
	if err := applyDeliveryEvent(ctx, tx, rec, &note); err != nil {
		return err
	}
	return notify(tx, note)
}

// applyDeliveryEvent updates the delivery view of the order the event
// concerns, if any, and adds it to the notification.
func applyDeliveryEvent(ctx context.Context, tx *projection.Tx, rec eventstore.Record, note *driversapi.Notification) error {
	orderID, ok := deliveryOrderID(rec.Event)
	if !ok {
		return nil
	}
	key := tx.Key("delivery", orderID)
	var view driversapi.DeliveryView
	if err := getJSON(ctx, tx, key, &view); err != nil {
		return err
	}
	applyDeliveryView(&view, rec.Envelope, rec.Event, rec.Seq)
	if err := setJSON(tx, key, view); err != nil {
		return err
	}
	note.OrderID, note.Delivery = orderID, &view
	return nil
}

// PositionsProjector builds the "driver-positions" read model from
// TELEMETRY: each driver's last fix, and a GEO set per restaurant of its
// drivers' positions. RestaurantOf tells a driver's restaurant (fixed at
// registration); a fix of a driver it does not know is stored without
// the GEO entry.
type PositionsProjector struct {
	RestaurantOf func(driverID string) (string, bool)
}

func (PositionsProjector) Name() string     { return driversapi.PositionsModel }
func (PositionsProjector) Stream() string   { return events.Telemetry.Stream }
func (PositionsProjector) Filter() []string { return []string{events.DriverLocationSubject(">")} }

// Apply stores one fix.
func (p PositionsProjector) Apply(_ context.Context, tx *projection.Tx, rec eventstore.Record) error {
	ev, ok := rec.Event.(events.DriverLocationReported)
	if !ok {
		return fmt.Errorf("driver positions: unexpected event %s on %s", events.Name(rec.Envelope.Type, rec.Envelope.Version), rec.Subject)
	}
	driverID := driverOfSubject(rec.Subject, rec.Envelope.AggregateID)
	rid := ""
	if p.RestaurantOf != nil {
		rid, _ = p.RestaurantOf(driverID)
	}
	view := positionView(driverID, rid, ev, rec.Seq)
	if err := setJSON(tx, tx.Key("position", driverID), view); err != nil {
		return err
	}
	if score, ok := GeoScore(ev.Latitude, ev.Longitude); ok && rid != "" {
		tx.ZAdd(tx.Key("geo", rid), score, driverID)
	}
	b, err := codec.Marshal(driversapi.PositionNotification{Seq: rec.Seq, Position: view})
	if err != nil {
		return err
	}
	tx.Notify(string(b))
	return nil
}

// Redis GEO sets are sorted sets scored by a 52-bit geohash: latitude and
// longitude each quantised to 26 bits over Redis's ranges and interleaved,
// longitude bits in the odd positions. The projection runtime stages plain
// ZADDs, so the projector computes that score itself; GEOSEARCH, GEOPOS and
// GEODIST then work on the set as if GEOADD had filled it.
const (
	geoLatLimit = 85.05112878
	geoLonLimit = 180.0
	geoStep     = 26
)

// GeoScore returns the Redis GEO score of a point, false outside the
// latitudes Redis can index (beyond ±85.05112878).
func GeoScore(lat, lon float64) (float64, bool) {
	if lat < -geoLatLimit || lat > geoLatLimit || lon < -geoLonLimit || lon > geoLonLimit {
		return 0, false
	}
	cells := float64(uint64(1) << geoStep)
	latCell := uint64(uint32((lat + geoLatLimit) / (2 * geoLatLimit) * cells))
	lonCell := uint64(uint32((lon + geoLonLimit) / (2 * geoLonLimit) * cells))
	return float64(spreadBits(latCell) | spreadBits(lonCell)<<1), true
}

// spreadBits moves bit i of v to bit 2i.
func spreadBits(v uint64) uint64 {
	v &= 0xFFFFFFFF
	v = (v | v<<16) & 0x0000FFFF0000FFFF
	v = (v | v<<8) & 0x00FF00FF00FF00FF
	v = (v | v<<4) & 0x0F0F0F0F0F0F0F0F
	v = (v | v<<2) & 0x3333333333333333
	v = (v | v<<1) & 0x5555555555555555
	return v
}

func getJSON(ctx context.Context, tx *projection.Tx, key string, v any) error {
	raw, ok, err := tx.Get(ctx, key)
	if err != nil || !ok {
		return err
	}
	if err := codec.Unmarshal([]byte(raw), v); err != nil {
		return fmt.Errorf("%s is corrupt: %w", key, err)
	}
	return nil
}

func setJSON(tx *projection.Tx, key string, v any) error {
	b, err := codec.Marshal(v)
	if err != nil {
		return err
	}
	tx.Set(key, string(b))
	return nil
}

func notify(tx *projection.Tx, note driversapi.Notification) error {
	b, err := codec.Marshal(note)
	if err != nil {
		return err
	}
	tx.Notify(string(b))
	return nil
}
