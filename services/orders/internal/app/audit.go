package app

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// Audit answers auditors' questions from the log itself: an order's whole
// history across contexts, and the order as it stood at any point.
type Audit struct {
	js       jetstream.JetStream
	reg      *events.Registry
	rdb      *redis.Client
	keyspace string
}

// NewAudit wires the audit queries.
func NewAudit(js jetstream.JetStream, reg *events.Registry, rdb *redis.Client, keyspace string) *Audit {
	return &Audit{js: js, reg: reg, rdb: rdb, keyspace: keyspace}
}

// History lists every event of the order's life: its own (ORDERS) and its
// ticket's (KITCHEN) by subject, and the stock and delivery events
// (INVENTORY, DRIVERS) found through the history index, oldest first.
func (a *Audit) History(ctx context.Context, q ordersapi.HistoryQuery) (ordersapi.HistoryReply, error) {
	if events.ValidateID(q.OrderID) != nil {
		return ordersapi.HistoryReply{}, ErrNotFound
	}
	reply := ordersapi.HistoryReply{OrderID: q.OrderID, Events: []ordersapi.HistoryEvent{}}
	for _, bc := range []events.Context{events.Orders, events.Kitchen} {
		recs, _, err := eventstore.New(a.js, a.reg, bc).Load(ctx, q.OrderID)
		if err != nil {
			return reply, fmt.Errorf("%w: %v", eventstore.ErrUnavailable, err)
		}
		if bc == events.Orders && len(recs) == 0 {
			return reply, ErrNotFound
		}
		for _, r := range recs {
			reply.Events = append(reply.Events, historyEvent(r.Stream, r.Subject, r.Seq, r.Stored, r.Envelope))
		}
	}
	for _, idx := range []struct {
		model  string
		stream string
	}{{ordersapi.HistoryInventoryModel, events.Inventory.Stream}, {ordersapi.HistoryDriversModel, events.Drivers.Stream}} {
		seqs, err := a.rdb.ZRange(ctx, ordersapi.HistoryIndexKey(a.keyspace, idx.model, q.OrderID), 0, -1).Result()
		if err != nil {
			return reply, err
		}
		if len(seqs) == 0 {
			continue
		}
		st, err := a.js.Stream(ctx, idx.stream)
		if err != nil {
			return reply, fmt.Errorf("%w: %v", eventstore.ErrUnavailable, err)
		}
		for _, s := range seqs {
			seq, _ := strconv.ParseUint(s, 10, 64)
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				return reply, fmt.Errorf("%s seq %d: %w", idx.stream, seq, err)
			}
			env, err := events.UnmarshalEnvelope(m.Data)
			if err != nil {
				return reply, err
			}
			reply.Events = append(reply.Events, historyEvent(idx.stream, m.Subject, m.Sequence, m.Time, env))
		}
	}
	sort.SliceStable(reply.Events, func(i, j int) bool { return reply.Events[i].StoredAt.Before(reply.Events[j].StoredAt) })
	return reply, nil
}

func historyEvent(stream, subject string, seq uint64, stored time.Time, env events.Envelope) ordersapi.HistoryEvent {
	return ordersapi.HistoryEvent{
		Stream: stream, Seq: seq, Subject: subject, StoredAt: stored.UTC(), OccurredAt: env.OccurredAt,
		EventID: env.ID, Type: env.Type, Version: env.Version, AggregateID: env.AggregateID,
		CorrelationID: env.CorrelationID, CausationID: env.CausationID, Data: env.Data,
	}
}

// AsOf folds the order's own events up to a sequence or a time: the order
// exactly as the read model showed it then.
func (a *Audit) AsOf(ctx context.Context, q ordersapi.AsOfQuery) (ordersapi.CommandReply, error) {
	if events.ValidateID(q.OrderID) != nil {
		return ordersapi.CommandReply{}, ErrNotFound
	}
	if (q.Seq == 0) == (q.At == nil) {
		return ordersapi.CommandReply{}, ordersapi.Validation(ordersapi.FieldError{Field: "asOf", Detail: "give either a sequence or a time"})
	}
	recs, _, err := eventstore.New(a.js, a.reg, events.Orders).Load(ctx, q.OrderID)
	if err != nil {
		return ordersapi.CommandReply{}, fmt.Errorf("%w: %v", eventstore.ErrUnavailable, err)
	}
	var view ordersapi.OrderView
	var seq uint64
	for _, r := range recs {
		if (q.Seq != 0 && r.Seq > q.Seq) || (q.At != nil && r.Stored.After(*q.At)) {
			break
		}
		if err := applyToView(&view, r.Envelope, r.Event, r.Seq); err != nil {
			return ordersapi.CommandReply{}, err
		}
		seq = r.Seq
	}
	if seq == 0 {
		return ordersapi.CommandReply{}, ErrNotFound
	}
	return ordersapi.CommandReply{Order: view, Seq: seq}, nil
}

// HistoryIndex is the projector of one history index model: for each
// event of its stream that names an order (an "orderId" in the payload),
// it records the event's sequence under the order.
type HistoryIndex struct {
	Model, StreamName string
	Keyspace          string
}

// HistoryIndexes are the two index projectors.
func HistoryIndexes(keyspace string) []projection.Projector {
	return []projection.Projector{
		HistoryIndex{Model: ordersapi.HistoryInventoryModel, StreamName: events.Inventory.Stream, Keyspace: keyspace},
		HistoryIndex{Model: ordersapi.HistoryDriversModel, StreamName: events.Drivers.Stream, Keyspace: keyspace},
	}
}

func (h HistoryIndex) Name() string   { return h.Model }
func (h HistoryIndex) Stream() string { return h.StreamName }
func (h HistoryIndex) Filter() []string {
	if h.StreamName == events.Inventory.Stream {
		return []string{events.Inventory.Wildcard()}
	}
	return []string{events.Drivers.Wildcard()}
}

// Apply indexes the event under its order, if it names one.
func (h HistoryIndex) Apply(_ context.Context, tx *projection.Tx, rec eventstore.Record) error {
	var ref struct {
		OrderID string `json:"orderId"`
	}
	if err := codec.Unmarshal(rec.Envelope.Data, &ref); err != nil || ref.OrderID == "" {
		return nil
	}
	if events.ValidateID(ref.OrderID) != nil {
		return errors.New("event names an invalid order id")
	}
	tx.ZAdd(tx.Key("order", ref.OrderID), float64(rec.Seq), strconv.FormatUint(rec.Seq, 10))
	return nil
}
