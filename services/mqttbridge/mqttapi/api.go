// Package mqttapi is the public contract of the mqttbridge service, the
// platform's MQTT front door for drivers' phones and kitchen devices:
//
//   - the MQTT topics devices publish and subscribe to, and their JSON
//     payloads (DESIGN.md, MQTT section);
//   - the command it serves over NATS request/reply (nats.go/micro):
//     issuing a device's MQTT secret;
//   - the telemetry events it appends to the TELEMETRY stream (oven
//     readings, kitchen alerts) and RegisterEvents to decode them;
//   - the "kitchen-telemetry" read model it keeps in Redis (views, keys,
//     notification channel);
//   - the names of its durable consumers and of its credential bucket.
//
// A driver's position and status are not the bridge's events: a status is
// sent to the drivers service (driversapi.SubjectStatus), which owns it; a
// position fix is appended to TELEMETRY as the drivers service's
// driver_location_reported, built by driversapi.NewLocationFix.
package mqttapi

import (
	"encoding/json"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/projection"
)

// Service identity and command subjects. They sit outside the event
// subjects so no stream ever captures a command.
const (
	ServiceName        = "mqttbridge"
	ServiceVersion     = "1.0.0"
	QueueGroup         = "mqttbridge"
	SubjectCredentials = "svc.mqttbridge.credentials"
)

// OutboundFollower names the reader of DRIVERS in metrics and logs: every
// bridge instance follows DRIVERS for itself (an ordered consumer, no
// durable): driver_assigned is sent to the driver's phone
// (TopicAssigned), delivery_picked_up becomes the order's driver ETA
// (TopicDriverETA), driver_unassigned and delivery_completed clear the
// driver's retained assignment.
const OutboundFollower = "mqttbridge-outbound"

// CredentialsBucket is the JetStream key-value bucket holding one salted
// secret hash per device, keyed by device id.
const CredentialsBucket = "DEVICE_CREDENTIALS"

// Device kinds. A device authenticates with its id as MQTT username.
const (
	KindDriver  = "driver"
	KindKitchen = "kitchen"
)

// TopicAllDriverETAs is the filter a driver's phone may subscribe to: it
// receives the ETAs of the orders assigned to that driver only. Topic
// identifiers are aggregate ids: 1 to 64 characters from [A-Za-z0-9_-].
const TopicAllDriverETAs = "pizza/orders/+/driver-eta"

// TopicLocation is where driver id publishes its position.
func TopicLocation(driverID string) string { return "pizza/drivers/" + driverID + "/location" }

// TopicStatus is where driver id publishes its status.
func TopicStatus(driverID string) string { return "pizza/drivers/" + driverID + "/status" }

// TopicOven is where a kitchen's oven controller publishes readings.
func TopicOven(kitchenID string) string { return "pizza/kitchen/" + kitchenID + "/oven" }

// TopicAlerts is where a kitchen's devices raise alerts.
func TopicAlerts(kitchenID string) string { return "pizza/kitchen/" + kitchenID + "/alerts" }

// TopicOrderEvents is where the driver holding an order reports what
// happens to it on the way.
func TopicOrderEvents(orderID string) string { return "pizza/orders/" + orderID + "/events" }

// TopicAssigned is where a driver's phone learns its current order
// (retained, QoS 1; an empty retained message clears it).
func TopicAssigned(driverID string) string { return "pizza/drivers/" + driverID + "/assigned" }

// TopicDriverETA is where an order's estimated delivery time is published
// once its driver picked it up (QoS 1).
func TopicDriverETA(orderID string) string { return "pizza/orders/" + orderID + "/driver-eta" }

// Inbound payloads. Unknown fields are ignored (device firmware evolves);
// wrong types and out-of-range values are rejected.

// LocationPayload is published on TopicLocation. Latitude and longitude
// are required; the short names lat and lon are accepted instead.
type LocationPayload struct {
	Latitude  *float64   `json:"latitude,omitempty"`
	Longitude *float64   `json:"longitude,omitempty"`
	Lat       *float64   `json:"lat,omitempty"`
	Lon       *float64   `json:"lon,omitempty"`
	Timestamp *time.Time `json:"timestamp,omitempty"` // RFC 3339; default: when received
	Speed     *float64   `json:"speed,omitempty"`     // km/h, 0..300
	Heading   *float64   `json:"heading,omitempty"`   // degrees, [0, 360)
	Accuracy  *float64   `json:"accuracy,omitempty"`  // metres, 0..100000
}

// StatusPayload is published on TopicStatus: one of Available, OnBreak,
// Offline, EndOfShift (Busy comes only from an assignment and is refused
// by the drivers service).
type StatusPayload struct {
	Status string `json:"status"`
}

// Statuses a driver's phone may publish (DESIGN.md).
var Statuses = []string{"Available", "Busy", "OnBreak", "Offline", "EndOfShift"}

// OvenPayload is published on TopicOven.
type OvenPayload struct {
	OvenID      string     `json:"ovenId,omitempty"` // default "main"
	Temperature *float64   `json:"temperature"`      // °C, -40..700, required
	Timer       *float64   `json:"timer,omitempty"`  // seconds left on the timer, 0..86400
	Status      string     `json:"status,omitempty"` // one of OvenStatuses
	Timestamp   *time.Time `json:"timestamp,omitempty"`
}

// OvenStatuses are the states an oven reports.
var OvenStatuses = []string{"off", "preheating", "ready", "baking", "cooling", "fault"}

// AlertPayload is published on TopicAlerts.
type AlertPayload struct {
	Alert     string          `json:"alert"`    // what happened, 1..100 characters
	Severity  string          `json:"severity"` // one of Severities
	Details   json.RawMessage `json:"details,omitempty"`
	Timestamp *time.Time      `json:"timestamp,omitempty"`
}

// Severities of a kitchen alert.
var Severities = []string{"info", "warning", "critical"}

// OrderEventPayload is published on TopicOrderEvents by the driver holding
// the order. It is validated, logged and counted; it changes no state
// (pickup and delivery are confirmed with the drivers commands).
type OrderEventPayload struct {
	Event     string     `json:"event"` // one of OrderEventKinds
	Timestamp *time.Time `json:"timestamp,omitempty"`
	Details   string     `json:"details,omitempty"` // up to 500 characters
}

// OrderEventKinds are the events a driver's phone may report.
var OrderEventKinds = []string{"arrived_at_restaurant", "picked_up", "arrived_at_customer", "delivered", "delayed", "problem"}

// Outbound payloads.

// LatLon is a WGS84 coordinate.
type LatLon struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

// AssignedMessage is published (retained, QoS 1) on TopicAssigned when a
// driver gets an order. Seq is the DRIVERS sequence of the assignment: a
// redelivered message carries the same Seq.
type AssignedMessage struct {
	OrderID      string    `json:"orderId"`
	DriverID     string    `json:"driverId"`
	RestaurantID string    `json:"restaurantId"`
	Pickup       LatLon    `json:"pickup"`
	Dropoff      LatLon    `json:"dropoff"`
	Manual       bool      `json:"manual"`
	AssignedAt   time.Time `json:"assignedAt"`
	Seq          uint64    `json:"seq"`
}

// DriverETAMessage is published (QoS 1) on TopicDriverETA when the driver
// picked the order up.
type DriverETAMessage struct {
	OrderID             string    `json:"orderId"`
	DriverID            string    `json:"driverId"`
	Status              string    `json:"status"` // "PickedUp"
	PickedUpAt          time.Time `json:"pickedUpAt"`
	EstimatedDeliveryAt time.Time `json:"estimatedDeliveryAt"`
	ETASeconds          int64     `json:"etaSeconds"` // from pickedUpAt
	Seq                 uint64    `json:"seq"`
}

// Commands.

// CredentialsCommand issues a new MQTT secret for a device
// (SubjectCredentials) and revokes the previous one: sessions logged in
// with it are disconnected. The device must exist: a driver registered
// with the drivers service (or in the catalogue), a kitchen of a
// restaurant of the catalogue.
type CredentialsCommand struct {
	DeviceID      string `json:"deviceId"`
	Kind          string `json:"kind"` // KindDriver or KindKitchen
	CorrelationID string `json:"correlationId,omitempty"`
}

// CredentialsReply carries the new secret. It is returned once and never
// stored in clear: only a salted hash is kept.
type CredentialsReply struct {
	DeviceID string    `json:"deviceId"`
	Kind     string    `json:"kind"`
	Username string    `json:"username"` // the MQTT username: the device id
	Secret   string    `json:"secret"`   // the MQTT password
	IssuedAt time.Time `json:"issuedAt"`
	// Revision is the bucket revision of the credential; any session
	// authenticated with an older one is disconnected.
	Revision uint64 `json:"revision"`
	// Publish and Subscribe list the topics the device may use.
	Publish   []string `json:"publish"`
	Subscribe []string `json:"subscribe"`
}

// The bridge's errors are the platform's problem documents.
type (
	Problem    = problem.Problem
	FieldError = problem.FieldError
)

// Telemetry events the bridge appends to TELEMETRY. They belong in
// pkg/events next to driver_location_reported; until they move there,
// RegisterEvents adds them to a registry.

// OvenReadingReported is one oven reading, on OvenReadingSubject.
type OvenReadingReported struct {
	KitchenID    string    `json:"kitchenId"`
	OvenID       string    `json:"ovenId"`
	TemperatureC float64   `json:"temperatureC"`
	TimerSeconds *float64  `json:"timerSeconds,omitempty"`
	Status       string    `json:"status,omitempty"`
	RecordedAt   time.Time `json:"recordedAt"`
}

func (OvenReadingReported) EventType() string { return "oven_reading_reported" }
func (OvenReadingReported) EventVersion() int { return 1 }

// KitchenAlertRaised is an alert raised by a kitchen device, on
// KitchenAlertSubject.
type KitchenAlertRaised struct {
	KitchenID string          `json:"kitchenId"`
	Alert     string          `json:"alert"`
	Severity  string          `json:"severity"`
	Details   json.RawMessage `json:"details,omitempty"`
	RaisedAt  time.Time       `json:"raisedAt"`
}

func (KitchenAlertRaised) EventType() string { return "kitchen_alert_raised" }
func (KitchenAlertRaised) EventVersion() int { return 1 }

// OvenReadingSubject is where a kitchen's oven readings are stored.
func OvenReadingSubject(kitchenID string) string {
	return events.Telemetry.SubjectPrefix + ".ovens." + kitchenID
}

// KitchenAlertSubject is where a kitchen's alerts are stored.
func KitchenAlertSubject(kitchenID string) string {
	return events.Telemetry.SubjectPrefix + ".kitchens." + kitchenID
}

// RegisterEvents adds the bridge's telemetry events to r.
func RegisterEvents(r *events.Registry) {
	events.Register[OvenReadingReported](r)
	events.Register[KitchenAlertRaised](r)
}

// NewRegistry returns the platform's registry plus the bridge's events.
func NewRegistry() *events.Registry {
	r := events.NewRegistry()
	RegisterEvents(r)
	return r
}

// Read model "kitchen-telemetry" (from TELEMETRY telemetry.ovens.> and
// telemetry.kitchens.>), written by the bridge's projector only.
const ReadModel = "kitchen-telemetry"

// MaxRecentAlerts bounds the alerts kept in a KitchenTelemetryView.
const MaxRecentAlerts = 20

// KitchenTelemetryKey is the Redis string key of a kitchen's
// KitchenTelemetryView (JSON).
func KitchenTelemetryKey(keyspace, kitchenID string) string {
	return projection.KeyBase(keyspace, ReadModel) + "kitchen:" + kitchenID
}

// Channel is where the projector announces every change (a Notification).
func Channel(keyspace string) string { return projection.Channel(keyspace, ReadModel) }

// CheckpointKey is the TELEMETRY sequence the read model has applied.
func CheckpointKey(keyspace string) string { return projection.CheckpointKey(keyspace, ReadModel) }

// KitchenTelemetryView is a kitchen's last oven readings and recent alerts,
// as served by GET /api/kitchens/{kitchenId}/telemetry.
type KitchenTelemetryView struct {
	KitchenID    string      `json:"kitchenId"`
	Ovens        []OvenView  `json:"ovens"`        // by oven id
	RecentAlerts []AlertView `json:"recentAlerts"` // newest first, at most MaxRecentAlerts
	Version      uint64      `json:"version"`      // TELEMETRY sequence of the last change
	LastUpdated  time.Time   `json:"lastUpdated"`
}

// OvenView is an oven's last reading.
type OvenView struct {
	OvenID       string    `json:"ovenId"`
	TemperatureC float64   `json:"temperatureC"`
	TimerSeconds *float64  `json:"timerSeconds"`
	Status       string    `json:"status"`
	At           time.Time `json:"at"`
	Seq          uint64    `json:"seq"`
}

// AlertView is one kitchen alert.
type AlertView struct {
	Alert    string          `json:"alert"`
	Severity string          `json:"severity"`
	Details  json.RawMessage `json:"details,omitempty"`
	At       time.Time       `json:"at"`
	Seq      uint64          `json:"seq"`
}

// Notification is published on Channel for every applied event.
type Notification struct {
	Seq     uint64               `json:"seq"`
	Kitchen KitchenTelemetryView `json:"kitchen"`
}
