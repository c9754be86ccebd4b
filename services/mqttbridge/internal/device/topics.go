// Package device is the pure core of the bridge: it knows the MQTT topic
// layout, which device may publish or subscribe where, and how a device's
// JSON payload becomes a validated command or event. It does no I/O.
package device

import (
	"strings"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
)

// Kind of a topic.
type Kind int

// Topic kinds. Inbound ones are published by devices, outbound ones by the
// platform.
const (
	Unknown Kind = iota
	Location
	Status
	Oven
	Alerts
	OrderEvents
	Assigned  // outbound
	DriverETA // outbound
)

var kindNames = map[Kind]string{
	Unknown: "unknown", Location: "location", Status: "status", Oven: "oven", Alerts: "alerts",
	OrderEvents: "order_events", Assigned: "assigned", DriverETA: "driver_eta",
}

// String names the kind in logs and metric labels.
func (k Kind) String() string { return kindNames[k] }

// Topic is a parsed topic name: its kind and the id it names (a driver,
// kitchen or order id).
type Topic struct {
	Kind Kind
	ID   string
}

// ParseTopic parses a concrete topic name (no wildcards). Anything outside
// the layout, or with an id that is not a valid aggregate id, is Unknown.
func ParseTopic(name string) Topic {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "pizza" || events.ValidateID(parts[2]) != nil {
		return Topic{}
	}
	id := parts[2]
	var k Kind
	switch parts[1] + "/" + parts[3] {
	case "drivers/location":
		k = Location
	case "drivers/status":
		k = Status
	case "drivers/assigned":
		k = Assigned
	case "kitchen/oven":
		k = Oven
	case "kitchen/alerts":
		k = Alerts
	case "orders/events":
		k = OrderEvents
	case "orders/driver-eta":
		k = DriverETA
	default:
		return Topic{}
	}
	return Topic{Kind: k, ID: id}
}

// Identity is an authenticated device: a driver or a kitchen.
type Identity struct {
	Kind string // mqttapi.KindDriver or mqttapi.KindKitchen
	ID   string
}

// OrderOwner tells whether the driver holds the order (assigned and not yet
// delivered). The ACL asks it for order topics.
type OrderOwner func(orderID, driverID string) bool

// CanPublish reports whether the device may publish on topic.
//
//   - A driver: its own location and status topics, and the events topic
//     of an order it holds.
//   - A kitchen: its own oven and alerts topics.
func CanPublish(who Identity, topic string, owns OrderOwner) bool {
	t := ParseTopic(topic)
	switch who.Kind {
	case mqttapi.KindDriver:
		switch t.Kind {
		case Location, Status:
			return t.ID == who.ID
		case OrderEvents:
			return owns != nil && owns(t.ID, who.ID)
		}
	case mqttapi.KindKitchen:
		return (t.Kind == Oven || t.Kind == Alerts) && t.ID == who.ID
	}
	return false
}

// CanSubscribe reports whether the device may subscribe to filter, or
// receive a message published on the concrete topic filter (the broker asks
// again for every message it delivers).
//
//   - A driver: its own assigned topic; the ETA topic of an order it holds;
//     and the filter "pizza/orders/+/driver-eta", through which it receives
//     the ETAs of its own orders only.
//   - A kitchen: its own oven and alerts topics (what its devices report).
//
// No other wildcard is allowed: "#", "pizza/#", shared and $SYS filters
// are refused.
func CanSubscribe(who Identity, filter string, owns OrderOwner) bool {
	switch who.Kind {
	case mqttapi.KindDriver:
		if filter == mqttapi.TopicAllDriverETAs {
			return true
		}
		t := ParseTopic(filter)
		switch t.Kind {
		case Assigned:
			return t.ID == who.ID
		case DriverETA:
			return owns != nil && owns(t.ID, who.ID)
		}
	case mqttapi.KindKitchen:
		t := ParseTopic(filter)
		return (t.Kind == Oven || t.Kind == Alerts) && t.ID == who.ID
	}
	return false
}

// Topics lists what a device may use, for its credentials reply.
func Topics(who Identity) (publish, subscribe []string) {
	switch who.Kind {
	case mqttapi.KindDriver:
		return []string{mqttapi.TopicLocation(who.ID), mqttapi.TopicStatus(who.ID), mqttapi.TopicOrderEvents("{orderId}")},
			[]string{mqttapi.TopicAssigned(who.ID), mqttapi.TopicAllDriverETAs}
	case mqttapi.KindKitchen:
		return []string{mqttapi.TopicOven(who.ID), mqttapi.TopicAlerts(who.ID)},
			[]string{mqttapi.TopicOven(who.ID), mqttapi.TopicAlerts(who.ID)}
	}
	return nil, nil
}
