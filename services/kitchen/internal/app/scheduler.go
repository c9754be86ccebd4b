package app

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/kitchen/internal/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// retryDelay spaces appends after the log could not be reached.
const retryDelay = time.Second

// appendTimeout bounds one append of the scheduler.
const appendTimeout = 5 * time.Second

// Scheduler moves tickets through the kitchen. It keeps one domain.Board
// per restaurant in memory, folded from the KITCHEN stream from sequence 1
// at start (an ordered consumer) and then kept current by following the
// stream. Once caught up it asks the boards what happens next (a stage
// whose deadline passed, a queued ticket for a free chef), appends each
// step on the ticket's expected sequence with a command id derived from the
// ticket, the step and the attempt, and sleeps on one timer until the
// earliest deadline. Deadlines are the DueAt of stored events, so a restart
// loses no timer and repeats no step.
//
// It assumes it is the only scheduler of the platform (one kitchen
// instance): a second one could not duplicate a step (the expected
// sequence refuses it), but chefs' capacity would only hold per instance.
type Scheduler struct {
	js     jetstream.JetStream
	store  *eventstore.Store
	cat    *catalog.Catalog
	clock  func() time.Time
	policy domain.Policy
	log    *slog.Logger
	onStep func(step string)

	// Owned by the Run goroutine.
	boards  map[string]*domain.Board
	corr    map[string]string // order id -> correlation id of its ticket_queued
	lastSeq uint64
	retryAt time.Time

	caughtUp   atomic.Bool
	caughtCh   chan struct{}
	caughtOnce sync.Once
}

// NewScheduler returns a scheduler; onStep (optional) is told of every
// step it records.
func NewScheduler(js jetstream.JetStream, store *eventstore.Store, cat *catalog.Catalog, clock func() time.Time, policy domain.Policy, log *slog.Logger, onStep func(string)) *Scheduler {
	if onStep == nil {
		onStep = func(string) {}
	}
	return &Scheduler{js: js, store: store, cat: cat, clock: clock, policy: policy, log: log.With("component", "scheduler"), onStep: onStep,
		boards: map[string]*domain.Board{}, corr: map[string]string{}, caughtCh: make(chan struct{})}
}

// CaughtUp reports whether the scheduler has folded every kitchen event
// that existed when it started, and is therefore deciding.
func (s *Scheduler) CaughtUp() bool { return s.caughtUp.Load() }

// WaitCaughtUp blocks until CaughtUp or ctx ends.
func (s *Scheduler) WaitCaughtUp(ctx context.Context) error {
	select {
	case <-s.caughtCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Scheduler) markCaughtUp() {
	s.caughtOnce.Do(func() {
		s.caughtUp.Store(true)
		close(s.caughtCh)
		active := 0
		for _, b := range s.boards {
			active += b.Active()
		}
		s.log.Info("scheduler caught up with the kitchen log", "seq", s.lastSeq, "restaurants", len(s.boards), "active_tickets", active)
	})
}

// Run schedules until ctx ends. When following the stream fails it
// resumes after the last folded sequence, with backoff.
func (s *Scheduler) Run(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for {
		err := s.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("following the kitchen log was interrupted; resuming", "seq", s.lastSeq, "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Scheduler) runOnce(ctx context.Context) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.Kitchen.Wildcard()}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if s.lastSeq > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = s.lastSeq + 1
	}
	cons, err := s.js.OrderedConsumer(ctx, events.Kitchen.Stream, cfg)
	if err != nil {
		return err
	}
	if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
		s.markCaughtUp()
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return err
	}
	defer it.Stop()
	ch := make(chan delivery, 256)
	go func() {
		defer close(ch)
		for {
			m, err := it.Next()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			select {
			case ch <- delivery{m, err}:
			case <-ctx.Done():
				return
			}
			if err != nil && !transient(err) {
				return
			}
		}
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	s.decide(ctx)
	s.arm(timer)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d, ok := <-ch:
			if !ok {
				return errors.New("message iterator closed")
			}
			if err := s.receive(d); err != nil {
				return err
			}
		drain:
			for range 255 {
				select {
				case d, ok := <-ch:
					if !ok {
						break drain
					}
					if err := s.receive(d); err != nil {
						return err
					}
				default:
					break drain
				}
			}
		case <-timer.C:
		}
		s.decide(ctx)
		s.arm(timer)
	}
}

type delivery struct {
	msg jetstream.Msg
	err error
}

func transient(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoHeartbeat)
}

// receive folds one delivered event into its restaurant's board.
func (s *Scheduler) receive(d delivery) error {
	if d.err != nil {
		if transient(d.err) {
			return nil
		}
		return d.err
	}
	md, err := d.msg.Metadata()
	if err != nil {
		return err
	}
	seq := md.Sequence.Stream
	if seq <= s.lastSeq {
		return nil
	}
	s.lastSeq = seq
	if md.NumPending == 0 {
		defer s.markCaughtUp()
	}
	rec, err := s.store.Decode(d.msg)
	if err != nil {
		// The projector dead-letters such events; the scheduler cannot
		// act on them either and says so.
		s.log.Error("kitchen event cannot be decoded; skipped by the scheduler", "seq", seq, "subject", d.msg.Subject(), "err", err)
		return nil
	}
	b := s.board(restaurantOf(rec.Event))
	if b == nil {
		return nil
	}
	id := rec.Envelope.AggregateID
	if _, ok := rec.Event.(events.TicketQueued); ok && rec.Envelope.CorrelationID != "" {
		s.corr[id] = rec.Envelope.CorrelationID
	}
	b.Apply(id, rec.Event, seq, rec.Envelope.OccurredAt)
	s.forgetFinished(b, id)
	return nil
}

// forgetFinished drops what the scheduler keeps about a ticket that left
// the board (ready or withdrawn).
func (s *Scheduler) forgetFinished(b *domain.Board, orderID string) {
	if _, ok := b.Ticket(orderID); !ok {
		delete(s.corr, orderID)
	}
}

// board returns the board of a restaurant, creating it with the
// catalogue's chefs on first use. A restaurant the catalogue does not know
// gets a board without chefs: its tickets wait.
func (s *Scheduler) board(restaurantID string) *domain.Board {
	if restaurantID == "" {
		return nil
	}
	if b, ok := s.boards[restaurantID]; ok {
		return b
	}
	var chefs []domain.ChefSpec
	if r, ok := s.cat.Restaurant(restaurantID); ok {
		for _, c := range r.Chefs {
			chefs = append(chefs, domain.ChefSpec{ID: c.ID, Capacity: c.Capacity})
		}
	} else {
		s.log.Warn("kitchen events for a restaurant the catalogue does not know; its tickets wait for chefs", "restaurant_id", restaurantID)
	}
	b := domain.NewBoard(restaurantID, chefs)
	s.boards[restaurantID] = b
	return b
}

// decide records every step that is due, board by board.
func (s *Scheduler) decide(ctx context.Context) {
	if !s.CaughtUp() || ctx.Err() != nil {
		return
	}
	now := s.clock()
	if now.Before(s.retryAt) {
		return
	}
	s.retryAt = time.Time{}
	ids := make([]string, 0, len(s.boards))
	for id := range s.boards {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		b := s.boards[id]
		for {
			d, ok := b.Next(now, s.policy)
			if !ok || !s.record(ctx, b, d, now) {
				break
			}
		}
	}
}

// record appends one decision and applies it to the board. It returns
// false when the board should not be asked again now (the log is
// unreachable).
func (s *Scheduler) record(ctx context.Context, b *domain.Board, d domain.Decision, now time.Time) bool {
	log := s.log.With("order_id", d.OrderID, "restaurant_id", b.RestaurantID(), "step", d.Step, "command_id", d.CommandID)
	meta := events.Meta{CorrelationID: orEmpty(s.corr[d.OrderID], d.OrderID), CausationID: d.CommandID}
	envs, err := envelopes(d.OrderID, d.Events, now, meta)
	if err != nil {
		log.Error("cannot encode kitchen step", "err", err)
		b.Hold(d.OrderID)
		return true
	}
	actx, cancel := context.WithTimeout(ctx, appendTimeout)
	defer cancel()
	res, err := s.store.Append(actx, eventstore.Append{AggregateID: d.OrderID, ExpectedSeq: d.ExpectedSeq, CommandID: d.CommandID, Events: envs})
	switch {
	case errors.Is(err, eventstore.ErrConflict):
		// Someone else wrote first (a withdrawal): wait for that event.
		log.Info("ticket changed under the scheduler; deciding again on its next event")
		b.Hold(d.OrderID)
		return true
	case err != nil:
		if ctx.Err() == nil {
			log.Warn("kitchen step not recorded; retrying", "retry_in", retryDelay, "err", err)
		}
		s.retryAt = now.Add(retryDelay)
		return false
	case res.Duplicate:
		// Recorded before (by a previous run); it is on its way from the stream.
		b.Hold(d.OrderID)
		return true
	}
	for i, e := range d.Events {
		b.Apply(d.OrderID, e, res.FirstSeq+uint64(i), envs[i].OccurredAt)
	}
	s.forgetFinished(b, d.OrderID)
	attrs := []any{"seq", res.LastSeq}
	switch e := d.Events[0].(type) {
	case events.TicketPreparationStarted:
		attrs = append(attrs, "chef_id", e.ChefID, "attempt", e.Attempt, "due_at", e.DueAt)
	case events.TicketBakingStarted:
		attrs = append(attrs, "due_at", e.DueAt)
	case events.TicketQualityCheckStarted:
		attrs = append(attrs, "due_at", e.DueAt)
	case events.TicketQualityCheckFailed:
		attrs = append(attrs, "attempt", e.Attempt)
	}
	log.Info("ticket advanced", attrs...)
	s.onStep(d.Step)
	return true
}

// arm sets the timer to the earliest deadline of all boards (or the retry
// time after a failed append), or stops it when nothing is timed.
func (s *Scheduler) arm(timer *time.Timer) {
	timer.Stop()
	if !s.CaughtUp() {
		return
	}
	var next time.Time
	for _, b := range s.boards {
		if due, ok := b.NextDue(); ok && (next.IsZero() || due.Before(next)) {
			next = due
		}
	}
	if !s.retryAt.IsZero() && (next.IsZero() || next.Before(s.retryAt)) {
		next = s.retryAt
	}
	if next.IsZero() {
		return
	}
	timer.Reset(max(next.Sub(s.clock()), 0))
}
