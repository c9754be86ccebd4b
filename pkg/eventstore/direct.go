package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// Reads of one aggregate go through JetStream's direct-get API rather than a
// consumer: a consumer is a server-side object (created, tracked, and left
// to expire), while a direct get is a plain request that any replica of a
// stream with AllowDirect answers from its store. A batch request walks the
// aggregate's subject from a start sequence and ends with an end-of-batch
// status that tells how many matching messages remain.
//
// A replica may lag the leader by the writes it has not applied yet, so a
// direct read can miss the newest events. The store's writes never depend
// on a read being fresh: every append carries the expected last sequence of
// its subject, and a stale read ends in ErrConflict, which callers retry.

const (
	// loadBatch is how many events one direct-get request returns at most.
	loadBatch = 512
	// directTimeout bounds one direct-get exchange when ctx has no deadline.
	directTimeout = 5 * time.Second
)

// errNoMessage is a direct get's 404: nothing on the subject at or after
// the requested sequence.
var errNoMessage = errors.New("no message")

// directMsg is one message returned by a direct get.
type directMsg struct {
	subject string
	seq     uint64
	stored  time.Time
	header  nats.Header
	data    []byte
}

// directLast returns the last message stored on subject.
func (s *Store) directLast(ctx context.Context, subject string) (directMsg, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	resp, err := s.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+s.bc.Stream+"."+subject, nil)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return directMsg{}, fmt.Errorf("%w: stream %s does not answer direct gets", ErrUnavailable, s.bc.Stream)
		}
		return directMsg{}, err
	}
	m, _, err := parseDirect(resp)
	return m, err
}

// directBatch returns up to max messages stored on subject from sequence
// from on, and how many more remain after them.
func (s *Store) directBatch(ctx context.Context, subject string, from uint64, max int) ([]directMsg, uint64, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj"`
		Batch   int    `json:"batch"`
	}{from, subject, max})
	if err != nil {
		return nil, 0, err
	}
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+s.bc.Stream, inbox, req); err != nil {
		return nil, 0, err
	}
	var out []directMsg
	for {
		resp, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, 0, err
		}
		m, pending, err := parseDirect(resp)
		switch {
		case errors.Is(err, errEndOfBatch):
			return out, pending, nil
		case errors.Is(err, errNoMessage) && len(out) == 0:
			return nil, 0, errNoMessage
		case err != nil:
			return nil, 0, err
		}
		out = append(out, m)
	}
}

// errEndOfBatch marks the status that closes a batch reply.
var errEndOfBatch = errors.New("end of batch")

// parseDirect decodes one direct-get reply: a stored message, or a status.
// For the end-of-batch status it also returns the pending count.
func parseDirect(m *nats.Msg) (directMsg, uint64, error) {
	if status := m.Header.Get("Status"); status != "" {
		switch status {
		case "204":
			pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return directMsg{}, pending, errEndOfBatch
		case "404":
			return directMsg{}, 0, errNoMessage
		case "503":
			return directMsg{}, 0, fmt.Errorf("%w: direct get: no responders", ErrUnavailable)
		default:
			return directMsg{}, 0, fmt.Errorf("direct get: status %s %s", status, m.Header.Get("Description"))
		}
	}
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return directMsg{}, 0, fmt.Errorf("direct get: bad sequence header %q", m.Header.Get("Nats-Sequence"))
	}
	stored, err := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
	if err != nil {
		return directMsg{}, 0, fmt.Errorf("direct get: bad time header %q", m.Header.Get("Nats-Time-Stamp"))
	}
	return directMsg{subject: m.Header.Get("Nats-Subject"), seq: seq, stored: stored, header: m.Header, data: m.Data}, 0, nil
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, directTimeout)
}
