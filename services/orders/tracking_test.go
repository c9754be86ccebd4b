package orders_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fix stores a driver's position fix in TELEMETRY, as the drivers service
// does, and returns its sequence.
func (f *fixture) fix(driverID string, lat, lon float64, speed *float64) uint64 {
	f.t.Helper()
	ev := events.DriverLocationReported{Latitude: lat, Longitude: lon, SpeedKmh: speed, RecordedAt: time.Now().UTC().Truncate(time.Millisecond)}
	env, err := events.NewEnvelope(driverID, ev, time.Now(), events.Meta{CorrelationID: driverID})
	if err != nil {
		f.t.Fatal(err)
	}
	body, _ := env.Marshal()
	m := nats.NewMsg(events.DriverLocationSubject(driverID))
	m.Data = body
	id := fmt.Sprintf("location:%s:%d", driverID, time.Now().UnixNano())
	m.Header.Set(events.HeaderType, env.Type)
	m.Header.Set(events.HeaderVersion, strconv.Itoa(env.Version))
	m.Header.Set(events.HeaderCommandID, id)
	m.Header.Set(jetstream.MsgIDHeader, id)
	ack, err := f.js.PublishMsg(context.Background(), m)
	if err != nil {
		f.t.Fatal(err)
	}
	return ack.Sequence
}

// waitTracking waits until the order's view carries the fix seq.
func (f *fixture) waitTracking(id string, seq uint64, check func(ordersapi.OrderView) error) ordersapi.OrderView {
	f.t.Helper()
	var v ordersapi.OrderView
	testkit.Eventually(f.t, 5*time.Second, func() error {
		v = f.view(id)
		if v.DriverTracking == nil || v.DriverTracking.Seq != seq {
			return fmt.Errorf("order %s (%s) tracking %+v, want fix %d", id, v.Status, v.DriverTracking, seq)
		}
		if check != nil {
			return check(v)
		}
		return nil
	})
	return v
}

// While an order is with its driver, the order read model carries the
// driver's newest position fix and an ETA recomputed from it, without a
// new version; an older fix put back by a concurrent rewrite is replaced
// again; the position leaves the order when it is delivered.
func TestDriverPositionFoldedIntoOrderView(t *testing.T) {
	f := start(t)
	const driver = "downtown-driver-1"
	// A position reported before the driver got the order counts too.
	before := f.fix(driver, 45.51, -122.68, nil)
	o := f.place("downtown")
	id := o.OrderID
	if v := f.view(id); v.DriverTracking != nil {
		t.Fatalf("a new order carries tracking %+v", v.DriverTracking)
	}
	pt := events.GeoPoint{Latitude: 45.5, Longitude: -122.6}
	f.emit(events.Inventory, "downtown", events.StockReserved{OrderID: id, RestaurantID: "downtown"})
	f.emit(events.Kitchen, id, events.TicketQueued{RestaurantID: "downtown"})
	f.emit(events.Kitchen, id, events.TicketPreparationStarted{RestaurantID: "downtown", ChefID: "downtown-chef-1", Attempt: 1})
	f.emit(events.Kitchen, id, events.TicketBakingStarted{RestaurantID: "downtown"})
	f.emit(events.Kitchen, id, events.TicketQualityCheckStarted{RestaurantID: "downtown"})
	f.emit(events.Kitchen, id, events.TicketReady{RestaurantID: "downtown"})
	f.waitStatus(id, "ReadyForPickup")
	if v := f.view(id); v.DriverTracking != nil {
		t.Fatalf("an order without a driver carries tracking %+v", v.DriverTracking)
	}
	f.emit(events.Drivers, driver, events.DriverAssigned{OrderID: id, RestaurantID: "downtown", Pickup: pt, Dropoff: pt})

	// Assigned, not picked up: the way left goes through the restaurant.
	rest, _ := catalog.Default().Restaurant("downtown")
	direct := haversine(45.51, -122.68, 45.5, -122.6)
	assigned := f.waitTracking(id, before, func(v ordersapi.OrderView) error {
		tr := v.DriverTracking
		if v.Status != "DriverAssigned" || tr.DriverID != driver || tr.Latitude != 45.51 || tr.Longitude != -122.68 || tr.SpeedKmh != nil {
			return fmt.Errorf("view %s %+v", v.Status, tr)
		}
		via := haversine(45.51, -122.68, rest.Location.Latitude, rest.Location.Longitude) + haversine(rest.Location.Latitude, rest.Location.Longitude, 45.5, -122.6)
		if diff := tr.DistanceKm - via; diff > 0.001 || diff < -0.001 {
			return fmt.Errorf("distance %.3f km, want %.3f via the restaurant", tr.DistanceKm, via)
		}
		return nil
	})
	// At the default 25 km/h (no speed reported), time scale 1.
	if want := assigned.DriverTracking.At.Add(time.Duration(assigned.DriverTracking.DistanceKm / 25 * float64(time.Hour))); assigned.DriverTracking.EtaAt.Sub(want).Abs() > time.Second {
		t.Fatalf("eta %v, want %v", assigned.DriverTracking.EtaAt, want)
	}

	// Picked up: straight to the customer; the same fix, recomputed.
	f.emit(events.Drivers, driver, events.DeliveryPickedUp{OrderID: id, EstimatedDeliveryAt: time.Now().Add(time.Hour)})
	f.waitStatus(id, "OutForDelivery")
	out := f.waitTracking(id, before, func(v ordersapi.OrderView) error {
		if d := v.DriverTracking.DistanceKm - direct; d > 0.001 || d < -0.001 {
			return fmt.Errorf("distance %.3f km, want %.3f straight", v.DriverTracking.DistanceKm, direct)
		}
		return nil
	})
	version := out.Version

	// Fixes in quick succession: the view ends on the newest, at the
	// reported speed, with the same version.
	speed := 30.0
	var last uint64
	for i := 0; i < 5; i++ {
		last = f.fix(driver, 45.505, -122.61+float64(i)/1000, &speed)
	}
	v := f.waitTracking(id, last, func(v ordersapi.OrderView) error {
		if v.DriverTracking.Longitude != -122.606 || v.DriverTracking.SpeedKmh == nil || *v.DriverTracking.SpeedKmh != 30 {
			return fmt.Errorf("tracking %+v", v.DriverTracking)
		}
		return nil
	})
	if v.Version != version {
		t.Fatalf("a position moved the order's version from %d to %d", version, v.Version)
	}
	km := haversine(45.505, -122.606, 45.5, -122.6)
	if want := v.DriverTracking.At.Add(time.Duration(km / 30 * float64(time.Hour))); v.DriverTracking.EtaAt.Sub(want).Abs() > time.Second {
		t.Fatalf("eta %v, want %v", v.DriverTracking.EtaAt, want)
	}

	// A rewrite of the view from an older read (as the projector does
	// when it applies an order event concurrently) is repaired.
	stale := v
	stale.DriverTracking = assigned.DriverTracking
	b, _ := json.Marshal(stale)
	note, _ := json.Marshal(ordersapi.Notification{OrderID: id, Seq: stale.Version, Order: stale})
	ctx := context.Background()
	if err := f.rdb.Set(ctx, ordersapi.OrderKey(f.keyspace, id), b, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.Publish(ctx, ordersapi.Channel(f.keyspace), note).Err(); err != nil {
		t.Fatal(err)
	}
	f.waitTracking(id, last, nil)

	// Delivered: no position any more, and later fixes stay out.
	f.emit(events.Drivers, driver, events.DeliveryCompleted{OrderID: id})
	f.waitStatus(id, "Delivered")
	f.fix(driver, 45.6, -122.7, nil)
	testkit.Eventually(t, 5*time.Second, func() error {
		if v := f.view(id); v.DriverTracking != nil {
			return fmt.Errorf("delivered order still tracks %+v", v.DriverTracking)
		}
		return nil
	})
	// Another order of the same driver picks up the newest fix; the
	// delivered one is left alone (checked again after that write).
	o2 := f.place("downtown")
	f.emit(events.Inventory, "downtown", events.StockReserved{OrderID: o2.OrderID, RestaurantID: "downtown"})
	f.emit(events.Kitchen, o2.OrderID, events.TicketQueued{RestaurantID: "downtown"})
	f.emit(events.Kitchen, o2.OrderID, events.TicketPreparationStarted{RestaurantID: "downtown", ChefID: "downtown-chef-1", Attempt: 1})
	f.emit(events.Kitchen, o2.OrderID, events.TicketBakingStarted{RestaurantID: "downtown"})
	f.emit(events.Kitchen, o2.OrderID, events.TicketQualityCheckStarted{RestaurantID: "downtown"})
	f.emit(events.Kitchen, o2.OrderID, events.TicketReady{RestaurantID: "downtown"})
	f.waitStatus(o2.OrderID, "ReadyForPickup")
	f.emit(events.Drivers, driver, events.DriverAssigned{OrderID: o2.OrderID, RestaurantID: "downtown", Pickup: pt, Dropoff: pt})
	newest := f.fix(driver, 45.52, -122.65, nil)
	f.waitTracking(o2.OrderID, newest, nil)
	if v := f.view(id); v.DriverTracking != nil || v.Status != "Delivered" {
		t.Fatalf("delivered order %s tracks %+v", v.Status, v.DriverTracking)
	}
}

func haversine(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dLat, dLon := (lat2-lat1)*rad, (lon2-lon1)*rad
	s1, s2 := math.Sin(dLat/2), math.Sin(dLon/2)
	a := s1*s1 + math.Cos(lat1*rad)*math.Cos(lat2*rad)*s2*s2
	return 2 * r * math.Asin(math.Sqrt(a))
}
