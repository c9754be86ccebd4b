package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/tracing"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// ConsumerSpec configures a durable consumer. The durable name is part of
// the platform's contract (docs/events.md): renaming one makes the server
// start a new consumer that replays the stream's history.
type ConsumerSpec struct {
	Stream         string
	Durable        string
	FilterSubjects []string
	// MaxDeliver bounds the attempts per message; the last failed attempt
	// dead-letters the message. Default 5.
	MaxDeliver int
	// BackOff spaces redeliveries after a handler failure. Default 200ms,
	// 1s, 5s, 15s. After a crash the server redelivers after AckWait.
	BackOff []time.Duration
	// MaxAckPending bounds messages in flight to this consumer. Default 256:
	// enough to keep a handler busy, small enough that a stuck handler does
	// not pin thousands of messages.
	MaxAckPending int
	// AckWait is how long the server waits for an ack before redelivering
	// a message whose handler died. Default 30s. Handlers must finish well
	// within it.
	AckWait time.Duration
}

func (c ConsumerSpec) withDefaults() ConsumerSpec {
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if c.BackOff == nil {
		c.BackOff = []time.Duration{200 * time.Millisecond, time.Second, 5 * time.Second, 15 * time.Second}
	}
	if len(c.BackOff) >= c.MaxDeliver {
		c.BackOff = c.BackOff[:c.MaxDeliver-1]
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 256
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	return c
}

func (c ConsumerSpec) backoff(delivered uint64) time.Duration {
	if len(c.BackOff) == 0 {
		return c.AckWait
	}
	i := int(delivered) - 1
	if i >= len(c.BackOff) {
		i = len(c.BackOff) - 1
	}
	if i < 0 {
		i = 0
	}
	return c.BackOff[i]
}

// Handler handles one event. It must be idempotent: a message is delivered
// at least once. Returning an error asks for a redelivery after the backoff.
type Handler func(ctx context.Context, rec Record) error

// DeadLetter describes a message parked in the dead-letter stream.
type DeadLetter struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	Subject    string `json:"subject"`
	Seq        uint64 `json:"seq"`
	Deliveries uint64 `json:"deliveries"`
	Error      string `json:"error"`
}

// Dead-letter headers added to the parked copy of a message.
const (
	HeaderDLQStream     = "Pizza-Dlq-Stream"
	HeaderDLQConsumer   = "Pizza-Dlq-Consumer"
	HeaderDLQSubject    = "Pizza-Dlq-Subject"
	HeaderDLQSeq        = "Pizza-Dlq-Seq"
	HeaderDLQDeliveries = "Pizza-Dlq-Deliveries"
	HeaderDLQError      = "Pizza-Dlq-Error"
)

// DeadLetterSubject is where poison messages of one consumer are parked.
func DeadLetterSubject(stream, durable string) string {
	return events.DeadLetter.SubjectPrefix + "." + stream + "." + durable
}

// ConsumerOptions wires a consumer into its service.
type ConsumerOptions struct {
	Logger *slog.Logger
	// OnDeadLetter is called after a message was parked: raise the alert
	// (metric, alert event). Optional.
	OnDeadLetter func(DeadLetter)
	// LagInterval is how often the consumer's backlog is read from the
	// server for the lag metrics (see metrics.go). Default 10s; negative
	// turns the polling off.
	LagInterval time.Duration
}

// Consumer is a running durable consumer.
type Consumer struct {
	spec ConsumerSpec
	js   jetstream.JetStream
	reg  *events.Registry
	h    Handler
	opts ConsumerOptions
	log  *slog.Logger

	cc     jetstream.ConsumeContext
	advSub *nats.Subscription
	wg     sync.WaitGroup
	meters *consumerMeters
}

// Consume creates (or updates) the durable consumer and starts handling
// messages one at a time, in stream order per delivery. Stop it with Stop.
func Consume(ctx context.Context, js jetstream.JetStream, reg *events.Registry, spec ConsumerSpec, h Handler, opts ConsumerOptions) (*Consumer, error) {
	spec = spec.withDefaults()
	if spec.Stream == "" || spec.Durable == "" {
		return nil, errors.New("consume: stream and durable name are required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Consumer{spec: spec, js: js, reg: reg, h: h, opts: opts, log: log.With("stream", spec.Stream, "consumer", spec.Durable), meters: newConsumerMeters(spec.Stream, spec.Durable)}
	cfg := jetstream.ConsumerConfig{
		Durable:        spec.Durable,
		FilterSubjects: spec.FilterSubjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxDeliver:     spec.MaxDeliver,
		// BackOff is applied by the handler (NakWithDelay), not by the
		// server: a server BackOff list would replace AckWait with its
		// first, short value and redeliver messages whose handler is merely slow.
		AckWait:       spec.AckWait,
		MaxAckPending: spec.MaxAckPending,
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, spec.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consume %s/%s: %w", spec.Stream, spec.Durable, err)
	}
	// If the process dies during a message's last delivery, the server gives
	// up on it and says so in an advisory: park it from there.
	adv := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", spec.Stream, spec.Durable)
	c.advSub, err = js.Conn().Subscribe(adv, c.onMaxDeliveries)
	if err != nil {
		return nil, fmt.Errorf("consume %s/%s: advisory: %w", spec.Stream, spec.Durable, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cc, err = cons.Consume(func(m jetstream.Msg) {
		c.wg.Add(1)
		defer c.wg.Done()
		c.handle(runCtx, m)
	}, jetstream.PullMaxMessages(min(spec.MaxAckPending, 256)), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			c.log.Warn("consumer error", "err", err)
		}
	}))
	if err != nil {
		cancel()
		_ = c.advSub.Unsubscribe()
		return nil, fmt.Errorf("consume %s/%s: %w", spec.Stream, spec.Durable, err)
	}
	go func() { <-c.cc.Closed(); cancel() }()
	c.meters.watchLag(cons, opts.LagInterval, c.log)
	return c, nil
}

// Stop stops fetching, waits for the handler in progress, and returns.
func (c *Consumer) Stop() {
	c.cc.Drain()
	<-c.cc.Closed()
	_ = c.advSub.Unsubscribe()
	c.wg.Wait()
	c.meters.stop()
}

func (c *Consumer) handle(ctx context.Context, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		c.log.ErrorContext(ctx, "message without metadata", "err", err)
		_ = m.Term()
		return
	}
	rec, err := DecodeMessage(c.reg, m.Subject(), m.Headers(), m.Data(), md.Stream, md.Sequence.Stream, md.Timestamp)
	if err == nil {
		// Continue the trace of the append that stored the event; the
		// handler's log lines and span name the order it concerns.
		ctx = tracing.WithOrderID(tracing.FromTraceParent(ctx, rec.Envelope.TraceParent), orderOf(rec))
	}
	ctx, span := tracing.Start(ctx, "consume "+c.spec.Durable, trace.SpanKindConsumer,
		"stream", md.Stream, "event", rec.Envelope.Type, "aggregate", rec.Envelope.AggregateID)
	defer span.End()
	if err == nil {
		err = c.safeHandle(ctx, rec)
	}
	if err == nil {
		c.meters.handled.Add(1)
		if aerr := m.Ack(); aerr != nil {
			c.log.WarnContext(ctx, "ack failed; the message will be redelivered", "seq", md.Sequence.Stream, "err", aerr)
		}
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, "handler failed")
	if md.NumDelivered < uint64(c.spec.MaxDeliver) {
		delay := c.spec.backoff(md.NumDelivered)
		c.meters.retried.Add(1)
		c.log.WarnContext(ctx, "handler failed; will retry", "seq", md.Sequence.Stream, "subject", m.Subject(), "delivery", md.NumDelivered, "retry_in", delay, "err", err)
		_ = m.NakWithDelay(delay)
		return
	}
	dl := DeadLetter{Stream: md.Stream, Consumer: c.spec.Durable, Subject: m.Subject(), Seq: md.Sequence.Stream, Deliveries: md.NumDelivered, Error: err.Error()}
	if perr := c.park(ctx, dl, m.Headers(), m.Data()); perr != nil {
		// Keep it in flight: without an ack the server redelivers it after
		// AckWait; the advisory path parks it if this was the last delivery.
		c.log.ErrorContext(ctx, "dead-letter publish failed", "seq", dl.Seq, "err", perr)
		return
	}
	_ = m.Term()
}

// orderOf is the order an event concerns: the aggregate of an ORDERS
// event, otherwise the orderId its payload names ("" if none).
func orderOf(rec Record) string {
	if rec.Stream == events.Orders.Stream {
		return rec.Envelope.AggregateID
	}
	return tracing.OrderIDFromJSON(rec.Envelope.Data)
}

func (c *Consumer) safeHandle(ctx context.Context, rec Record) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return c.h(ctx, rec)
}

// park stores the message in the dead-letter stream and raises the alert.
func (c *Consumer) park(ctx context.Context, dl DeadLetter, hdr nats.Header, data []byte) error {
	stored, err := Park(ctx, c.js, dl, hdr, data)
	if err != nil {
		return err
	}
	if stored {
		c.meters.deadLettered.Add(1)
		c.log.ErrorContext(ctx, "ALERT: message dead-lettered", "alert", "dead_letter", "subject", dl.Subject, "seq", dl.Seq, "deliveries", dl.Deliveries, "err", dl.Error)
		if c.opts.OnDeadLetter != nil {
			c.opts.OnDeadLetter(dl)
		}
	}
	return nil
}

// Park stores a copy of a message in the dead-letter stream with headers
// that say where it came from and why it was parked. It is idempotent per
// (stream, consumer, sequence): stored is false when the copy was already
// there.
func Park(ctx context.Context, js jetstream.JetStream, dl DeadLetter, hdr nats.Header, data []byte) (stored bool, err error) {
	m := nats.NewMsg(DeadLetterSubject(dl.Stream, dl.Consumer))
	for k, v := range hdr {
		if k == jetstream.MsgIDHeader {
			continue
		}
		m.Header[k] = v
	}
	m.Header.Set(HeaderDLQStream, dl.Stream)
	m.Header.Set(HeaderDLQConsumer, dl.Consumer)
	m.Header.Set(HeaderDLQSubject, dl.Subject)
	m.Header.Set(HeaderDLQSeq, strconv.FormatUint(dl.Seq, 10))
	m.Header.Set(HeaderDLQDeliveries, strconv.FormatUint(dl.Deliveries, 10))
	m.Header.Set(HeaderDLQError, truncate(dl.Error, 1024))
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq:%s:%s:%d", dl.Stream, dl.Consumer, dl.Seq))
	m.Data = data
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(pctx, m)
	if err != nil {
		return false, fmt.Errorf("dead-letter %s seq %d: %w", dl.Stream, dl.Seq, err)
	}
	return !ack.Duplicate, nil
}

func (c *Consumer) onMaxDeliveries(msg *nats.Msg) {
	var adv struct {
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries uint64 `json:"deliveries"`
	}
	if err := json.Unmarshal(msg.Data, &adv); err != nil || adv.StreamSeq == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.js.Stream(ctx, c.spec.Stream)
	if err != nil {
		c.log.Error("max-deliveries advisory: stream lookup failed", "seq", adv.StreamSeq, "err", err)
		return
	}
	raw, err := st.GetMsg(ctx, adv.StreamSeq)
	if err != nil {
		c.log.Error("max-deliveries advisory: message lookup failed", "seq", adv.StreamSeq, "err", err)
		return
	}
	if env, err := events.UnmarshalEnvelope(raw.Data); err == nil {
		ctx = tracing.WithOrderID(tracing.FromTraceParent(ctx, env.TraceParent), orderOf(Record{Envelope: env, Stream: c.spec.Stream}))
	}
	dl := DeadLetter{Stream: c.spec.Stream, Consumer: c.spec.Durable, Subject: raw.Subject, Seq: adv.StreamSeq, Deliveries: adv.Deliveries, Error: "maximum deliveries reached without acknowledgement"}
	if err := c.park(ctx, dl, raw.Header, raw.Data); err != nil {
		c.log.ErrorContext(ctx, "max-deliveries advisory: dead-letter publish failed", "seq", adv.StreamSeq, "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
