package app

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the bridge's Prometheus series.
type Metrics struct {
	// Messages counts device publishes by topic kind and outcome:
	// accepted, invalid, rejected (refused downstream), unavailable (log
	// unreachable: no PUBACK), rate_limited, too_large.
	Messages *prometheus.CounterVec
	// ConnectsRefused counts refused CONNECTs by reason: anonymous,
	// bad_credentials, takeover, will_not_allowed, auth_unavailable.
	ConnectsRefused *prometheus.CounterVec
	// PacketsRefused counts connections closed by the packet guard, by
	// reason (see guard.Reason*).
	PacketsRefused *prometheus.CounterVec
	// ACLDenied counts denied publishes and subscriptions.
	ACLDenied *prometheus.CounterVec
	// KitchenAlerts counts alerts raised by kitchen devices, by severity.
	KitchenAlerts *prometheus.CounterVec
	// OrderEvents counts events reported by drivers' phones, by event.
	OrderEvents *prometheus.CounterVec
	// Outbound counts messages sent to devices, by topic kind.
	Outbound *prometheus.CounterVec
	// DriversOffline counts drivers set Offline after an ungraceful
	// disconnect, by result (ok, failed).
	DriversOffline *prometheus.CounterVec
	// DeadLetters counts events parked by the bridge's consumer or projector.
	DeadLetters *prometheus.CounterVec
}

// NewMetrics registers the series on reg (nil: unregistered). Series
// already registered by another instance in the same process are reused.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{
		Messages:        counterVec(reg, "pizza_mqtt_messages_total", "Device publishes by topic kind and outcome.", "topic", "outcome"),
		ConnectsRefused: counterVec(reg, "pizza_mqtt_connects_refused_total", "Refused MQTT connections by reason.", "reason"),
		PacketsRefused:  counterVec(reg, "pizza_mqtt_packets_refused_total", "Connections closed by the packet guard (malformed, oversized packets, recovered panics), by reason.", "reason"),
		ACLDenied:       counterVec(reg, "pizza_mqtt_acl_denied_total", "Publishes and subscriptions refused by the ACL.", "op"),
		KitchenAlerts:   counterVec(reg, "pizza_mqtt_kitchen_alerts_total", "Alerts raised by kitchen devices, by severity.", "severity"),
		OrderEvents:     counterVec(reg, "pizza_mqtt_order_events_total", "Order events reported by drivers' phones, by event.", "event"),
		Outbound:        counterVec(reg, "pizza_mqtt_outbound_total", "Messages the platform sent to devices, by topic kind.", "topic"),
		DriversOffline:  counterVec(reg, "pizza_mqtt_drivers_offline_total", "Drivers set Offline after an ungraceful disconnect, by result.", "result"),
		DeadLetters:     counterVec(reg, "pizza_mqtt_dead_letters_total", "Events the bridge could not handle and parked, by consumer or projector.", "source"),
	}
}

func counterVec(reg prometheus.Registerer, name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return c
}
