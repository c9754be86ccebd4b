package service

import (
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of the event log's readers, exported by every service
// (NewMetrics registers them). docs/operations.md lists them.
const (
	MetricEventsConsumed       = "pizza_events_consumed_total"
	MetricConsumerPending      = "pizza_consumer_pending_messages"
	MetricConsumerAckPending   = "pizza_consumer_ack_pending_messages"
	MetricConsumerRedelivered  = "pizza_consumer_redelivered_messages"
	MetricProjectionApplied    = "pizza_projection_events_applied_total"
	MetricProjectionParked     = "pizza_projection_dead_letters_total"
	MetricProjectionLagEvents  = "pizza_projection_lag_events"
	MetricProjectionLagSeconds = "pizza_projection_lag_seconds"
	MetricProjectionCheckpoint = "pizza_projection_checkpoint"
	MetricStreamEvents         = "pizza_stream_events_total"
)

// eventLogCollector exports what the process's durable consumers
// (eventstore) and projectors (projection) measure about themselves: the
// figures are read at scrape time, as the process collector reads the
// process's. The lags are polled in the background by their owners
// (ConsumerOptions.LagInterval, projection.Options.LagInterval), so a
// scrape never waits for NATS or Redis.
type eventLogCollector struct {
	consumed, pending, ackPending, redelivered         *prometheus.Desc
	applied, parked, lagEvents, lagSeconds, checkpoint *prometheus.Desc
	streamSize                                         *prometheus.Desc
}

// NewEventLogCollector returns the collector of the event log's readers.
func NewEventLogCollector() prometheus.Collector {
	consumer := []string{"stream", "consumer"}
	projector := []string{"projector", "stream"}
	return &eventLogCollector{
		consumed: prometheus.NewDesc(MetricEventsConsumed,
			"Deliveries handled by this process's durable consumers, by stream, consumer and outcome (handled, retried, dead_lettered).",
			[]string{"stream", "consumer", "outcome"}, nil),
		pending: prometheus.NewDesc(MetricConsumerPending,
			"Messages of the stream a durable consumer has not been delivered yet (server's num_pending, polled).", consumer, nil),
		ackPending: prometheus.NewDesc(MetricConsumerAckPending,
			"Messages delivered to a durable consumer and not acknowledged yet (server's num_ack_pending, polled).", consumer, nil),
		redelivered: prometheus.NewDesc(MetricConsumerRedelivered,
			"Messages delivered more than once to a durable consumer and not acknowledged yet (server's num_redelivered, polled).", consumer, nil),
		applied: prometheus.NewDesc(MetricProjectionApplied,
			"Events applied to read models by this process's projectors (parked ones included).", projector, nil),
		parked: prometheus.NewDesc(MetricProjectionParked,
			"Events this process's projectors could not apply and parked in the dead-letter stream.", projector, nil),
		lagEvents: prometheus.NewDesc(MetricProjectionLagEvents,
			"Last sequence of the projector's subjects in the stream minus its checkpoint (0: caught up).", projector, nil),
		lagSeconds: prometheus.NewDesc(MetricProjectionLagSeconds,
			"Age of the oldest event the projector has not applied yet (0: caught up).", projector, nil),
		checkpoint: prometheus.NewDesc(MetricProjectionCheckpoint,
			"Last stream sequence applied to the read model (its checkpoint in Redis).", projector, nil),
		streamSize: prometheus.NewDesc(MetricStreamEvents,
			"Events appended to the stream since it was created (its last sequence, read by this process's projectors).", []string{"stream"}, nil),
	}
}

func (c *eventLogCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.consumed, c.pending, c.ackPending, c.redelivered, c.applied, c.parked, c.lagEvents, c.lagSeconds, c.checkpoint, c.streamSize} {
		ch <- d
	}
}

func (c *eventLogCollector) Collect(ch chan<- prometheus.Metric) {
	es := eventstore.ReadTelemetry()
	for _, n := range es.Consumed {
		ch <- prometheus.MustNewConstMetric(c.consumed, prometheus.CounterValue, float64(n.Count), n.Stream, n.Consumer, n.Outcome)
	}
	for _, l := range es.Lags {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(l.Pending), l.Stream, l.Consumer)
		ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(l.AckPending), l.Stream, l.Consumer)
		ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(l.Redelivered), l.Stream, l.Consumer)
	}
	pr := projection.ReadTelemetry()
	for _, a := range pr.Applied {
		ch <- prometheus.MustNewConstMetric(c.applied, prometheus.CounterValue, float64(a.Count), a.Projector, a.Stream)
		ch <- prometheus.MustNewConstMetric(c.parked, prometheus.CounterValue, float64(a.Parked), a.Projector, a.Stream)
	}
	streams := map[string]uint64{}
	for _, l := range pr.Lags {
		ch <- prometheus.MustNewConstMetric(c.lagEvents, prometheus.GaugeValue, float64(l.Behind), l.Projector, l.Stream)
		ch <- prometheus.MustNewConstMetric(c.lagSeconds, prometheus.GaugeValue, l.Seconds, l.Projector, l.Stream)
		ch <- prometheus.MustNewConstMetric(c.checkpoint, prometheus.GaugeValue, float64(l.Checkpoint), l.Projector, l.Stream)
		streams[l.Stream] = max(streams[l.Stream], l.StreamLastSeq)
	}
	for s, n := range streams {
		ch <- prometheus.MustNewConstMetric(c.streamSize, prometheus.CounterValue, float64(n), s)
	}
}
