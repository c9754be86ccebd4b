package domain

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
)

var (
	t0         = time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)
	restaurant = events.GeoPoint{Latitude: 45.5189, Longitude: -122.679}
	customer   = events.GeoPoint{Latitude: 45.5289, Longitude: -122.679} // ~1.11 km north
)

func apply(t *testing.T, d *Driver, evs []events.Event, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		d.Apply(e, t0)
	}
}

// driverIn builds a driver of restaurant r1 in one of the named states,
// applying the events its own decisions return.
func driverIn(t *testing.T, state string) *Driver {
	t.Helper()
	d := NewDriver("d1")
	if state == "unregistered" {
		return d
	}
	evs, err := d.Register(RegisterInput{RestaurantID: "r1", Name: "Hana", Vehicle: "scooter"})
	apply(t, d, evs, err)
	switch state {
	case "Offline":
		return d
	case "OnBreak", "EndOfShift", "Available":
		evs, err := d.SetStatus(state)
		apply(t, d, evs, err)
		return d
	}
	evs, err = d.SetStatus(events.DriverAvailable)
	apply(t, d, evs, err)
	q := queueWith(t, "o1")
	dEvs, _, err := Assign(d, q, "o1", false, "")
	apply(t, d, dEvs, err)
	if state == "assigned" {
		return d
	}
	evs, err = d.PickUp("o1", t0, nil, 1)
	apply(t, d, evs, err)
	if state == "pickedUp" {
		return d
	}
	t.Fatalf("unknown state %q", state)
	return nil
}

func queueWith(t *testing.T, orderIDs ...string) *Queue {
	t.Helper()
	q := NewQueue("r1")
	for i, id := range orderIDs {
		for _, e := range q.Request(id, restaurant, customer) {
			q.Apply(e, t0.Add(time.Duration(i)*time.Second))
		}
	}
	return q
}

func TestRegister(t *testing.T) {
	long := string(make([]byte, MaxNameLength+1))
	tests := []struct {
		name   string
		in     RegisterInput
		fields []string
	}{
		{"valid", RegisterInput{RestaurantID: "r1", Name: " Hana ", Vehicle: "car"}, nil},
		{"everything missing", RegisterInput{}, []string{"name", "restaurantId", "vehicle"}},
		{"blank name", RegisterInput{RestaurantID: "r1", Name: "   ", Vehicle: "bike"}, []string{"name"}},
		{"long name", RegisterInput{RestaurantID: "r1", Name: long, Vehicle: "bike"}, []string{"name"}},
		{"unknown vehicle", RegisterInput{RestaurantID: "r1", Name: "Ivo", Vehicle: "truck"}, []string{"vehicle"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := NewDriver("d1").Register(tt.in)
			if tt.fields == nil {
				if err != nil {
					t.Fatal(err)
				}
				want := events.DriverRegistered{RestaurantID: "r1", Name: "Hana", Vehicle: "car"}
				if !reflect.DeepEqual(evs, []events.Event{want}) {
					t.Fatalf("events %#v, want %#v", evs, want)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err %v, want a validation error", err)
			}
			var got []string
			for _, f := range ve.Fields {
				got = append(got, f.Field)
			}
			if !reflect.DeepEqual(got, tt.fields) {
				t.Fatalf("fields %v, want %v", got, tt.fields)
			}
		})
	}
	d := driverIn(t, "Offline")
	if _, err := d.Register(RegisterInput{RestaurantID: "r1", Name: "Hana", Vehicle: "car"}); !errors.Is(err, ErrAlreadyRegistered) {
		t.Fatalf("second registration: %v", err)
	}
	if d.Status() != events.DriverOffline {
		t.Fatalf("a new driver is %s, want Offline", d.Status())
	}
}

func TestSetStatus(t *testing.T) {
	tests := []struct {
		from, to string
		want     error // nil: a status change (or none, when equal)
		invalid  bool
	}{
		{"Offline", "Available", nil, false},
		{"Available", "OnBreak", nil, false},
		{"OnBreak", "EndOfShift", nil, false},
		{"EndOfShift", "Offline", nil, false},
		{"Available", "Available", nil, false},
		{"Offline", "Busy", nil, true},
		{"Offline", "Sleeping", nil, true},
		{"assigned", "Offline", ErrHoldingOrder, false},
		{"assigned", "OnBreak", ErrHoldingOrder, false},
		{"assigned", "EndOfShift", ErrHoldingOrder, false},
		{"assigned", "Available", ErrHoldingOrder, false},
		{"pickedUp", "OnBreak", ErrHoldingOrder, false},
		{"unregistered", "Available", ErrNotRegistered, false},
	}
	for _, tt := range tests {
		t.Run(tt.from+">"+tt.to, func(t *testing.T) {
			d := driverIn(t, tt.from)
			before := d.Status()
			evs, err := d.SetStatus(tt.to)
			var ve *ValidationError
			switch {
			case tt.invalid:
				if !errors.As(err, &ve) || ve.Fields[0].Field != "status" {
					t.Fatalf("err %v, want a validation error on status", err)
				}
			case tt.want != nil:
				if !errors.Is(err, tt.want) {
					t.Fatalf("err %v, want %v", err, tt.want)
				}
			case err != nil:
				t.Fatal(err)
			case tt.from == tt.to:
				if len(evs) != 0 {
					t.Fatalf("same status recorded %v", evs)
				}
			default:
				want := []events.Event{events.DriverStatusChanged{Status: tt.to, Previous: before}}
				if !reflect.DeepEqual(evs, want) {
					t.Fatalf("events %#v, want %#v", evs, want)
				}
				apply(t, d, evs, nil)
				if d.Status() != tt.to {
					t.Fatalf("status %s, want %s", d.Status(), tt.to)
				}
			}
		})
	}
}

func TestDeliveryLifecycle(t *testing.T) {
	tests := []struct {
		name  string
		state string
		act   func(d *Driver) ([]events.Event, error)
		want  error
		after string // status after applying the events
	}{
		{"pickup by the holder", "assigned", func(d *Driver) ([]events.Event, error) { return d.PickUp("o1", t0, nil, 1) }, nil, events.DriverBusy},
		{"pickup of another order", "assigned", func(d *Driver) ([]events.Event, error) { return d.PickUp("o2", t0, nil, 1) }, ErrNotHolding, ""},
		{"pickup by a driver without order", "Available", func(d *Driver) ([]events.Event, error) { return d.PickUp("o1", t0, nil, 1) }, ErrNotHolding, ""},
		{"pickup twice", "pickedUp", func(d *Driver) ([]events.Event, error) { return d.PickUp("o1", t0, nil, 1) }, ErrAlreadyPickedUp, ""},
		{"deliver before pickup", "assigned", func(d *Driver) ([]events.Event, error) { return d.Deliver("o1") }, ErrNotPickedUp, ""},
		{"deliver after pickup", "pickedUp", func(d *Driver) ([]events.Event, error) { return d.Deliver("o1") }, nil, events.DriverAvailable},
		{"deliver another order", "pickedUp", func(d *Driver) ([]events.Event, error) { return d.Deliver("o2") }, ErrNotHolding, ""},
		{"unassign before pickup", "assigned", func(d *Driver) ([]events.Event, error) { return d.Unassign("o1", ClosedCancelled) }, nil, events.DriverAvailable},
		{"unassign after pickup", "pickedUp", func(d *Driver) ([]events.Event, error) { return d.Unassign("o1", ClosedFailed) }, ErrAlreadyPickedUp, ""},
		{"unassign another order", "assigned", func(d *Driver) ([]events.Event, error) { return d.Unassign("o2", ClosedCancelled) }, ErrNotHolding, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := driverIn(t, tt.state)
			evs, err := tt.act(d)
			if tt.want != nil {
				if !errors.Is(err, tt.want) || len(evs) != 0 {
					t.Fatalf("events %v err %v, want %v", evs, err, tt.want)
				}
				return
			}
			apply(t, d, evs, err)
			if d.Status() != tt.after {
				t.Fatalf("status %s, want %s", d.Status(), tt.after)
			}
			if tt.after == events.DriverAvailable && (!d.Available() || d.Holds("o1")) {
				t.Fatal("the driver should be free again")
			}
		})
	}
}

func TestPickUpEstimate(t *testing.T) {
	km := DistanceKm(restaurant, customer)
	speed := func(v float64) *float64 { return &v }
	tests := []struct {
		name      string
		vehicle   string
		reported  *float64
		timeScale float64
		kmh       float64
	}{
		{"scooter, no speed reported", "scooter", nil, 1, 25},
		{"car, standing still", "car", speed(3), 1, 30},
		{"bike, moving", "bike", speed(20), 1, 20},
		{"bike, demo time", "bike", nil, 60, 15 * 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDriver("d1")
			evs, err := d.Register(RegisterInput{RestaurantID: "r1", Name: "Hana", Vehicle: tt.vehicle})
			apply(t, d, evs, err)
			evs, err = d.SetStatus(events.DriverAvailable)
			apply(t, d, evs, err)
			dEvs, _, err := Assign(d, queueWith(t, "o1"), "o1", false, "")
			apply(t, d, dEvs, err)
			evs, err = d.PickUp("o1", t0, tt.reported, tt.timeScale)
			if err != nil {
				t.Fatal(err)
			}
			got := evs[0].(events.DeliveryPickedUp).EstimatedDeliveryAt.Sub(t0)
			want := time.Duration(km / tt.kmh * float64(time.Hour))
			if diff := got - want; diff < -time.Millisecond || diff > time.Millisecond {
				t.Fatalf("estimate %v after pickup, want %v", got, want)
			}
		})
	}
}

func TestQueue(t *testing.T) {
	q := queueWith(t, "o1", "o2", "o3")
	if evs := q.Request("o2", restaurant, customer); len(evs) != 0 {
		t.Fatalf("an order already waiting was queued again: %v", evs)
	}
	var ids []string
	for _, r := range q.Waiting() {
		ids = append(ids, r.OrderID)
	}
	if !reflect.DeepEqual(ids, []string{"o1", "o2", "o3"}) {
		t.Fatalf("waiting %v, want first come first served", ids)
	}
	evs, err := q.Close("o2", ClosedCancelled)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		q.Apply(e, t0)
	}
	if _, err := q.Close("o2", ClosedCancelled); !errors.Is(err, ErrNotWaiting) {
		t.Fatalf("closing twice: %v", err)
	}
	if _, err := q.Close("o9", ClosedCancelled); !errors.Is(err, ErrNotWaiting) {
		t.Fatalf("closing an unknown order: %v", err)
	}
	if evs := q.Request("o2", restaurant, customer); len(evs) != 0 {
		t.Fatalf("a closed order was queued again: %v", evs)
	}
	if oldest, _ := q.Oldest(); oldest.OrderID != "o1" {
		t.Fatalf("oldest %s, want o1", oldest.OrderID)
	}
	if s, _ := q.State("o2"); s.Waiting || s.Reason != ClosedCancelled {
		t.Fatalf("state of o2: %+v", s)
	}
}

func TestAssign(t *testing.T) {
	other := NewDriver("d2")
	evs, err := other.Register(RegisterInput{RestaurantID: "r2", Name: "Ivo", Vehicle: "car"})
	apply(t, other, evs, err)
	evs, err = other.SetStatus(events.DriverAvailable)
	apply(t, other, evs, err)

	tests := []struct {
		name    string
		driver  func() *Driver
		orderID string
		want    error
	}{
		{"available driver, waiting order", func() *Driver { return driverIn(t, "Available") }, "o1", nil},
		{"driver on break", func() *Driver { return driverIn(t, "OnBreak") }, "o1", ErrNotAvailable},
		{"driver offline", func() *Driver { return driverIn(t, "Offline") }, "o1", ErrNotAvailable},
		{"driver holding an order", func() *Driver { return driverIn(t, "assigned") }, "o1", ErrNotAvailable},
		{"order not in the queue", func() *Driver { return driverIn(t, "Available") }, "o9", ErrNotWaiting},
		{"driver of another restaurant", func() *Driver { return other }, "o1", ErrOtherRestaurant},
		{"unregistered driver", func() *Driver { return NewDriver("d3") }, "o1", ErrNotRegistered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := queueWith(t, "o1")
			d := tt.driver()
			dEvs, qEvs, err := Assign(d, q, tt.orderID, true, "manager-1")
			if tt.want != nil {
				if !errors.Is(err, tt.want) || dEvs != nil || qEvs != nil {
					t.Fatalf("err %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantD := events.DriverAssigned{OrderID: "o1", RestaurantID: "r1", Pickup: restaurant, Dropoff: customer, Manual: true, AssignedBy: "manager-1"}
			wantQ := events.DeliveryRequestClosed{OrderID: "o1", Reason: ClosedAssigned, DriverID: "d1"}
			if !reflect.DeepEqual(dEvs, []events.Event{wantD}) || !reflect.DeepEqual(qEvs, []events.Event{wantQ}) {
				t.Fatalf("events %#v / %#v", dEvs, qEvs)
			}
			apply(t, d, dEvs, nil)
			for _, e := range qEvs {
				q.Apply(e, t0)
			}
			if d.Status() != events.DriverBusy || !d.Holds("o1") || len(q.Waiting()) != 0 {
				t.Fatalf("after assignment: driver %s holds o1 %v, queue %v", d.Status(), d.Holds("o1"), q.Waiting())
			}
			// Neither the driver nor the order can be given away twice.
			q2 := queueWith(t, "o2")
			if _, _, err := Assign(d, q2, "o2", false, ""); !errors.Is(err, ErrNotAvailable) {
				t.Fatalf("a busy driver got a second order: %v", err)
			}
			if _, _, err := Assign(driverIn(t, "Available"), q, "o1", false, ""); !errors.Is(err, ErrNotWaiting) {
				t.Fatalf("an assigned order got a second driver: %v", err)
			}
		})
	}
}

func TestDistanceAndNearest(t *testing.T) {
	if km := DistanceKm(events.GeoPoint{}, events.GeoPoint{Longitude: 1}); math.Abs(km-111.195) > 0.01 {
		t.Fatalf("one degree of longitude at the equator is %.3f km", km)
	}
	if km := DistanceKm(restaurant, restaurant); km != 0 {
		t.Fatalf("distance to itself %f", km)
	}
	near := events.GeoPoint{Latitude: 45.5190, Longitude: -122.679}
	far := events.GeoPoint{Latitude: 45.60, Longitude: -122.679}
	tests := []struct {
		name  string
		cands []Candidate
		want  string
		found bool
	}{
		{"none", nil, "", false},
		{"nearest wins", []Candidate{{"a", far}, {"b", near}, {"c", customer}}, "b", true},
		{"tie goes to the smaller id", []Candidate{{"z", near}, {"m", near}}, "m", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Nearest(tt.cands, restaurant)
			if ok != tt.found || got.DriverID != tt.want {
				t.Fatalf("nearest %q %v, want %q %v", got.DriverID, ok, tt.want, tt.found)
			}
		})
	}
}
