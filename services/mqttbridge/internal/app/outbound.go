package app

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
)

// OnDriverEvent is the handler of the bridge's follower of DRIVERS (each
// instance reads DRIVERS for itself). It tells drivers' phones about their
// orders:
//
//   - driver_assigned: the assignment, retained with QoS 1 on the driver's
//     assigned topic, so a phone that connects later still gets it;
//   - delivery_picked_up: the ETA on the order's driver-eta topic (QoS 1);
//   - driver_unassigned, delivery_completed: an empty retained message on
//     the assigned topic, which clears the retained assignment.
//
// An event read again (a follower resuming, an instance starting) is sent
// again with the same Seq (MQTT QoS 1 is at least once; phones deduplicate
// by Seq). Events older than Options.OutboundMaxAge are skipped: phones
// need the present.
func (b *Bridge) OnDriverEvent(_ context.Context, rec eventstore.Record) error {
	driverID := rec.Envelope.AggregateID
	if strings.HasPrefix(driverID, events.DispatchAggregateID("")) {
		return nil // a dispatch queue, not a driver
	}
	if age := b.clock().Sub(rec.Stored); b.opts.OutboundMaxAge > 0 && age > b.opts.OutboundMaxAge {
		b.log.Debug("driver event too old to send to the phone; skipped", "driver_id", driverID, "type", rec.Envelope.Type, "seq", rec.Seq, "age", age)
		return nil
	}
	switch ev := rec.Event.(type) {
	case events.DriverAssigned:
		b.setOrder(ev.OrderID, driverID)
		msg := mqttapi.AssignedMessage{OrderID: ev.OrderID, DriverID: driverID, RestaurantID: ev.RestaurantID,
			Pickup: latLon(ev.Pickup), Dropoff: latLon(ev.Dropoff), Manual: ev.Manual, AssignedAt: rec.Envelope.OccurredAt, Seq: rec.Seq}
		if err := b.publish(mqttapi.TopicAssigned(driverID), msg, true); err != nil {
			return err
		}
		b.metrics.Outbound.WithLabelValues("assigned").Inc()
		b.log.Info("assignment sent to the driver's phone", "driver_id", driverID, "order_id", ev.OrderID, "seq", rec.Seq)
	case events.DeliveryPickedUp:
		b.setOrder(ev.OrderID, driverID)
		at := rec.Envelope.OccurredAt
		msg := mqttapi.DriverETAMessage{OrderID: ev.OrderID, DriverID: driverID, Status: "PickedUp", PickedUpAt: at,
			EstimatedDeliveryAt: ev.EstimatedDeliveryAt, ETASeconds: max(0, int64(ev.EstimatedDeliveryAt.Sub(at).Seconds())), Seq: rec.Seq}
		if err := b.publish(mqttapi.TopicDriverETA(ev.OrderID), msg, false); err != nil {
			return err
		}
		b.metrics.Outbound.WithLabelValues("driver_eta").Inc()
		b.log.Info("driver ETA published", "driver_id", driverID, "order_id", ev.OrderID, "eta", ev.EstimatedDeliveryAt, "seq", rec.Seq)
	case events.DriverUnassigned:
		b.setOrder(ev.OrderID, "")
		return b.clearAssignment(driverID, ev.OrderID)
	case events.DeliveryCompleted:
		b.setOrder(ev.OrderID, "")
		return b.clearAssignment(driverID, ev.OrderID)
	}
	return nil
}

func (b *Bridge) clearAssignment(driverID, orderID string) error {
	if err := b.server.Publish(mqttapi.TopicAssigned(driverID), nil, true, 1); err != nil {
		return err
	}
	b.log.Debug("retained assignment cleared", "driver_id", driverID, "order_id", orderID)
	return nil
}

func (b *Bridge) publish(topic string, v any, retain bool) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.server.Publish(topic, payload, retain, 1)
}

func latLon(p events.GeoPoint) mqttapi.LatLon {
	return mqttapi.LatLon{Latitude: p.Latitude, Longitude: p.Longitude}
}
