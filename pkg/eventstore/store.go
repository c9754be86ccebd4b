package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/pkg/tracing"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/trace"
)

// Store appends to and reads from the event stream of one bounded context.
// It is safe for concurrent use.
type Store struct {
	js  jetstream.JetStream
	nc  *nats.Conn
	reg *events.Registry
	bc  events.Context
	// batches holds a slot per atomic batch in flight from this store.
	batches chan struct{}
}

// MaxBatchesInFlight bounds the atomic batches one store has open at a
// time. The server keeps at most 50 open batches per stream by default and
// drops the rest (they fail with "batch is incomplete"), so a store that
// let every caller through would turn a burst into failed commands; with
// the bound, a burst waits for a slot instead, up to the caller's deadline.
const MaxBatchesInFlight = 32

// New returns the store of bounded context bc. The stream must have been
// provisioned (see Provision).
func New(js jetstream.JetStream, reg *events.Registry, bc events.Context) *Store {
	return &Store{js: js, nc: js.Conn(), reg: reg, bc: bc, batches: make(chan struct{}, MaxBatchesInFlight)}
}

// Context returns the bounded context of the store.
func (s *Store) Context() events.Context { return s.bc }

// Record is one stored event with its position in the log.
type Record struct {
	Envelope  events.Envelope
	Event     events.Event
	Stream    string
	Subject   string
	Seq       uint64
	CommandID string
	Stored    time.Time
}

// ErrConflict reports that the aggregate changed since the caller loaded it:
// the server rejected the append because the subject's last sequence was not
// the expected one. Callers reload and decide again, or report 409.
var ErrConflict = errors.New("concurrent modification of aggregate")

// ErrUnavailable wraps failures to reach the log (timeouts, no responders).
// The outcome of the append is unknown; retrying with the same command id
// is safe.
var ErrUnavailable = errors.New("event log unavailable")

// Append is one command's outcome: the events it produced for one aggregate.
type Append struct {
	AggregateID string
	// ExpectedSeq is the stream sequence of the last event of the aggregate
	// the decision was based on; 0 means the aggregate must not exist yet.
	ExpectedSeq uint64
	// CommandID identifies the command; it derives the Nats-Msg-Id of each
	// event, so a retried command is stored once. Required.
	CommandID string
	Events    []events.Envelope
}

// AppendResult tells where the events landed.
type AppendResult struct {
	FirstSeq uint64
	LastSeq  uint64
	// Duplicate is true when the log already held this command's events (a
	// retry after a lost acknowledgement); nothing new was stored.
	Duplicate bool
}

// MaxEventsPerAppend bounds a command's events; the server's atomic batch
// limit is larger, this keeps commands small.
const MaxEventsPerAppend = 100

// Append stores the events atomically: either all of them, contiguous on
// the aggregate's subject, or none. The server enforces ExpectedSeq. A
// retry of a command that was already stored (its PubAck lost) succeeds
// with Duplicate set, whether the server reports it as a duplicate Msg-Id
// (clustered streams check dedupe first) or as a wrong last sequence
// (single servers check the sequence first).
func (s *Store) Append(ctx context.Context, a Append) (AppendResult, error) {
	return s.AppendAll(ctx, a)
}

// AppendAll stores the events of one command on several aggregates of the
// context in one atomic batch: all or nothing, each aggregate checked
// against its own expected sequence. All parts must share the command id.
// The result spans the whole batch.
func (s *Store) AppendAll(ctx context.Context, parts ...Append) (AppendResult, error) {
	if len(parts) == 0 {
		return AppendResult{}, errors.New("append: nothing to append")
	}
	commandID := parts[0].CommandID
	if commandID == "" {
		return AppendResult{}, errors.New("append: command id is required")
	}
	var msgs []*nats.Msg
	var expect []expectation
	n := 0
	seen := map[string]bool{}
	for _, a := range parts {
		if err := events.ValidateID(a.AggregateID); err != nil {
			return AppendResult{}, fmt.Errorf("append: aggregate id: %w", err)
		}
		if a.CommandID != commandID {
			return AppendResult{}, errors.New("append: all parts of an append share one command id")
		}
		if seen[a.AggregateID] {
			return AppendResult{}, fmt.Errorf("append: aggregate %s listed twice", a.AggregateID)
		}
		seen[a.AggregateID] = true
		if len(a.Events) == 0 {
			return AppendResult{}, fmt.Errorf("append: no events for %s", a.AggregateID)
		}
		n += len(a.Events)
	}
	if n > MaxEventsPerAppend {
		return AppendResult{}, fmt.Errorf("append: %d events (allowed 1..%d)", n, MaxEventsPerAppend)
	}
	ctx, span := tracing.Start(ctx, "append "+s.bc.Stream, trace.SpanKindProducer, "stream", s.bc.Stream, "aggregate", parts[0].AggregateID, "command", commandID)
	defer span.End()
	// The events carry the append's trace, so their consumers continue it.
	traceParent := tracing.TraceParent(ctx)
	i := 0
	for _, a := range parts {
		subject := s.bc.Subject(a.AggregateID)
		expect = append(expect, expectation{index: len(msgs), seq: a.ExpectedSeq})
		for _, env := range a.Events {
			if env.AggregateID != a.AggregateID {
				return AppendResult{}, fmt.Errorf("append: event %d belongs to %q, not %q", i, env.AggregateID, a.AggregateID)
			}
			if traceParent != "" {
				env.TraceParent = traceParent
			}
			body, err := env.Marshal()
			if err != nil {
				return AppendResult{}, fmt.Errorf("append: %w", err)
			}
			m := nats.NewMsg(subject)
			m.Data = body
			m.Header.Set(events.HeaderType, env.Type)
			m.Header.Set(events.HeaderVersion, strconv.Itoa(env.Version))
			m.Header.Set(events.HeaderCommandID, commandID)
			if env.CorrelationID != "" {
				m.Header.Set(events.HeaderCorrelation, env.CorrelationID)
			}
			m.Header.Set(jetstream.MsgIDHeader, msgID(commandID, i, n))
			msgs = append(msgs, m)
			i++
		}
	}

	var (
		ack *jetstream.PubAck
		err error
	)
	if n == 1 {
		ack, err = s.js.PublishMsg(ctx, msgs[0], jetstream.WithExpectLastSequencePerSubject(parts[0].ExpectedSeq))
	} else {
		ack, err = s.publishAtomic(ctx, msgs, expect)
	}
	if err == nil {
		return AppendResult{FirstSeq: ack.Sequence - uint64(n) + 1, LastSeq: ack.Sequence, Duplicate: ack.Duplicate}, nil
	}
	last := parts[len(parts)-1]
	subject := s.bc.Subject(last.AggregateID)
	if isConflict(err) {
		// A lost PubAck followed by a retry looks like a conflict on a
		// single server. It is ours if the last subject of the batch ends
		// with a message carrying our command id.
		// Ask the stream leader, not any replica: a replica that has not
		// applied our batch yet would make our own retry look like a conflict.
		m, lerr := s.lastOnSubjectFromLeader(ctx, subject)
		if lerr != nil {
			return AppendResult{}, fmt.Errorf("append to %s: %w: checking a rejected retry: %v", subjectsOf(s.bc, parts), ErrUnavailable, lerr)
		}
		if m.Header.Get(events.HeaderCommandID) == commandID {
			return AppendResult{FirstSeq: m.Sequence - uint64(n) + 1, LastSeq: m.Sequence, Duplicate: true}, nil
		}
		return AppendResult{}, fmt.Errorf("append to %s: %w", subjectsOf(s.bc, parts), ErrConflict)
	}
	if isUnavailable(err) {
		return AppendResult{}, fmt.Errorf("append to %s: %w: %v", subjectsOf(s.bc, parts), ErrUnavailable, err)
	}
	return AppendResult{}, fmt.Errorf("append to %s: %w", subjectsOf(s.bc, parts), err)
}

type expectation struct {
	index int
	seq   uint64
}

func subjectsOf(bc events.Context, parts []Append) string {
	out := ""
	for i, p := range parts {
		if i > 0 {
			out += ","
		}
		out += bc.Subject(p.AggregateID)
	}
	return out
}

func msgID(commandID string, i, n int) string {
	if n == 1 {
		return commandID
	}
	return commandID + "#" + strconv.Itoa(i+1)
}

// Error codes of the JetStream API that mean "someone else wrote first".
const (
	errCodeWrongLastSeq         = 10071
	errCodeWrongLastSeqConstant = 10164
	errCodeAtomicDuplicateMsgID = 10201
)

// Error codes of the JetStream API that mean the server stored nothing of
// an atomic batch because it could not take it now: retrying is safe.
const (
	errCodeBatchIncomplete      = 10176 // the server dropped the batch (too many open, or a lost part)
	errCodeBatchTooManyInflight = 10210
)

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case errCodeWrongLastSeq, errCodeWrongLastSeqConstant, errCodeAtomicDuplicateMsgID:
		return true
	}
	return false
}

func isUnavailable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeBatchIncomplete || apiErr.ErrorCode == errCodeBatchTooManyInflight) {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrDisconnected)
}

// batchAck is the server's reply to the commit of an atomic batch.
type batchAck struct {
	jetstream.PubAck
	Error *jetstream.APIError `json:"error,omitempty"`
}

// publishAtomic sends msgs as one JetStream atomic batch: the server stores
// all of them or none. The first message of each subject carries that
// subject's expected last sequence; later ones on the same subject follow
// it within the batch.
func (s *Store) publishAtomic(ctx context.Context, msgs []*nats.Msg, expect []expectation) (*jetstream.PubAck, error) {
	select {
	case s.batches <- struct{}{}:
		defer func() { <-s.batches }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for _, e := range expect {
		msgs[e.index].Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(e.seq, 10))
	}
	batchID := nuid.Next()
	last := len(msgs) - 1
	for i, m := range msgs {
		m.Header.Set("Nats-Batch-Id", batchID)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < last {
			if err := s.nc.PublishMsg(m); err != nil {
				return nil, err
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
		}
		resp, err := s.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return nil, err
		}
		var ack batchAck
		if err := codec.Unmarshal(resp.Data, &ack); err != nil {
			return nil, fmt.Errorf("atomic batch: bad reply %q: %w", resp.Data, err)
		}
		if ack.Error != nil {
			return nil, ack.Error
		}
		return &ack.PubAck, nil
	}
	panic("unreachable")
}

// lastOnSubjectFromLeader reads the subject's last message through the
// stream's API (answered by the leader, which has applied every
// acknowledged write), unlike a direct get, which any replica may answer.
func (s *Store) lastOnSubjectFromLeader(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": subject})
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	resp, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+s.bc.Stream, req)
	if err != nil {
		return nil, err
	}
	var r struct {
		Message *struct {
			Subject  string    `json:"subject"`
			Sequence uint64    `json:"seq"`
			Header   []byte    `json:"hdrs"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := codec.Unmarshal(resp.Data, &r); err != nil {
		return nil, err
	}
	if r.Error != nil {
		return nil, r.Error
	}
	if r.Message == nil {
		return nil, errors.New("empty message reply")
	}
	hdr := nats.Header{}
	if len(r.Message.Header) > 0 {
		if m, err := nats.DecodeHeadersMsg(r.Message.Header); err == nil {
			hdr = m
		}
	}
	return &jetstream.RawStreamMsg{Subject: r.Message.Subject, Sequence: r.Message.Sequence, Header: hdr, Data: r.Message.Data, Time: r.Message.Time}, nil
}

// LastSeq returns the stream sequence of the aggregate's last event, 0 if
// it has none.
func (s *Store) LastSeq(ctx context.Context, aggregateID string) (uint64, error) {
	m, err := s.directLast(ctx, s.bc.Subject(aggregateID))
	if errors.Is(err, errNoMessage) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("last event of %s: %w", aggregateID, err)
	}
	return m.seq, nil
}

// LastSeqFromLeader is LastSeq answered by the stream's leader, which has
// applied every acknowledged write. Use it where "no such aggregate" is a
// decision (a 404, a refusal) rather than a starting point for an append:
// LastSeq may be answered by a replica that has not applied the newest
// writes yet.
func (s *Store) LastSeqFromLeader(ctx context.Context, aggregateID string) (uint64, error) {
	if err := events.ValidateID(aggregateID); err != nil {
		return 0, fmt.Errorf("last event: %w", err)
	}
	m, err := s.lastOnSubjectFromLeader(ctx, s.bc.Subject(aggregateID))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound {
		return 0, nil
	}
	if err != nil {
		if isUnavailable(err) {
			return 0, fmt.Errorf("last event of %s: %w: %v", aggregateID, ErrUnavailable, err)
		}
		return 0, fmt.Errorf("last event of %s: %w", aggregateID, err)
	}
	return m.Sequence, nil
}

// Load reads every event of one aggregate in order. It returns no records
// and sequence 0 for an aggregate that does not exist.
func (s *Store) Load(ctx context.Context, aggregateID string) ([]Record, uint64, error) {
	recs, err := s.LoadAfter(ctx, aggregateID, 0)
	if err != nil || len(recs) == 0 {
		return nil, 0, err
	}
	return recs, recs[len(recs)-1].Seq, nil
}

// LoadAfter reads the aggregate's events stored after stream sequence
// after, in order (all of them for 0): what a caller holding the aggregate
// as of after needs to catch up. Like Load it creates nothing on the
// server, and it obeys ctx.
func (s *Store) LoadAfter(ctx context.Context, aggregateID string, after uint64) ([]Record, error) {
	if err := events.ValidateID(aggregateID); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	subject := s.bc.Subject(aggregateID)
	var recs []Record
	for from := after + 1; ; {
		msgs, pending, err := s.directBatch(ctx, subject, from, loadBatch)
		if errors.Is(err, errNoMessage) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", aggregateID, err)
		}
		for _, m := range msgs {
			rec, err := DecodeMessage(s.reg, m.subject, m.header, m.data, s.bc.Stream, m.seq, m.stored)
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", aggregateID, err)
			}
			recs = append(recs, rec)
		}
		if pending == 0 || len(msgs) == 0 {
			break
		}
		from = msgs[len(msgs)-1].seq + 1
	}
	return recs, nil
}

// Decode turns a consumed message into a Record.
func (s *Store) Decode(m jetstream.Msg) (Record, error) {
	md, err := m.Metadata()
	if err != nil {
		return Record{}, err
	}
	return DecodeMessage(s.reg, m.Subject(), m.Headers(), m.Data(), md.Stream, md.Sequence.Stream, md.Timestamp)
}

// DecodeMessage decodes the parts of a stored message. The record's
// Envelope.Data may share data's memory: data must not change afterwards
// (a received message's data never does).
func DecodeMessage(reg *events.Registry, subject string, hdr nats.Header, data []byte, stream string, seq uint64, stored time.Time) (Record, error) {
	// The envelopes the platform writes take one pass (codec.go);
	// anything else, and every failure, the general path below.
	if env, ev, ok := decodeRecord(reg, data); ok {
		return Record{Envelope: env, Event: ev, Stream: stream, Subject: subject, Seq: seq, CommandID: hdr.Get(events.HeaderCommandID), Stored: stored}, nil
	}
	env, err := events.UnmarshalEnvelope(data)
	if err != nil {
		return Record{}, fmt.Errorf("%s seq %d: %w", stream, seq, err)
	}
	ev, err := reg.Decode(env)
	if err != nil {
		return Record{}, fmt.Errorf("%s seq %d: %w", stream, seq, err)
	}
	return Record{Envelope: env, Event: ev, Stream: stream, Subject: subject, Seq: seq, CommandID: hdr.Get(events.HeaderCommandID), Stored: stored}, nil
}
