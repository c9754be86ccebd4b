package app

import (
	"errors"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the inventory service's Prometheus collectors.
type Metrics struct {
	Reservations *prometheus.CounterVec // by outcome: reserved, rejected
	Movements    *prometheus.CounterVec // stock events appended, by type
	LowStock     prometheus.Counter
	Conflicts    prometheus.Counter
	Checks       prometheus.Counter
	DeadLetters  *prometheus.CounterVec // by consumer
	Handled      *prometheus.CounterVec // consumed events handled, by consumer
	Partitions   *prometheus.GaugeVec   // partitions owned, by consumer (partitioned consumers)
}

// NewMetrics creates the collectors and registers them with reg (when not
// nil). Collectors already registered by another instance in the same
// process are shared.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Reservations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_inventory_reservations_total", Help: "Order reservations decided, by outcome (reserved, rejected).",
		}, []string{"outcome"}),
		Movements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_inventory_events_total", Help: "Inventory events appended, by event type.",
		}, []string{"type"}),
		LowStock: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pizza_inventory_low_stock_alerts_total", Help: "stock_running_low alerts raised.",
		}),
		Conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pizza_inventory_append_conflicts_total", Help: "Appends refused because another instance changed the stock first (then retried).",
		}),
		Checks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pizza_inventory_stock_checks_total", Help: "Periodic low-stock checks run.",
		}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_inventory_dead_letters_total", Help: "Messages the inventory service's consumers and projector parked in DEADLETTER, by consumer.",
		}, []string{"consumer"}),
		Handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_inventory_consumed_events_total", Help: "Events of other contexts handled by this instance's durable consumers, by consumer.",
		}, []string{"consumer"}),
		Partitions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pizza_inventory_partitions_owned", Help: "Partitions of a partitioned durable consumer this instance owns, by consumer.",
		}, []string{"consumer"}),
	}
	if reg != nil {
		m.Reservations = register(reg, m.Reservations)
		m.Movements = register(reg, m.Movements)
		m.LowStock = register(reg, m.LowStock)
		m.Conflicts = register(reg, m.Conflicts)
		m.Checks = register(reg, m.Checks)
		m.DeadLetters = register(reg, m.DeadLetters)
		m.Handled = register(reg, m.Handled)
		m.Partitions = register(reg, m.Partitions)
	}
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// observe counts appended events.
func (m *Metrics) observe(evs []events.Event) {
	for _, ev := range evs {
		m.Movements.WithLabelValues(ev.EventType()).Inc()
		switch ev.(type) {
		case events.StockReserved:
			m.Reservations.WithLabelValues("reserved").Inc()
		case events.StockReservationRejected:
			m.Reservations.WithLabelValues("rejected").Inc()
		case events.StockRunningLow:
			m.LowStock.Inc()
		}
	}
}
