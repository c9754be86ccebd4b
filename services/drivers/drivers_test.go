package drivers_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/drivers"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/redis/go-redis/v9"
)

// offset returns a point about km kilometres north of p.
func offset(p events.GeoPoint, km float64) events.GeoPoint {
	return events.GeoPoint{Latitude: p.Latitude + km/111.195, Longitude: p.Longitude}
}

func TestCatalogueDriversAreRegisteredAvailable(t *testing.T) {
	h := newHarness(t, drivers.Config{})
	ctx := context.Background()
	all, err := h.rdb.ZRange(ctx, driversapi.AllDriversKey(h.ks), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 9 {
		t.Fatalf("chain index lists %d drivers, want the catalogue's 9: %v", len(all), all)
	}
	ids, err := h.rdb.ZRange(ctx, driversapi.RestaurantDriversKey(h.ks, downtown), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{d1, d2, d3}) {
		t.Fatalf("downtown index %v", ids)
	}
	v := h.waitDriver(d2, hasStatus(driversapi.StatusAvailable))
	if v.Name != "Ivo" || v.Vehicle != "car" || v.RestaurantID != downtown || v.Location != nil || v.CurrentOrderID != nil {
		t.Fatalf("view %+v", v)
	}

	// A second start registers nobody twice.
	before := len(h.driverLog())
	h.svc.Stop()
	h.start()
	if after := len(h.driverLog()); after != before {
		t.Fatalf("restart appended %d events", after-before)
	}
}

func TestNearestAvailableDriverGetsReadyOrder(t *testing.T) {
	h := newHarness(t, drivers.Config{})
	h.locate(d1, offset(downtownLoc, 3), nil)
	h.locate(d2, offset(downtownLoc, 0.2), ptr(12.0))
	h.locate(d3, offset(downtownLoc, 1), nil)

	if err := h.ready("o-1", downtown, customerLoc); err != nil {
		t.Fatal(err)
	}
	v := h.waitDriver(d2, holds("o-1"))
	if v.CurrentDelivery == nil || v.CurrentDelivery.Manual || v.CurrentDelivery.Dropoff.Latitude != customerLoc.Latitude ||
		v.CurrentDelivery.Pickup.Latitude != downtownLoc.Latitude {
		t.Fatalf("current delivery %+v", v.CurrentDelivery)
	}
	for _, other := range []string{d1, d3} {
		h.waitDriver(other, hasStatus(driversapi.StatusAvailable))
	}
	h.waitQueue(downtown)
	dv := h.waitDelivery("o-1", driversapi.DeliveryAssigned)
	if deref(dv.DriverID) != d2 || dv.RestaurantID != downtown {
		t.Fatalf("delivery view %+v", dv)
	}
	if got := h.checkLog()["o-1"]; !slices.Equal(got, []string{d2}) {
		t.Fatalf("o-1 assigned to %v", got)
	}

	// The positions read model answers nearest-driver searches.
	ctx := context.Background()
	testkit.Eventually(t, waitTimeout, func() error {
		res, err := h.rdb.GeoSearch(ctx, driversapi.GeoKey(h.ks, downtown), &redis.GeoSearchQuery{
			Longitude: downtownLoc.Longitude, Latitude: downtownLoc.Latitude, Radius: 5, RadiusUnit: "km", Sort: "ASC"}).Result()
		if err != nil {
			return err
		}
		if !slices.Equal(res, []string{d2, d3, d1}) {
			return fmt.Errorf("drivers by distance %v", res)
		}
		return nil
	})
	var pos driversapi.PositionView
	if ok, err := h.getJSON(driversapi.PositionKey(h.ks, d2), &pos); err != nil || !ok {
		t.Fatalf("position of %s: %v %v", d2, ok, err)
	}
	if pos.RestaurantID != downtown || pos.SpeedKmh == nil || *pos.SpeedKmh != 12 || pos.Seq == 0 {
		t.Fatalf("position %+v", pos)
	}
	if merged := v.WithPosition(&pos); merged.Location == nil || merged.Location.Latitude != pos.Latitude {
		t.Fatalf("merged view %+v", merged.Location)
	}
}

func TestOrderWaitsUntilADriverIsAvailable(t *testing.T) {
	h := newHarness(t, drivers.Config{})
	for _, d := range []string{d1, d2, d3} {
		h.setStatus(d, events.DriverOnBreak)
	}
	if err := h.ready("o-1", downtown, customerLoc); err != nil {
		t.Fatal(err)
	}
	h.waitQueue(downtown, "o-1")
	h.waitDelivery("o-1", driversapi.DeliveryWaiting)

	reply := h.setStatus(d3, events.DriverAvailable)
	if err := holds("o-1")(reply.Driver); err != nil {
		t.Fatalf("reply to Available: %v", err)
	}
	h.waitQueue(downtown)
	h.waitDriver(d3, holds("o-1"))
	testkit.Eventually(t, waitTimeout, func() error {
		cp, err := h.rdb.Get(context.Background(), driversapi.CheckpointKey(h.ks, driversapi.ReadModel)).Uint64()
		if err != nil || cp < reply.Seq {
			return fmt.Errorf("checkpoint %d, reply seq %d, %v", cp, reply.Seq, err)
		}
		return nil
	})
	h.checkLog()
}

func TestConcurrentManualAssignments(t *testing.T) {
	h := newHarness(t, drivers.Config{ManualDispatch: true})
	for _, o := range []string{"o-1", "o-2", "o-3"} {
		if err := h.ready(o, downtown, customerLoc); err != nil {
			t.Fatal(err)
		}
	}
	h.waitQueue(downtown, "o-1", "o-2", "o-3")

	race := func(cmds ...driversapi.AssignCommand) (wins []driversapi.CommandReply, losses []*problem.Problem) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, cmd := range cmds {
			wg.Go(func() {
				var r driversapi.CommandReply
				p, err := h.call(driversapi.SubjectAssign, cmd, &r)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Error(err)
				case p != nil:
					losses = append(losses, p)
				default:
					wins = append(wins, r)
				}
			})
		}
		wg.Wait()
		return wins, losses
	}

	// Two managers give one order to different drivers: exactly one wins.
	wins, losses := race(
		driversapi.AssignCommand{OrderID: "o-1", DriverID: d1, By: "manager-a"},
		driversapi.AssignCommand{OrderID: "o-1", DriverID: d2, By: "manager-b"},
	)
	if len(wins) != 1 || len(losses) != 1 || losses[0].Status != 409 {
		t.Fatalf("wins %+v, losses %+v", wins, losses)
	}
	winner := wins[0].Driver
	if err := holds("o-1")(winner); err != nil || !winner.CurrentDelivery.Manual || winner.CurrentDelivery.AssignedBy == "" {
		t.Fatalf("winner %+v: %v", winner, err)
	}

	// Two managers give one free driver different orders: exactly one wins.
	free := d1
	if winner.DriverID == d1 {
		free = d2
	}
	wins, losses = race(
		driversapi.AssignCommand{OrderID: "o-2", DriverID: free, By: "manager-a"},
		driversapi.AssignCommand{OrderID: "o-3", DriverID: free, By: "manager-b"},
	)
	if len(wins) != 1 || len(losses) != 1 || losses[0].Status != 409 || losses[0].CurrentStatus != driversapi.StatusBusy {
		t.Fatalf("wins %+v, losses %+v", wins, losses)
	}

	// A driver who is busy, and an order no longer waiting, are conflicts.
	h.fails(409, driversapi.SubjectAssign, driversapi.AssignCommand{OrderID: "o-1", DriverID: d3})
	h.fails(404, driversapi.SubjectAssign, driversapi.AssignCommand{OrderID: "o-9", DriverID: d3})
	h.fails(404, driversapi.SubjectAssign, driversapi.AssignCommand{OrderID: "o-3", DriverID: "nobody"})
	p := h.fails(422, driversapi.SubjectAssign, driversapi.AssignCommand{OrderID: "o-3", DriverID: "pearl-driver-1"})
	if len(p.Errors) != 1 || p.Errors[0].Field != "driverId" {
		t.Fatalf("problem %+v", p)
	}
	h.fails(422, driversapi.SubjectAssign, driversapi.AssignCommand{OrderID: "o 3", DriverID: d3})

	// The remaining order waits: manual dispatch assigns nothing by itself.
	h.waitQueue(downtown, remaining(wins[0].Driver, "o-2", "o-3"))
	h.ok(driversapi.SubjectAssign, driversapi.AssignCommand{OrderID: remaining(wins[0].Driver, "o-2", "o-3"), DriverID: d3, By: "manager-a"})
	h.waitQueue(downtown)
	assigned := h.checkLog()
	if len(assigned) != 3 {
		t.Fatalf("assignments %v", assigned)
	}
}

// remaining returns the one of two orders that the driver does not hold.
func remaining(v driversapi.DriverView, a, b string) string {
	if deref(v.CurrentOrderID) == a {
		return b
	}
	return a
}

func TestManyReadyOrdersFewDrivers(t *testing.T) {
	h := newHarness(t, drivers.Config{})
	const orders = 20
	var wg sync.WaitGroup
	for i := range orders {
		wg.Go(func() {
			if err := h.ready(fmt.Sprintf("o-%02d", i), downtown, offset(customerLoc, float64(i)/10)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	// Rounds: wait until drivers hold orders not handled yet, then every
	// such driver picks up and delivers at the same time as the others.
	handled := map[string]bool{}
	for len(handled) < orders {
		work := map[string]string{}
		testkit.Eventually(t, waitTimeout, func() error {
			for _, d := range []string{d1, d2, d3} {
				var v driversapi.DriverView
				if ok, err := h.getJSON(driversapi.DriverKey(h.ks, d), &v); err != nil || !ok {
					return fmt.Errorf("driver %s: %v %v", d, ok, err)
				}
				if v.CurrentOrderID != nil && !handled[*v.CurrentOrderID] {
					work[d] = *v.CurrentOrderID
				}
			}
			if len(work) == 0 {
				return fmt.Errorf("no new assignment after %d deliveries", len(handled))
			}
			return nil
		})
		for driverID, orderID := range work {
			handled[orderID] = true
			wg.Go(func() {
				var r driversapi.CommandReply
				if p, err := h.call(driversapi.SubjectPickup, driversapi.PickupCommand{DriverID: driverID, OrderID: orderID}, &r); err != nil || p != nil {
					t.Errorf("pickup %s by %s: %v %v", orderID, driverID, err, p)
				}
				if p, err := h.call(driversapi.SubjectDeliver, driversapi.DeliverCommand{DriverID: driverID, OrderID: orderID}, &r); err != nil || p != nil {
					t.Errorf("deliver %s by %s: %v %v", orderID, driverID, err, p)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	assigned := h.checkLog()
	if len(assigned) != orders {
		t.Fatalf("%d orders assigned, want %d", len(assigned), orders)
	}
	completed := 0
	for _, r := range h.driverLog() {
		if _, ok := r.Event.(events.DeliveryCompleted); ok {
			completed++
		}
	}
	if completed != orders {
		t.Fatalf("%d deliveries completed in the log, want %d", completed, orders)
	}
	h.waitQueue(downtown)
	for _, d := range []string{d1, d2, d3} {
		h.waitDriver(d, hasStatus(driversapi.StatusAvailable))
	}
}

func TestPickupAndDeliveryRules(t *testing.T) {
	h := newHarness(t, drivers.Config{})
	h.setStatus(d1, events.DriverOnBreak)
	h.setStatus(d3, events.DriverOnBreak)
	h.locate(d2, downtownLoc, ptr(36.0))
	if err := h.ready("o-1", downtown, customerLoc); err != nil {
		t.Fatal(err)
	}
	h.waitDriver(d2, holds("o-1"))

	p := h.fails(409, driversapi.SubjectDeliver, driversapi.DeliverCommand{DriverID: d2, OrderID: "o-1"})
	if p.CurrentStatus != driversapi.StatusBusy || p.Type != problem.TypeInvalidTransition {
		t.Fatalf("deliver before pickup: %+v", p)
	}
	h.fails(409, driversapi.SubjectPickup, driversapi.PickupCommand{DriverID: d1, OrderID: "o-1"})
	h.fails(409, driversapi.SubjectPickup, driversapi.PickupCommand{DriverID: d2, OrderID: "o-2"})
	h.fails(404, driversapi.SubjectPickup, driversapi.PickupCommand{DriverID: "nobody", OrderID: "o-1"})
	h.fails(422, driversapi.SubjectPickup, driversapi.PickupCommand{DriverID: d2, OrderID: ""})

	reply := h.ok(driversapi.SubjectPickup, driversapi.PickupCommand{DriverID: d2, OrderID: "o-1"})
	eta := reply.Driver.CurrentDelivery.EstimatedDeliveryAt
	km := 0.01 * math.Pi / 180 * 6371.0088 // customerLoc is 0.01° north of the restaurant
	want := t0.Add(time.Duration(km / 36 / testTimeScal * float64(time.Hour)))
	if eta == nil || eta.Sub(want).Abs() > 50*time.Millisecond {
		t.Fatalf("estimated delivery %v, want about %v (reported 36 km/h, time scale %g)", eta, want, testTimeScal)
	}
	h.fails(409, driversapi.SubjectPickup, driversapi.PickupCommand{DriverID: d2, OrderID: "o-1"})
	h.fails(409, driversapi.SubjectDeliver, driversapi.DeliverCommand{DriverID: d1, OrderID: "o-1"})
	dv := h.waitDelivery("o-1", driversapi.DeliveryPickedUp)
	if dv.EstimatedDeliveryAt == nil || !dv.EstimatedDeliveryAt.Equal(*eta) {
		t.Fatalf("delivery view %+v", dv)
	}

	reply = h.ok(driversapi.SubjectDeliver, driversapi.DeliverCommand{DriverID: d2, OrderID: "o-1"})
	if reply.Driver.Status != driversapi.StatusAvailable || reply.Driver.DeliveriesCompleted != 1 || reply.Driver.CurrentOrderID != nil {
		t.Fatalf("after delivery %+v", reply.Driver)
	}
	h.waitDelivery("o-1", driversapi.DeliveryDelivered)
	h.fails(409, driversapi.SubjectDeliver, driversapi.DeliverCommand{DriverID: d2, OrderID: "o-1"})

	// An idempotency key makes a retried confirmation a replay, not a 409.
	if err := h.ready("o-2", downtown, customerLoc); err != nil {
		t.Fatal(err)
	}
	h.waitDriver(d2, holds("o-2"))
	cmd := driversapi.PickupCommand{DriverID: d2, OrderID: "o-2", CommandMeta: driversapi.CommandMeta{IdempotencyKey: "k-1"}}
	first := h.ok(driversapi.SubjectPickup, cmd)
	again := h.ok(driversapi.SubjectPickup, cmd)
	if first.Replayed || !again.Replayed || again.Driver.Version != first.Driver.Version {
		t.Fatalf("first %+v, retry %+v", first, again)
	}
}

func TestCancelledWaitingOrderLeavesTheQueue(t *testing.T) {
	for _, failed := range []bool{false, true} {
		t.Run(fmt.Sprintf("failed=%v", failed), func(t *testing.T) {
			h := newHarness(t, drivers.Config{})
			for _, d := range []string{d1, d2, d3} {
				h.setStatus(d, events.DriverOnBreak)
			}
			for _, o := range []string{"o-1", "o-2"} {
				if err := h.ready(o, downtown, customerLoc); err != nil {
					t.Fatal(err)
				}
			}
			h.waitQueue(downtown, "o-1", "o-2")
			h.end("o-1", failed)
			h.waitQueue(downtown, "o-2")
			status := driversapi.DeliveryCancelled
			if failed {
				status = driversapi.DeliveryFailed
			}
			h.waitDelivery("o-1", status)

			reply := h.setStatus(d1, events.DriverAvailable)
			if err := holds("o-2")(reply.Driver); err != nil {
				t.Fatal(err)
			}
			if _, ok := h.checkLog()["o-1"]; ok {
				t.Fatal("the ended order was assigned")
			}
			// A second "ready" of the ended order does not queue it again;
			// o-3, ready after it on the same consumer, proves it was handled.
			if err := h.ready("o-1", downtown, customerLoc); err != nil {
				t.Fatal(err)
			}
			h.setStatus(d2, events.DriverAvailable)
			if err := h.ready("o-3", downtown, customerLoc); err != nil {
				t.Fatal(err)
			}
			h.waitDriver(d2, holds("o-3"))
			h.waitQueue(downtown)
			if _, ok := h.checkLog()["o-1"]; ok {
				t.Fatal("the ended order was assigned")
			}
		})
	}
}

func TestCancelledAssignedOrderFreesTheDriver(t *testing.T) {
	h := newHarness(t, drivers.Config{})
	h.setStatus(d2, events.DriverOnBreak)
	h.setStatus(d3, events.DriverOnBreak)
	if err := h.ready("o-1", downtown, customerLoc); err != nil {
		t.Fatal(err)
	}
	h.waitDriver(d1, holds("o-1"))
	if err := h.ready("o-2", downtown, customerLoc); err != nil {
		t.Fatal(err)
	}
	h.waitQueue(downtown, "o-2")

	h.end("o-1", false)
	h.waitDriver(d1, holds("o-2")) // freed, then given the waiting order
	h.waitQueue(downtown)
	dv := h.waitDelivery("o-1", driversapi.DeliveryCancelled)
	if dv.DriverID != nil {
		t.Fatalf("cancelled delivery still names driver %s", *dv.DriverID)
	}
	var d1Events []string
	for _, r := range h.driverLog() {
		if r.Envelope.AggregateID == d1 {
			d1Events = append(d1Events, r.Envelope.Type)
		}
	}
	want := []string{"driver_registered", "driver_status_changed", "driver_assigned", "driver_unassigned", "driver_assigned"}
	if !slices.Equal(d1Events, want) {
		t.Fatalf("d1's events %v, want %v", d1Events, want)
	}

	// After pickup the driver keeps the order: it is in the car. o-3's
	// cancellation, after o-2's failure on the same consumer, proves the
	// failure was handled.
	if err := h.ready("o-3", downtown, customerLoc); err != nil {
		t.Fatal(err)
	}
	h.waitQueue(downtown, "o-3")
	h.ok(driversapi.SubjectPickup, driversapi.PickupCommand{DriverID: d1, OrderID: "o-2"})
	h.end("o-2", true)
	h.end("o-3", false)
	h.waitQueue(downtown)
	h.waitDelivery("o-3", driversapi.DeliveryCancelled)
	h.waitDriver(d1, holds("o-2"))
	reply := h.ok(driversapi.SubjectDeliver, driversapi.DeliverCommand{DriverID: d1, OrderID: "o-2"})
	if reply.Driver.Status != driversapi.StatusAvailable {
		t.Fatalf("after delivering the failed order: %+v", reply.Driver)
	}
	h.checkLog()
}

func TestOrderEndedBeforeReadyIsNotDispatched(t *testing.T) {
	h := newHarness(t, drivers.Config{})
	h.end("o-1", false)
	if err := h.ready("o-1", downtown, customerLoc); err != nil {
		t.Fatal(err)
	}
	if err := h.ready("o-2", downtown, customerLoc); err != nil {
		t.Fatal(err)
	}
	h.waitDelivery("o-2", driversapi.DeliveryAssigned)
	for _, r := range h.driverLog() {
		if id, _ := r.Event.(events.DeliveryRequested); id.OrderID == "o-1" {
			t.Fatalf("cancelled order queued: seq %d", r.Seq)
		}
	}
}

func TestRestartRebuildsStateAndAssignsWaitingOrders(t *testing.T) {
	h := newHarness(t, drivers.Config{})
	h.setStatus(d2, events.DriverOnBreak)
	h.setStatus(d3, events.DriverOnBreak)
	for _, o := range []string{"o-1", "o-2", "o-3"} {
		if err := h.ready(o, downtown, customerLoc); err != nil {
			t.Fatal(err)
		}
	}
	h.waitDriver(d1, holds("o-1"))
	h.waitQueue(downtown, "o-2", "o-3")
	h.svc.Stop()

	// While the service is down: another order gets ready, and driver 2
	// became Available just before a crash that left no time to assign.
	if err := h.ready("o-4", downtown, customerLoc); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	seq, err := h.store.LastSeq(ctx, d2)
	if err != nil {
		t.Fatal(err)
	}
	env, err := events.NewEnvelope(d2, events.DriverStatusChanged{Status: events.DriverAvailable, Previous: events.DriverOnBreak}, t0, events.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.Append(ctx, eventstore.Append{AggregateID: d2, ExpectedSeq: seq, CommandID: "crashed-status", Events: []events.Envelope{env}}); err != nil {
		t.Fatal(err)
	}

	h.start()
	h.waitDriver(d2, holds("o-2")) // assigned at start
	h.waitQueue(downtown, "o-3", "o-4")
	h.ok(driversapi.SubjectPickup, driversapi.PickupCommand{DriverID: d1, OrderID: "o-1"}) // state knows d1 holds o-1
	reply := h.ok(driversapi.SubjectDeliver, driversapi.DeliverCommand{DriverID: d1, OrderID: "o-1"})
	if err := holds("o-3")(reply.Driver); err != nil {
		t.Fatal(err)
	}
	reply = h.setStatus(d3, events.DriverAvailable)
	if err := holds("o-4")(reply.Driver); err != nil {
		t.Fatal(err)
	}
	h.waitQueue(downtown)
	assigned := h.checkLog()
	want := map[string]string{"o-1": d1, "o-2": d2, "o-3": d1, "o-4": d3}
	for o, d := range want {
		if !slices.Equal(assigned[o], []string{d}) {
			t.Fatalf("%s assigned to %v, want %s", o, assigned[o], d)
		}
	}
	// The read model went on from its checkpoint: views match the log.
	h.waitDriver(d1, holds("o-3"))
	h.waitDriver(d1, func(v driversapi.DriverView) error {
		if v.DeliveriesCompleted != 1 {
			return fmt.Errorf("deliveries completed %d", v.DeliveriesCompleted)
		}
		return nil
	})
}

func TestReadModelsRebuildFromTheLog(t *testing.T) {
	h := newHarness(t, drivers.Config{})
	h.locate(d1, downtownLoc, nil)
	h.locate(d2, offset(downtownLoc, 2), nil)
	h.locate(d3, offset(downtownLoc, 4), nil)
	if err := h.ready("o-1", downtown, customerLoc); err != nil {
		t.Fatal(err)
	}
	h.waitDriver(d1, holds("o-1"))
	h.svc.Stop()
	testkit.DeletePrefix(context.Background(), h.rdb, h.ks)
	h.start()
	h.waitDriver(d1, holds("o-1"))
	h.waitDelivery("o-1", driversapi.DeliveryAssigned)
	testkit.Eventually(t, waitTimeout, func() error {
		var pos driversapi.PositionView
		ok, err := h.getJSON(driversapi.PositionKey(h.ks, d3), &pos)
		if err != nil || !ok {
			return fmt.Errorf("position: %v %v", ok, err)
		}
		n, err := h.rdb.ZCard(context.Background(), driversapi.GeoKey(h.ks, downtown)).Result()
		if err != nil || n != 3 {
			return fmt.Errorf("geo set has %d drivers, %v", n, err)
		}
		return nil
	})
}

func TestLocationValidation(t *testing.T) {
	h := newHarness(t, drivers.Config{})
	lat, lon := 45.52, -122.68
	now := t0
	tests := []struct {
		name   string
		cmd    driversapi.LocationCommand
		status int
		fields []string
	}{
		{"missing coordinates", driversapi.LocationCommand{DriverID: d1}, 422, []string{"latitude", "longitude"}},
		{"latitude out of range", driversapi.LocationCommand{DriverID: d1, Latitude: ptr(90.5), Longitude: &lon}, 422, []string{"latitude"}},
		{"longitude out of range", driversapi.LocationCommand{DriverID: d1, Latitude: &lat, Longitude: ptr(-180.1)}, 422, []string{"longitude"}},
		{"negative speed", driversapi.LocationCommand{DriverID: d1, Latitude: &lat, Longitude: &lon, SpeedKmh: ptr(-1.0)}, 422, []string{"speedKmh"}},
		{"heading of 360", driversapi.LocationCommand{DriverID: d1, Latitude: &lat, Longitude: &lon, Heading: ptr(360.0)}, 422, []string{"heading"}},
		{"negative accuracy", driversapi.LocationCommand{DriverID: d1, Latitude: &lat, Longitude: &lon, AccuracyM: ptr(-3.0)}, 422, []string{"accuracyM"}},
		{"fix from the future", driversapi.LocationCommand{DriverID: d1, Latitude: &lat, Longitude: &lon, Timestamp: ptr(now.Add(time.Hour))}, 422, []string{"timestamp"}},
		{"fix from two days ago", driversapi.LocationCommand{DriverID: d1, Latitude: &lat, Longitude: &lon, Timestamp: ptr(now.Add(-48 * time.Hour))}, 422, []string{"timestamp"}},
		{"unknown driver", driversapi.LocationCommand{DriverID: "nobody", Latitude: &lat, Longitude: &lon}, 404, nil},
		{"valid", driversapi.LocationCommand{DriverID: d1, Latitude: &lat, Longitude: &lon, SpeedKmh: ptr(0.0), Heading: ptr(359.9), AccuracyM: ptr(4.0), Timestamp: ptr(now.Add(-time.Minute))}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r driversapi.LocationReply
			p, err := h.call(driversapi.SubjectLocation, tt.cmd, &r)
			if err != nil {
				t.Fatal(err)
			}
			if tt.status == 0 {
				if p != nil {
					t.Fatalf("refused: %s", p.Error())
				}
				if r.Seq == 0 || r.ReadModel != driversapi.PositionsModel || r.Position.Latitude != lat || !r.Position.At.Equal(now.Add(-time.Minute)) {
					t.Fatalf("reply %+v", r)
				}
				return
			}
			if p == nil || p.Status != tt.status {
				t.Fatalf("problem %+v, want status %d", p, tt.status)
			}
			var fields []string
			for _, f := range p.Errors {
				fields = append(fields, f.Field)
			}
			if !slices.Equal(fields, tt.fields) {
				t.Fatalf("fields %v, want %v", fields, tt.fields)
			}
		})
	}
	var pos driversapi.PositionView
	testkit.Eventually(t, waitTimeout, func() error {
		ok, err := h.getJSON(driversapi.PositionKey(h.ks, d1), &pos)
		if err != nil || !ok {
			return fmt.Errorf("position: %v %v", ok, err)
		}
		return nil
	})
	if pos.Latitude != lat || pos.Longitude != lon || pos.AccuracyM == nil || *pos.AccuracyM != 4 {
		t.Fatalf("stored position %+v", pos)
	}
	geo, err := h.rdb.GeoPos(context.Background(), driversapi.GeoKey(h.ks, downtown), d1).Result()
	if err != nil || len(geo) != 1 || geo[0] == nil || math.Abs(geo[0].Latitude-lat) > 1e-5 || math.Abs(geo[0].Longitude-lon) > 1e-5 {
		t.Fatalf("GEOPOS %v %v", geo, err)
	}
	// Malformed commands are 400s.
	msg, err := h.nc.Request(driversapi.SubjectLocation, []byte(`{"latitude":"north"`), waitTimeout)
	if err != nil || msg.Header.Get("Nats-Service-Error-Code") != "400" {
		t.Fatalf("malformed command: %v %v", msg, err)
	}
}

func TestRegisterAndStatusCommands(t *testing.T) {
	h := newHarness(t, drivers.Config{})
	reply := h.ok(driversapi.SubjectRegister, driversapi.RegisterCommand{Name: "Nora", RestaurantID: "pearl", Vehicle: "bike"})
	id := reply.Driver.DriverID
	if id == "" || reply.Driver.Status != driversapi.StatusOffline || reply.Driver.RestaurantID != "pearl" || reply.Seq == 0 {
		t.Fatalf("reply %+v", reply)
	}
	h.waitDriver(id, hasStatus(driversapi.StatusOffline))
	if _, err := h.rdb.ZScore(context.Background(), driversapi.RestaurantDriversKey(h.ks, "pearl"), id).Result(); err != nil {
		t.Fatalf("restaurant index: %v", err)
	}

	h.fails(409, driversapi.SubjectRegister, driversapi.RegisterCommand{DriverID: id, Name: "Nora", RestaurantID: "pearl", Vehicle: "bike"})
	h.fails(409, driversapi.SubjectRegister, driversapi.RegisterCommand{DriverID: d1, Name: "Hana", RestaurantID: downtown, Vehicle: "scooter"})
	for _, tt := range []struct {
		cmd    driversapi.RegisterCommand
		fields []string
	}{
		{driversapi.RegisterCommand{Name: "Nora", RestaurantID: "atlantis", Vehicle: "bike"}, []string{"restaurantId"}},
		{driversapi.RegisterCommand{Name: " ", RestaurantID: "pearl", Vehicle: "bike"}, []string{"name"}},
		{driversapi.RegisterCommand{DriverID: "dispatch-pearl", Name: "Nora", RestaurantID: "pearl", Vehicle: "bike"}, []string{"driverId"}},
		{driversapi.RegisterCommand{DriverID: "a.b", Name: "Nora", RestaurantID: "pearl", Vehicle: "rocket"}, []string{"vehicle", "driverId"}},
	} {
		p := h.fails(422, driversapi.SubjectRegister, tt.cmd)
		var fields []string
		for _, f := range p.Errors {
			fields = append(fields, f.Field)
		}
		if !slices.Equal(fields, tt.fields) {
			t.Fatalf("%+v: fields %v, want %v", tt.cmd, fields, tt.fields)
		}
	}

	// A registration retried with its idempotency key is a replay.
	cmd := driversapi.RegisterCommand{Name: "Otto", RestaurantID: "pearl", Vehicle: "car", CommandMeta: driversapi.CommandMeta{IdempotencyKey: "signup-otto"}}
	first := h.ok(driversapi.SubjectRegister, cmd)
	again := h.ok(driversapi.SubjectRegister, cmd)
	if first.Driver.DriverID != again.Driver.DriverID || !again.Replayed {
		t.Fatalf("first %+v, retry %+v", first, again)
	}

	p := h.fails(422, driversapi.SubjectStatus, driversapi.StatusCommand{DriverID: id, Status: "Busy"})
	if p.Errors[0].Field != "status" {
		t.Fatalf("problem %+v", p)
	}
	h.fails(422, driversapi.SubjectStatus, driversapi.StatusCommand{DriverID: id, Status: "Asleep"})
	h.fails(404, driversapi.SubjectStatus, driversapi.StatusCommand{DriverID: "nobody", Status: "Available"})
	same := h.setStatus(id, events.DriverOffline)
	if same.Driver.Version != reply.Driver.Version {
		t.Fatalf("setting the same status changed the driver: %+v", same.Driver)
	}

	// A driver holding an order cannot go off duty.
	for _, d := range []string{"pearl-driver-1", "pearl-driver-2", "pearl-driver-3"} {
		h.setStatus(d, events.DriverOffline)
	}
	if err := h.ready("o-1", "pearl", customerLoc); err != nil {
		t.Fatal(err)
	}
	h.waitQueue("pearl", "o-1")
	h.setStatus(id, events.DriverAvailable)
	h.waitDriver(id, holds("o-1"))
	for _, s := range []string{events.DriverOffline, events.DriverOnBreak, events.DriverEndOfShift, events.DriverAvailable} {
		p := h.fails(409, driversapi.SubjectStatus, driversapi.StatusCommand{DriverID: id, Status: s})
		if p.CurrentStatus != driversapi.StatusBusy {
			t.Fatalf("%s: problem %+v", s, p)
		}
	}
}

// Two instances (not the intended deployment, but possible during a
// rollout) share the consumers and decide on their own states: the
// expected-sequence checks of the atomic appends keep the log correct.
func TestTwoInstancesNeverDoubleAssign(t *testing.T) {
	h := newHarness(t, drivers.Config{})
	second, err := drivers.New(h.cfg, drivers.Deps{NC: h.nc, JS: h.js, Redis: h.rdb, Catalog: catalog.Default(), Log: testLogger(), Clock: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Stop)
	for _, d := range []string{d1, d2, d3} {
		h.setStatus(d, events.DriverOnBreak)
	}
	orders := []string{"o-0", "o-1", "o-2", "o-3", "o-4", "o-5"}
	for _, o := range orders {
		if err := h.ready(o, downtown, customerLoc); err != nil {
			t.Fatal(err)
		}
	}
	// The instances share the kitchen consumer, so the queue's order is the
	// order their appends landed in.
	h.waitQueueSet(downtown, orders...)
	var wg sync.WaitGroup
	for _, d := range []string{d1, d2, d3} {
		wg.Go(func() {
			var r driversapi.CommandReply
			if p, err := h.call(driversapi.SubjectStatus, driversapi.StatusCommand{DriverID: d, Status: events.DriverAvailable}, &r); err != nil || p != nil {
				t.Errorf("%s Available: %v %v", d, err, p)
			}
		})
	}
	wg.Wait()
	for _, d := range []string{d1, d2, d3} {
		h.waitDriver(d, hasStatus(driversapi.StatusBusy))
	}
	assigned := h.checkLog()
	if len(assigned) != 3 {
		t.Fatalf("assigned %v", assigned)
	}
	var waiting []string
	for _, o := range orders {
		if _, ok := assigned[o]; !ok {
			waiting = append(waiting, o)
		}
	}
	h.waitQueueSet(downtown, waiting...)
}

// Started before the kitchen and orders services provisioned their
// streams, the service serves commands at once and subscribes to the
// streams when they appear.
func TestStartsBeforeOtherStreamsExist(t *testing.T) {
	ns := testkit.RunJetStream(t)
	nc := testkit.Connect(t, ns)
	js := testkit.JetStream(t, nc)
	rdb, ks := testkit.Redis(t)
	svc, err := drivers.New(drivers.Config{Keyspace: ks}, drivers.Deps{NC: nc, JS: js, Redis: rdb, Catalog: catalog.Default(), Log: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Stop)
	if err := svc.Ready(context.Background()); err == nil {
		t.Fatal("ready without its consumers")
	}
	h := &harness{t: t, nc: nc}
	h.setStatus(d1, events.DriverOnBreak)

	if err := eventstore.Provision(context.Background(), js, eventstore.StreamOptions{}, events.DomainContexts()...); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, waitTimeout, func() error { return svc.Ready(context.Background()) })
}
