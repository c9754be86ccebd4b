// Package domain holds the two aggregates of the drivers context, pure:
// a Driver (registration, status, the one delivery it holds) and a
// restaurant's dispatch Queue (orders ready and waiting for a driver).
// Decision methods validate and return the events that record the
// decision; Apply methods fold events into state and never fail. No I/O,
// no clock: time comes in as an argument.
package domain

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/problem"
)

// Sentinel domain errors. The service edge maps them to problems: the
// state errors are conflicts (409) with the driver's current status.
var (
	ErrAlreadyRegistered = errors.New("the driver is already registered")
	ErrNotRegistered     = errors.New("the driver is not registered")
	ErrHoldingOrder      = errors.New("the driver holds an order; deliver it (or have it cancelled) first")
	ErrNotAvailable      = errors.New("the driver is not Available")
	ErrNotHolding        = errors.New("the driver does not hold this order")
	ErrAlreadyPickedUp   = errors.New("the order was already picked up")
	ErrNotPickedUp       = errors.New("the order has not been picked up yet")
	ErrNotWaiting        = errors.New("the order does not wait for a driver")
	ErrOtherRestaurant   = errors.New("the driver works for another restaurant")
)

// FieldError names an invalid input field: the contract's type
// (driversapi.FieldError is the same), so a field error found while
// building a command's event needs no conversion.
type FieldError = problem.FieldError

// ValidationError lists every invalid field of an input.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Detail
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Fields: []FieldError{{Field: field, Detail: fmt.Sprintf(format, args...)}}}
}

// Statuses a driver can set by hand (or a manager for them). Busy is not
// among them: a driver is Busy exactly while holding an order.
var SettableStatuses = []string{events.DriverOffline, events.DriverAvailable, events.DriverOnBreak, events.DriverEndOfShift}

// Vehicle is how a driver travels; it sets the speed used for estimates
// when the driver's own speed is unknown.
type Vehicle string

// Vehicles of the fleet.
const (
	Scooter Vehicle = "scooter"
	Car     Vehicle = "car"
	Bike    Vehicle = "bike"
)

// Vehicles lists the known vehicles.
var Vehicles = []Vehicle{Scooter, Car, Bike}

// ParseVehicle returns the vehicle named s.
func ParseVehicle(s string) (Vehicle, bool) {
	v := Vehicle(s)
	return v, slices.Contains(Vehicles, v)
}

// TypicalSpeedKmh is the average city speed of the vehicle, door to door.
func (v Vehicle) TypicalSpeedKmh() float64 {
	switch v {
	case Car:
		return 30
	case Bike:
		return 15
	default:
		return 25
	}
}

// Delivery is the order a driver holds, from assignment to hand-over.
type Delivery struct {
	OrderID             string
	Pickup              events.GeoPoint
	Dropoff             events.GeoPoint
	AssignedAt          time.Time
	Manual              bool
	AssignedBy          string
	PickedUp            bool
	PickedUpAt          time.Time
	EstimatedDeliveryAt time.Time
}

// Driver is the driver aggregate, rebuilt by applying its events.
type Driver struct {
	id           string
	restaurantID string
	name         string
	vehicle      Vehicle
	status       string
	current      *Delivery
	registeredAt time.Time
	updatedAt    time.Time
	completed    int
}

// NewDriver returns the empty aggregate for id (not registered yet).
func NewDriver(id string) *Driver { return &Driver{id: id} }

func (d *Driver) ID() string              { return d.id }
func (d *Driver) RestaurantID() string    { return d.restaurantID }
func (d *Driver) Name() string            { return d.name }
func (d *Driver) Vehicle() Vehicle        { return d.vehicle }
func (d *Driver) Status() string          { return d.status }
func (d *Driver) Registered() bool        { return d.status != "" }
func (d *Driver) RegisteredAt() time.Time { return d.registeredAt }
func (d *Driver) LastUpdated() time.Time  { return d.updatedAt }
func (d *Driver) Completed() int          { return d.completed }

// Available reports whether the driver can take an order now.
func (d *Driver) Available() bool { return d.status == events.DriverAvailable && d.current == nil }

// Current returns the delivery the driver holds, if any.
func (d *Driver) Current() (Delivery, bool) {
	if d.current == nil {
		return Delivery{}, false
	}
	return *d.current, true
}

// Holds reports whether the driver holds orderID.
func (d *Driver) Holds(orderID string) bool { return d.current != nil && d.current.OrderID == orderID }

// RegisterInput is what a new driver is registered with. The restaurant
// must have been checked against the catalogue by the caller.
type RegisterInput struct {
	RestaurantID string
	Name         string
	Vehicle      string
}

// MaxNameLength bounds a driver's display name.
const MaxNameLength = 100

// ValidateRegistration checks a registration's fields (all problems at once).
func ValidateRegistration(in RegisterInput) []FieldError {
	var errs []FieldError
	name := strings.TrimSpace(in.Name)
	switch {
	case name == "":
		errs = append(errs, FieldError{Field: "name", Detail: "is required"})
	case len(name) > MaxNameLength:
		errs = append(errs, FieldError{Field: "name", Detail: fmt.Sprintf("is longer than %d characters", MaxNameLength)})
	}
	if in.RestaurantID == "" {
		errs = append(errs, FieldError{Field: "restaurantId", Detail: "is required"})
	}
	if _, ok := ParseVehicle(in.Vehicle); !ok {
		errs = append(errs, FieldError{Field: "vehicle", Detail: fmt.Sprintf("must be one of %s", joinVehicles())})
	}
	return errs
}

// Register adds the driver to a restaurant's fleet; it starts Offline.
func (d *Driver) Register(in RegisterInput) ([]events.Event, error) {
	if d.Registered() {
		return nil, ErrAlreadyRegistered
	}
	if errs := ValidateRegistration(in); len(errs) > 0 {
		return nil, &ValidationError{Fields: errs}
	}
	return []events.Event{events.DriverRegistered{RestaurantID: in.RestaurantID, Name: strings.TrimSpace(in.Name), Vehicle: in.Vehicle}}, nil
}

func joinVehicles() string {
	s := make([]string, len(Vehicles))
	for i, v := range Vehicles {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

// SetStatus records a status the driver (or a manager) chose. Setting the
// current status again records nothing. Busy is set by assignment only; a
// driver holding an order can change nothing until it is delivered.
func (d *Driver) SetStatus(status string) ([]events.Event, error) {
	if !d.Registered() {
		return nil, ErrNotRegistered
	}
	if status == events.DriverBusy {
		return nil, invalid("status", "Busy is set by assignment, not by hand")
	}
	if !slices.Contains(SettableStatuses, status) {
		return nil, invalid("status", "must be one of %s", strings.Join(SettableStatuses, ", "))
	}
	if d.current != nil {
		return nil, ErrHoldingOrder
	}
	if status == d.status {
		return nil, nil
	}
	return []events.Event{events.DriverStatusChanged{Status: status, Previous: d.status}}, nil
}

// PickUp records that the driver collected the order it holds. The
// estimate is now + distance(pickup, dropoff) / speed, compressed by
// timeScale (demo time); speed is the driver's last reported speed when it
// is a moving one (over 5 km/h), otherwise the vehicle's typical speed.
func (d *Driver) PickUp(orderID string, now time.Time, reportedSpeedKmh *float64, timeScale float64) ([]events.Event, error) {
	if !d.Holds(orderID) {
		return nil, ErrNotHolding
	}
	if d.current.PickedUp {
		return nil, ErrAlreadyPickedUp
	}
	speed := d.vehicle.TypicalSpeedKmh()
	if reportedSpeedKmh != nil && *reportedSpeedKmh > MovingSpeedKmh {
		speed = *reportedSpeedKmh
	}
	eta := EstimateArrival(d.current.Pickup, d.current.Dropoff, speed, now, timeScale)
	return []events.Event{events.DeliveryPickedUp{OrderID: orderID, EstimatedDeliveryAt: eta}}, nil
}

// Deliver records the hand-over; the driver is Available again.
func (d *Driver) Deliver(orderID string) ([]events.Event, error) {
	if !d.Holds(orderID) {
		return nil, ErrNotHolding
	}
	if !d.current.PickedUp {
		return nil, ErrNotPickedUp
	}
	return []events.Event{events.DeliveryCompleted{OrderID: orderID}}, nil
}

// Unassign frees a driver whose order was cancelled or failed before
// pickup. After pickup the driver keeps the order (it is physically with
// them) and completes or returns it with Deliver.
func (d *Driver) Unassign(orderID, reason string) ([]events.Event, error) {
	if !d.Holds(orderID) {
		return nil, ErrNotHolding
	}
	if d.current.PickedUp {
		return nil, ErrAlreadyPickedUp
	}
	return []events.Event{events.DriverUnassigned{OrderID: orderID, Reason: reason}}, nil
}

// Apply folds one of the driver's events into its state. Events of other
// aggregates are ignored.
func (d *Driver) Apply(ev events.Event, at time.Time) {
	switch e := ev.(type) {
	case events.DriverRegistered:
		d.restaurantID, d.name, d.vehicle = e.RestaurantID, e.Name, Vehicle(e.Vehicle)
		d.status = events.DriverOffline
		d.registeredAt = at
	case events.DriverStatusChanged:
		d.status = e.Status
	case events.DriverAssigned:
		d.status = events.DriverBusy
		d.current = &Delivery{OrderID: e.OrderID, Pickup: e.Pickup, Dropoff: e.Dropoff, AssignedAt: at, Manual: e.Manual, AssignedBy: e.AssignedBy}
	case events.DeliveryPickedUp:
		if d.current != nil {
			c := *d.current
			c.PickedUp, c.PickedUpAt, c.EstimatedDeliveryAt = true, at, e.EstimatedDeliveryAt
			d.current = &c
		}
	case events.DriverUnassigned:
		d.current = nil
		d.status = events.DriverAvailable
	case events.DeliveryCompleted:
		d.current = nil
		d.status = events.DriverAvailable
		d.completed++
	default:
		return
	}
	d.updatedAt = at
}
