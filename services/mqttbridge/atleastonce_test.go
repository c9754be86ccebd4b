package mqttbridge_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/mqttbridge"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// natsNode is an in-process nats-server with JetStream that a test can
// shut down and start again on the same port and store directory: the
// event log really goes away, and clients reconnect to the same address.
type natsNode struct {
	t    testing.TB
	opts *server.Options
	mu   sync.Mutex
	s    *server.Server
}

func runNATSNode(t testing.TB) *natsNode {
	t.Helper()
	n := &natsNode{t: t, opts: &server.Options{ServerName: "alo", Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}}
	n.start()
	n.opts.Port = n.s.Addr().(*net.TCPAddr).Port // restarts reuse it
	t.Cleanup(n.stop)
	return n
}

func (n *natsNode) server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.s
}

func (n *natsNode) start() {
	n.t.Helper()
	s, err := server.NewServer(n.opts.Clone())
	if err != nil {
		n.t.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		n.t.Fatal("nats-server not ready")
	}
	n.mu.Lock()
	n.s = s
	n.mu.Unlock()
}

func (n *natsNode) stop() {
	n.mu.Lock()
	s := n.s
	n.s = nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// aloDevice is one driver's phone in TestAtLeastOnce.
type aloDevice struct {
	driver string
	secret string
	v5     bool
	log    []aloAttempt // written by the device's goroutine only
	acked  atomic.Int32
	failed atomic.Int32
}

// aloAttempt is one publish of one point: when it was sent, when its
// outcome came back, and whether that outcome was a successful PUBACK.
type aloAttempt struct {
	point      int
	start, end time.Time
	ok         bool
	err        string
}

// TestAtLeastOnce: 1,000 drivers' phones (half MQTT 3.1.1, half MQTT 5,
// third-party clients) publish QoS 1 position points while the event log
// goes away for 5 s: the nats-server holding JetStream is shut down and
// started again on the same port and store. Every point that got a PUBACK
// is in TELEMETRY exactly once, no point sent during the outage was
// acknowledged before the log came back, and the phones' resends after the
// outage complete (every point is stored in the end).
func TestAtLeastOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 MQTT clients")
	}
	const (
		drivers   = 1000
		perDriver = 3
		outageFor = 5 * time.Second
	)
	devices := make([]*aloDevice, drivers)
	for i := range devices {
		devices[i] = &aloDevice{driver: fmt.Sprintf("alo-driver-%04d", i), v5: i%2 == 1}
	}
	restaurants := []string{downtown, "pearl"}
	setupStart := time.Now()
	node := runNATSNode(t)
	// The drivers are registered before the drivers service starts, as the
	// drivers service itself would have stored them, so that it knows all
	// of them when the first point arrives.
	h := newHarnessOn(t, mqttbridge.Config{RatePerSecond: -1}, node.server(), func(js jetstream.JetStream) {
		store := eventstore.New(js, events.NewRegistry(), events.Drivers)
		parallel(t, devices, 16, func(i int, d *aloDevice) error {
			env, err := events.NewEnvelope(d.driver, events.DriverRegistered{RestaurantID: restaurants[i%2], Name: "Driver " + d.driver, Vehicle: "scooter"},
				time.Now(), events.Meta{CorrelationID: d.driver})
			if err != nil {
				return err
			}
			_, err = store.Append(context.Background(), eventstore.Append{AggregateID: d.driver, ExpectedSeq: 0, CommandID: "register:" + d.driver, Events: []events.Envelope{env}})
			return err
		})
	})
	// Their MQTT secrets, issued by the bridge.
	parallel(t, devices, 16, func(i int, d *aloDevice) error {
		var cred mqttapi.CredentialsReply
		if p, err := h.call(mqttapi.SubjectCredentials, mqttapi.CredentialsCommand{DeviceID: d.driver, Kind: mqttapi.KindDriver}, &cred); p != nil || err != nil {
			return fmt.Errorf("credentials %s: %v %v", d.driver, p, err)
		}
		d.secret = cred.Secret
		return nil
	})
	t.Logf("registered %d drivers in %v", drivers, time.Since(setupStart).Round(time.Millisecond))
	// Points carry their own timestamp: point i of a driver is recorded at
	// base+i ms, which names it in TELEMETRY.
	base := time.Now().UTC().Add(-2 * time.Minute).Truncate(time.Millisecond)
	point := func(d, i int) map[string]any {
		return map[string]any{"lat": 45.4 + float64(d)/10_000, "lon": -122.7 + float64(i)/10_000, "speed": 20, "timestamp": base.Add(time.Duration(i) * time.Millisecond)}
	}
	done := make(chan struct{})
	defer close(done)
	// Phones back off exponentially (with jitter) after consecutive
	// failures, as real ones do, so the recovery is not a retry storm.
	backoff := func(failures int) {
		d := min(100*time.Millisecond<<min(failures, 5), 2*time.Second)
		tm := time.NewTimer(d/2 + rand.N(d/2))
		defer tm.Stop()
		select {
		case <-tm.C:
		case <-done:
		}
	}
	// Each phone connects, then sends its points one after another; a
	// point without a successful PUBACK is sent again (MQTT 5: on the same
	// connection; MQTT 3.1.1: the bridge closed it, so after reconnecting).
	var connectedN atomic.Int32
	connecting := make(chan struct{}, 100) // phones logging in at once
	run := func(di int, d *aloDevice) error {
		var c3 *v3Client
		var c5 *v5Client
		connect := func() error {
			for refused := 0; ; {
				var err error
				connecting <- struct{}{}
				if d.v5 {
					c5, _, err = h.connectV5("alo-"+d.driver, d.driver, d.secret)
				} else {
					c3, err = h.connectV3("alo-"+d.driver, d.driver, d.secret)
				}
				<-connecting
				if err == nil {
					return nil
				}
				select {
				case <-done:
					return fmt.Errorf("%s: %w", d.driver, err)
				default:
				}
				refused++
				backoff(refused) // the broker refuses logins while it cannot read credentials
			}
		}
		if err := connect(); err != nil {
			return err
		}
		connectedN.Add(1)
		failures := 0
		for i := 0; i < perDriver; {
			a := aloAttempt{point: i, start: time.Now()}
			var err error
			if d.v5 {
				_, err = c5.publish(mqttapi.TopicLocation(d.driver), 1, point(di, i))
			} else {
				err = c3.publish(mqttapi.TopicLocation(d.driver), 1, point(di, i))
			}
			a.end, a.ok = time.Now(), err == nil
			if err != nil {
				a.err = err.Error()
			}
			d.log = append(d.log, a)
			if a.ok {
				d.acked.Add(1)
				i, failures = i+1, 0
				continue
			}
			d.failed.Add(1)
			failures++
			backoff(failures)
			if !d.v5 {
				if c3.IsConnectionOpen() {
					c3.Disconnect(0)
				}
				if err := connect(); err != nil {
					return err
				}
			} else {
				select {
				case <-c5.Done():
					if err := connect(); err != nil {
						return err
					}
				default:
				}
			}
		}
		return nil
	}
	sum := func(f func(d *aloDevice) int32) int {
		n := 0
		for _, d := range devices {
			n += int(f(d))
		}
		return n
	}

	started := time.Now()
	finished := make(chan error, 1)
	go func() {
		var wg sync.WaitGroup
		errs := make(chan error, drivers)
		for di, d := range devices {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := run(di, d); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		finished <- <-errs // nil when every phone finished
	}()

	// The outage: once a third of the points are acknowledged, JetStream
	// goes away with its server for outageFor.
	testkit.Eventually(t, 60*time.Second, func() error {
		if n := sum(func(d *aloDevice) int32 { return d.acked.Load() }); n < drivers*perDriver/3 {
			return fmt.Errorf("%d of %d points acknowledged, %d connected after %v", n, drivers*perDriver, connectedN.Load(), time.Since(started))
		}
		return nil
	})
	ackedBefore := sum(func(d *aloDevice) int32 { return d.acked.Load() })
	node.stop()
	down := time.Now() // from here nothing can store a point
	outage := time.NewTimer(outageFor)
	<-outage.C
	restarting := time.Now() // until here nothing could
	node.start()
	t.Logf("outage: %d points acknowledged before it; log down %v", ackedBefore, restarting.Sub(down).Round(time.Millisecond))

	select {
	case err := <-finished:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("phones did not finish: %d of %d points acknowledged", sum(func(d *aloDevice) int32 { return d.acked.Load() }), drivers*perDriver)
	}
	elapsed := time.Since(started)

	// No acknowledgement of a point sent while the log was down, before it
	// came back.
	attempts, duringOutage, failedAttempts, ackedLate := 0, 0, 0, 0
	for _, d := range devices {
		for _, a := range d.log {
			attempts++
			if !a.ok {
				failedAttempts++
			}
			if a.start.After(down) && a.start.Before(restarting) {
				duringOutage++
				if a.ok && a.end.Before(restarting) {
					t.Errorf("%s point %d: sent at %v during the outage and acknowledged at %v, before the log came back at %v",
						d.driver, a.point, a.start.Format(time.StampMilli), a.end.Format(time.StampMilli), restarting.Format(time.StampMilli))
				}
			}
			if a.ok && a.end.After(down.Add(time.Second)) && a.end.Before(restarting) {
				ackedLate++ // an ack received well into the outage (only ever of a point stored before it)
			}
		}
	}
	phase := map[string]map[string]int{}
	for _, d := range devices {
		for _, a := range d.log {
			if a.ok {
				continue
			}
			p := "before"
			if a.start.After(restarting) {
				p = "after"
			} else if a.start.After(down) {
				p = "during"
			}
			if phase[p] == nil {
				phase[p] = map[string]int{}
			}
			phase[p][a.err]++
		}
	}
	t.Logf("failures by phase: %v", phase)
	if duringOutage < drivers/10 {
		t.Fatalf("only %d publishes were attempted during the outage: the test did not exercise it", duringOutage)
	}

	// Every point, each acknowledged, is stored exactly once.
	stored := map[string]map[time.Time]int{}
	recs := h.telemetry(events.Telemetry.SubjectPrefix + ".drivers.>")
	for _, r := range recs {
		id := r.Envelope.AggregateID
		if stored[id] == nil {
			stored[id] = map[time.Time]int{}
		}
		stored[id][r.Event.(events.DriverLocationReported).RecordedAt]++
	}
	acked, duplicates, missing := 0, 0, 0
	for _, d := range devices {
		ackedPoints := map[int]bool{}
		for _, a := range d.log {
			if a.ok {
				ackedPoints[a.point] = true
			}
		}
		acked += len(ackedPoints)
		for i := 0; i < perDriver; i++ {
			n := stored[d.driver][base.Add(time.Duration(i)*time.Millisecond)]
			switch {
			case n > 1:
				duplicates += n - 1
				t.Errorf("%s point %d stored %d times", d.driver, i, n)
			case n == 0:
				missing++
				t.Errorf("%s point %d (acknowledged: %v) is not in TELEMETRY", d.driver, i, ackedPoints[i])
			}
		}
		if len(stored[d.driver]) != perDriver {
			t.Errorf("%s: %d distinct points stored, want %d", d.driver, len(stored[d.driver]), perDriver)
		}
	}
	t.Logf("at-least-once: clients=%d (MQTT 3.1.1 %d, MQTT 5 %d) points=%d publishes=%d failed=%d during-outage=%d pubacked=%d stored=%d duplicates=%d missing=%d acks-received-late-in-outage=%d outage=%v total=%v",
		drivers, drivers/2, drivers/2, drivers*perDriver, attempts, failedAttempts, duringOutage, acked, len(recs), duplicates, missing, ackedLate,
		restarting.Sub(down).Round(time.Millisecond), elapsed.Round(time.Millisecond))
	if acked != drivers*perDriver || len(recs) != drivers*perDriver {
		t.Fatalf("%d points acknowledged and %d stored, want %d", acked, len(recs), drivers*perDriver)
	}
	if got := h.counter("pizza_mqtt_messages_total", map[string]string{"outcome": "unavailable"}); got == 0 {
		t.Fatal("no publish was counted as unavailable")
	}
}

// parallel runs f over items with at most n at once; the first error fails the test.
func parallel[T any](t *testing.T, items []T, n int, f func(i int, item T) error) {
	t.Helper()
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, n)
		mu   sync.Mutex
		errs []error
	)
	for i, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i, it); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}
