package fault_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// summaryPrefix starts the one line every fault test prints.
const summaryPrefix = "FAULT-SUMMARY:"

// summary is the outcome of one fault test, printed as one line.
type summary struct {
	Test        string
	Faults      int           // faults injected
	Acked       int           // events (or commands) acknowledged to clients
	Stored      int           // events found in the log afterwards
	Duplicates  int           // events stored more than once
	Convergence time.Duration // time from the fault until everything healed
	// Extra holds further figures as key, value pairs.
	Extra []any
}

// print writes the summary line to stdout (visible with go test -v) and,
// when FAULT_SUMMARY_FILE names a file, appends it there for CI.
func (s summary) print(t *testing.T) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s test=%s faults=%d acked=%d stored=%d duplicates=%d convergence=%s",
		summaryPrefix, s.Test, s.Faults, s.Acked, s.Stored, s.Duplicates, s.Convergence.Round(time.Millisecond))
	for i := 0; i+1 < len(s.Extra); i += 2 {
		v := s.Extra[i+1]
		if d, ok := v.(time.Duration); ok {
			v = d.Round(time.Millisecond)
		}
		fmt.Fprintf(&b, " %v=%v", s.Extra[i], v)
	}
	line := b.String()
	fmt.Println(line)
	if path := os.Getenv("FAULT_SUMMARY_FILE"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Errorf("summary file: %v", err)
			return
		}
		defer f.Close()
		if _, err := fmt.Fprintln(f, line); err != nil {
			t.Errorf("summary file: %v", err)
		}
	}
}

// storedMsg is one message of a stream, as far as the audit cares.
type storedMsg struct {
	Seq       uint64
	Subject   string
	MsgID     string
	CommandID string
	Type      string
}

// scanStream reads every message of a stream, in order, through an
// ordered consumer (served by the stream leader). Right after a fault the
// JetStream API may answer "temporarily unavailable": the scan is retried
// until it completes.
func scanStream(ctx context.Context, t *testing.T, js jetstream.JetStream, stream string) []storedMsg {
	t.Helper()
	var out []storedMsg
	testkit.Eventually(t, 60*time.Second, func() error {
		var err error
		out, err = readStream(ctx, js, stream)
		return err
	})
	return out
}

func readStream(ctx context.Context, js jetstream.JetStream, stream string) ([]storedMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", stream, err)
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	last := info.State.LastSeq
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", stream, err)
	}
	out := make([]storedMsg, 0, info.State.Msgs)
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("scan %s: %w", stream, err)
			}
			h := m.Headers()
			out = append(out, storedMsg{Seq: md.Sequence.Stream, Subject: m.Subject(), MsgID: h.Get(jetstream.MsgIDHeader),
				CommandID: h.Get(events.HeaderCommandID), Type: h.Get(events.HeaderType)})
			if md.Sequence.Stream >= last {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("scan %s: %w", stream, err)
		}
		if got == 0 {
			return nil, fmt.Errorf("scan %s: stream ended before sequence %d (read %d messages)", stream, last, len(out))
		}
	}
}

// logAudit is what a scan of the log says about duplicates.
type logAudit struct {
	Stored int
	// Duplicates counts messages whose Nats-Msg-Id (derived from the
	// command id and the event's index in the command) was stored before.
	Duplicates int
	BySeq      map[uint64]storedMsg
	ByMsgID    map[string][]uint64
}

func auditLog(msgs []storedMsg) logAudit {
	a := logAudit{Stored: len(msgs), BySeq: map[uint64]storedMsg{}, ByMsgID: map[string][]uint64{}}
	for _, m := range msgs {
		a.BySeq[m.Seq] = m
		if m.MsgID == "" {
			continue
		}
		if len(a.ByMsgID[m.MsgID]) > 0 {
			a.Duplicates++
		}
		a.ByMsgID[m.MsgID] = append(a.ByMsgID[m.MsgID], m.Seq)
	}
	return a
}

// streamLastSeq returns the last sequence of a stream, retrying while the
// JetStream API recovers from a fault.
func streamLastSeq(ctx context.Context, t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	var last uint64
	testkit.Eventually(t, 60*time.Second, func() error {
		info, err := streamInfo(ctx, js, stream)
		if err != nil {
			return err
		}
		last = info.State.LastSeq
		return nil
	})
	return last
}

func streamInfo(ctx context.Context, js jetstream.JetStream, stream string, opts ...jetstream.StreamInfoOpt) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return st.Info(ctx, opts...)
}

// redisCheckpoint reads a read model's checkpoint (0 when absent).
func redisCheckpoint(ctx context.Context, rdb *redis.Client, key string) (uint64, error) {
	v, err := rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(v, 10, 64)
}

// snapshotKeyspace reads every key under prefix with its type and value,
// in a canonical form, keyed by the key without the prefix. The
// projectors' leases (who writes, not what is written) are left out.
func snapshotKeyspace(ctx context.Context, t *testing.T, rdb *redis.Client, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		if strings.HasPrefix(key, projection.LeaseKey(prefix, "")) {
			continue
		}
		typ, err := rdb.Type(ctx, key).Result()
		if err != nil {
			t.Fatalf("snapshot %s: %v", key, err)
		}
		var val string
		switch typ {
		case "string":
			val, err = rdb.Get(ctx, key).Result()
		case "zset":
			var zs []redis.Z
			zs, err = rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
			parts := make([]string, len(zs))
			for i, z := range zs {
				parts[i] = fmt.Sprintf("%v=%v", z.Member, z.Score)
			}
			val = strings.Join(parts, ",")
		case "set":
			var ms []string
			ms, err = rdb.SMembers(ctx, key).Result()
			slices.Sort(ms)
			val = strings.Join(ms, ",")
		case "hash":
			var h map[string]string
			h, err = rdb.HGetAll(ctx, key).Result()
			keys := make([]string, 0, len(h))
			for k := range h {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				val += k + "=" + h[k] + ";"
			}
		case "list":
			var l []string
			l, err = rdb.LRange(ctx, key, 0, -1).Result()
			val = strings.Join(l, ",")
		case "none":
			continue // removed since the scan saw it
		default:
			t.Fatalf("snapshot %s: unexpected type %s", key, typ)
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("snapshot %s: %v", key, err)
		}
		out[strings.TrimPrefix(key, prefix)] = typ + ":" + val
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("snapshot %s*: %v", prefix, err)
	}
	return out
}

// diffSnapshots describes how two keyspace snapshots differ (at most a
// few differences), or returns "" when they are equal.
func diffSnapshots(a, b map[string]string) string {
	var diffs []string
	for k, va := range a {
		vb, ok := b[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("only in the first: %s", k))
		case va != vb:
			diffs = append(diffs, fmt.Sprintf("%s differs:\n  %.300s\n  %.300s", k, va, vb))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("only in the second: %s", k))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	slices.Sort(diffs)
	if len(diffs) > 8 {
		diffs = append(diffs[:8], fmt.Sprintf("... and %d more", len(diffs)-8))
	}
	return strings.Join(diffs, "\n")
}

// logCapture collects the logs of services run in process: shown when a
// test fails, and searchable for the events a test counts.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count returns how many log lines contain s.
func (l *logCapture) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Count(l.buf.Bytes(), []byte(s))
}

func (l *logCapture) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// captureLogs returns a logger for in-process services whose output is
// printed only when the test fails.
func captureLogs(t *testing.T) (*slog.Logger, *logCapture) {
	t.Helper()
	lc := &logCapture{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service logs (tail):\n%s", lc.tail(16<<10))
		}
	})
	return slog.New(slog.NewTextHandler(lc, &slog.HandlerOptions{Level: slog.LevelInfo})), lc
}

// fixedClock is the platform time of in-process services: frozen, so the
// stuck-order detector never fires and rebuilds are deterministic.
func fixedClock() func() time.Time {
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	return func() time.Time { return at }
}

// startOrders runs an orders service in process on the given keyspace.
func startOrders(t *testing.T, nc *nats.Conn, js jetstream.JetStream, rdb *redis.Client, keyspace string, log *slog.Logger, metrics prometheus.Registerer) *orders.Service {
	t.Helper()
	svc, err := orders.New(orders.Config{Keyspace: keyspace}, orders.Deps{
		NC: nc, JS: js, Redis: rdb, Catalog: catalog.Default(), Registry: events.NewRegistry(),
		Log: log, Clock: fixedClock(), Metrics: metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Stop)
	return svc
}

// placeCommand is a valid order placement for client i.
func placeCommand(i int) ordersapi.PlaceCommand {
	lat, lon := 45.52+float64(i%10)/1000, -122.68
	restaurants := []string{"downtown", "pearl", "hawthorne"}
	return ordersapi.PlaceCommand{
		IdempotencyKey: fmt.Sprintf("fault-order-%d", i),
		Request: ordersapi.PlaceOrderRequest{
			CustomerID: fmt.Sprintf("customer-%d", i%17), RestaurantID: restaurants[i%len(restaurants)], PaymentMethod: "CreditCard",
			Items: []ordersapi.ItemRequest{{PizzaType: "Margherita", Size: "Large", Toppings: []string{"Basil"}, Quantity: 1 + i%3}},
			Address: &ordersapi.Address{Street: fmt.Sprintf("%d Main St", i), City: "Portland", State: "OR", ZipCode: "97201",
				Coordinates: &ordersapi.Coordinates{Latitude: &lat, Longitude: &lon}},
		},
	}
}

// errPermanent marks a command reply that retrying cannot change (a 4xx).
var errPermanent = errors.New("permanent error")

// requestWithRetry sends a command over NATS request/reply until it gets
// a successful reply, retrying the same command (same idempotency key) on
// timeouts, missing responders and 5xx replies, as a well-behaved client
// does. It returns the number of attempts.
func requestWithRetry(ctx context.Context, nc *nats.Conn, subject string, cmd, reply any) (int, error) {
	body, err := json.Marshal(cmd)
	if err != nil {
		return 0, err
	}
	pause := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		msg, err := nc.RequestWithContext(rctx, subject, body)
		cancel()
		if err == nil {
			code := msg.Header.Get("Nats-Service-Error-Code")
			if code == "" {
				return attempt, json.Unmarshal(msg.Data, reply)
			}
			if status, _ := strconv.Atoi(code); status < 500 {
				return attempt, fmt.Errorf("%w: %s %s: %s", errPermanent, subject, code, msg.Data)
			}
		}
		if ctx.Err() != nil {
			return attempt, fmt.Errorf("%s: gave up after %d attempts: %w", subject, attempt, ctx.Err())
		}
		if err := pauseFor(ctx, pause); err != nil {
			return attempt, err
		}
		pause = min(pause*2, 200*time.Millisecond)
	}
}

// pauseFor spaces a client's retries; it is the client's backoff, not a
// wait for a condition (those poll with testkit.Eventually).
func pauseFor(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}
