package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/service"
	invaudit "github.com/awesome-pizza/pizza/services/inventory/audit"
	orderaudit "github.com/awesome-pizza/pizza/services/orders/audit"
	"github.com/nats-io/nats.go/jetstream"
)

// replayedEvent is one line of `pizza replay`.
type replayedEvent struct {
	Stream        string          `json:"stream"`
	Seq           uint64          `json:"seq"`
	Subject       string          `json:"subject"`
	StoredAt      time.Time       `json:"storedAt"`
	Type          string          `json:"type"`
	Version       int             `json:"version"`
	AggregateID   string          `json:"aggregateId"`
	CorrelationID string          `json:"correlationId,omitempty"`
	CausationID   string          `json:"causationId,omitempty"`
	Data          json.RawMessage `json:"data"`
}

// runReplay streams the event log as JSON lines, filtered, in the order
// each stream stored them (streams one after another); with --verify it
// refolds every aggregate and checks the invariants instead.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var natsURL, contexts, aggregate, types, since, until string
	var verify bool
	fs := flag.NewFlagSet("pizza replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	service.StringFlag(fs, &natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server of the platform", "NATS_URL")
	fs.StringVar(&contexts, "context", "orders,inventory,kitchen,drivers", "contexts to read, comma-separated")
	fs.StringVar(&aggregate, "aggregate", "", "only this aggregate id (an order, restaurant, driver…)")
	fs.StringVar(&types, "type", "", "only these event types, comma-separated (e.g. order_placed,order_cancelled)")
	fs.StringVar(&since, "since", "", "only events stored at or after this RFC 3339 time")
	fs.StringVar(&until, "until", "", "only events stored before this RFC 3339 time")
	fs.BoolVar(&verify, "verify", false, "refold every order and stock record and check the invariants; exit 1 on a violation")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var from, to time.Time
	var err error
	if since != "" {
		if from, err = time.Parse(time.RFC3339Nano, since); err != nil {
			return fmt.Errorf("--since: %w", err)
		}
	}
	if until != "" {
		if to, err = time.Parse(time.RFC3339Nano, until); err != nil {
			return fmt.Errorf("--until: %w", err)
		}
	}
	if aggregate != "" && events.ValidateID(aggregate) != nil {
		return fmt.Errorf("--aggregate %q is not an aggregate id", aggregate)
	}
	var bcs []events.Context
	for _, name := range strings.Split(contexts, ",") {
		i := slices.IndexFunc(events.DomainContexts(), func(c events.Context) bool { return c.Name == strings.TrimSpace(name) })
		if i < 0 {
			return fmt.Errorf("--context: unknown context %q", name)
		}
		bcs = append(bcs, events.DomainContexts()[i])
	}
	typeSet := map[string]bool{}
	for _, t := range strings.Split(types, ",") {
		if t = strings.TrimSpace(t); t != "" {
			typeSet[t] = true
		}
	}
	if verify && (aggregate != "" || len(typeSet) > 0 || since != "") {
		return errors.New("--verify refolds whole histories: it cannot be combined with --aggregate, --type or --since")
	}

	log := service.NewLogger(stderr, "text", "warn")
	nc, err := service.ConnectNATS(natsURL, "pizza-replay", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	reg := events.NewRegistry()
	orders, stock := orderaudit.NewOrderChecker(), invaudit.NewStockChecker()
	enc := json.NewEncoder(stdout)
	read, unknown := 0, 0
	for _, bc := range bcs {
		filter := bc.Wildcard()
		if aggregate != "" {
			filter = bc.Subject(aggregate)
		}
		err := eachMessage(ctx, js, bc.Stream, filter, from, func(m jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
			if !to.IsZero() && !md.Timestamp.Before(to) {
				return false, nil
			}
			read++
			if verify {
				rec, err := eventstore.DecodeMessage(reg, m.Subject(), m.Headers(), m.Data(), md.Stream, md.Sequence.Stream, md.Timestamp)
				if err != nil {
					// An event this build cannot read is reported, never skipped silently.
					unknown++
					fmt.Fprintf(stderr, "%s seq %d: %v\n", md.Stream, md.Sequence.Stream, err)
					return true, nil
				}
				switch bc {
				case events.Orders:
					orders.Add(rec)
				case events.Inventory:
					stock.Add(rec)
				}
				return true, nil
			}
			env, err := events.UnmarshalEnvelope(m.Data())
			if err != nil {
				unknown++
				fmt.Fprintf(stderr, "%s seq %d: %v\n", md.Stream, md.Sequence.Stream, err)
				return true, nil
			}
			if len(typeSet) > 0 && !typeSet[env.Type] {
				return true, nil
			}
			return true, enc.Encode(replayedEvent{Stream: md.Stream, Seq: md.Sequence.Stream, Subject: m.Subject(), StoredAt: md.Timestamp.UTC(),
				Type: env.Type, Version: env.Version, AggregateID: env.AggregateID, CorrelationID: env.CorrelationID, CausationID: env.CausationID, Data: env.Data})
		})
		if err != nil {
			return fmt.Errorf("%s: %w", bc.Stream, err)
		}
	}
	if !verify {
		if unknown > 0 {
			return fmt.Errorf("%d stored messages could not be read (see above)", unknown)
		}
		return nil
	}
	var violations []fmt.Stringer
	for _, v := range orders.Violations() {
		violations = append(violations, v)
	}
	for _, v := range stock.Violations() {
		violations = append(violations, v)
	}
	for _, v := range violations {
		fmt.Fprintln(stdout, "VIOLATION", v)
	}
	n, byStatus := orders.Summary()
	fmt.Fprintf(stdout, "verified %d events: %d orders %v, %d violations, %d unreadable\n", read, n, byStatus, len(violations), unknown)
	if len(violations) > 0 || unknown > 0 {
		return fmt.Errorf("%d invariant violations, %d unreadable events", len(violations), unknown)
	}
	return nil
}

// eachMessage reads a stream (filtered) from the start, or from a time, to
// its current end with an ordered consumer; fn returns false to stop.
func eachMessage(ctx context.Context, js jetstream.JetStream, stream, filter string, from time.Time, fn func(jetstream.Msg, *jetstream.MsgMetadata) (bool, error)) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !from.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &from
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return err
	}
	if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
		return nil
	}
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			more, err := fn(m, md)
			if err != nil || !more {
				return err
			}
			if md.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if got == 0 {
			return errors.New("the stream stopped delivering before its end")
		}
	}
}
