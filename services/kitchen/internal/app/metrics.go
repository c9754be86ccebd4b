package app

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the kitchen's Prometheus collectors.
type Metrics struct {
	// Steps counts the ticket steps the scheduler recorded, by step.
	Steps *prometheus.CounterVec
	// DeadLetters counts parked events, by source (projector or consumer).
	DeadLetters *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg (if not
// nil). A second service in the same process shares the first one's.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_kitchen_ticket_steps_total", Help: "Ticket steps recorded by the kitchen scheduler, by step.",
		}, []string{"step"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pizza_kitchen_dead_letters_total", Help: "Events the kitchen could not handle and parked in the dead-letter stream, by source.",
		}, []string{"source"}),
	}
	if reg != nil {
		m.Steps = register(reg, m.Steps)
		m.DeadLetters = register(reg, m.DeadLetters)
	}
	return m
}

func register(reg prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
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
