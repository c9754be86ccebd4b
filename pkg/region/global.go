package region

import (
	"context"
	"fmt"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// GlobalOrdersStream is the GLOBAL account's chain-wide copy of every
// region's ORDERS stream. Its subjects are "<region>.orders.<orderId>": the
// source transforms prefix each region's subjects with the region name, so
// two regions' orders never collide.
const GlobalOrdersStream = "ORDERS_GLOBAL"

// sourceMaxAckPending bounds how far a region's source consumer may run
// ahead of what GLOBAL has stored (acks come from flow control replies).
const sourceMaxAckPending = 10_000

// SourceConsumerConfig is the durable, flow-controlled push consumer on a
// region's ORDERS stream that GLOBAL sources through. Durable sourcing
// (nats-server 2.14+) keeps the consumer's name, and with it the flow
// control subject "$JS.FC.ORDERS.<consumer>.*", fixed and distinct per
// region, so GLOBAL can import each region's flow control without the
// imports overlapping; an ephemeral source consumer gets a random name and
// every region's "$JS.FC.>" would collide in the GLOBAL account.
func SourceConsumerConfig(region string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        SourceConsumer(region),
		Description:    "Feeds the chain-wide " + GlobalOrdersStream + " stream of the " + GlobalAccount + " account",
		DeliverSubject: DeliverSubject(region),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckFlowControlPolicy,
		FlowControl:    true,
		IdleHeartbeat:  time.Second, // the server requires 1s for flow-control acks
		MaxAckPending:  sourceMaxAckPending,
		FilterSubject:  events.Orders.Wildcard(),
	}
}

// ExportOrders creates (or updates) the region's source consumer. It runs
// with a connection to the region's own account, after the region's
// streams exist.
func ExportOrders(ctx context.Context, js jetstream.JetStream, region string) error {
	if _, err := js.CreateOrUpdatePushConsumer(ctx, events.Orders.Stream, SourceConsumerConfig(region)); err != nil {
		return fmt.Errorf("region %s: source consumer for %s: %w", region, GlobalAccount, err)
	}
	return nil
}

// GlobalOptions are the deployment choices of the GLOBAL streams.
type GlobalOptions struct {
	Replicas int                   // at most the global home region's server count
	Storage  jetstream.StorageType // FileStorage unless a test asks otherwise
}

// GlobalStreamConfig sources every region's ORDERS stream into one stream
// placed in the global home region, renaming "orders.<id>" to
// "<region>.orders.<id>".
func GlobalStreamConfig(t Topology, o GlobalOptions) jetstream.StreamConfig {
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	cfg := jetstream.StreamConfig{
		Name:        GlobalOrdersStream,
		Description: "Every region's order events, sourced across accounts (chain-wide view)",
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		MaxAge:      0,
		Storage:     o.Storage,
		Replicas:    o.Replicas,
		AllowDirect: true,
		Placement:   &jetstream.Placement{Tags: []string{ServerTag(t.Global())}},
		// No duplicate window: a stream with sources and no explicit window
		// keeps none, so two regions' events never dedupe each other by
		// Nats-Msg-Id (order ids are only unique per region's log).
	}
	for _, r := range t.Names() {
		cfg.Sources = append(cfg.Sources, &jetstream.StreamSource{
			Name:     events.Orders.Stream,
			External: &jetstream.ExternalStream{APIPrefix: APIPrefix(r)},
			Consumer: &jetstream.StreamConsumerSource{Name: SourceConsumer(r), DeliverSubject: DeliverSubject(r)},
			SubjectTransforms: []jetstream.SubjectTransformConfig{{
				Source:      events.Orders.Wildcard(),
				Destination: r + "." + events.Orders.Wildcard(),
			}},
		})
	}
	return cfg
}

// ProvisionGlobal creates or updates the GLOBAL stream; js is a connection
// to the GLOBAL account. Sourcing starts (or resumes) on its own and keeps
// retrying a region it cannot reach.
func ProvisionGlobal(ctx context.Context, js jetstream.JetStream, t Topology, o GlobalOptions) error {
	if _, err := js.CreateOrUpdateStream(ctx, GlobalStreamConfig(t, o)); err != nil {
		return fmt.Errorf("region: provision %s: %w", GlobalOrdersStream, err)
	}
	return nil
}
