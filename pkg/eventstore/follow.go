package eventstore

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Follow feeds every message of an ordered consumer on stream to handle,
// in stream order, until ctx ends. It is for in-memory state that every
// instance of a service keeps for itself (nothing is acknowledged, no
// durable is shared). caught, when set, is called once, when the messages
// that existed at the start have been handled. After a failure (the
// stream missing yet, a server restart) it resumes after the last handled
// sequence, backing off from 50 ms to 5 s.
func Follow(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.OrderedConsumerConfig, log *slog.Logger,
	caught func(), handle func(jetstream.Msg, *jetstream.MsgMetadata)) {
	var once sync.Once
	markCaught := func() {
		if caught != nil {
			once.Do(caught)
		}
	}
	if log == nil {
		log = slog.Default()
	}
	var last uint64
	backoff := 50 * time.Millisecond
	for {
		c := cfg
		if last > 0 {
			c.DeliverPolicy, c.OptStartSeq, c.OptStartTime = jetstream.DeliverByStartSequencePolicy, last+1, nil
		}
		err := followOnce(ctx, js, stream, c, markCaught, handle, &last)
		if ctx.Err() != nil {
			return
		}
		log.Warn("following the log was interrupted; resuming", "stream", stream, "after_seq", last, "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func followOnce(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.OrderedConsumerConfig, caught func(),
	handle func(jetstream.Msg, *jetstream.MsgMetadata), last *uint64) error {
	target, err := LastSeq(ctx, js, stream)
	if err != nil {
		return err
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return err
	}
	if ci := cons.CachedInfo(); target <= *last || (ci != nil && ci.NumPending == 0) {
		caught()
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoHeartbeat) {
				continue
			}
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		handle(m, md)
		*last = md.Sequence.Stream
		if md.NumPending == 0 || *last >= target {
			caught()
		}
	}
}
