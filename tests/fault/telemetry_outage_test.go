package fault_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/drivers"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/mqttbridge"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
	paho "github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// The telemetry load: this many drivers' phones, each publishing one QoS 1
// location fix per period, half over MQTT 3.1.1 and half over MQTT 5.
const (
	telemetryPhones = 200
	telemetryPeriod = time.Second
	// quorumOutage is how long two of the three nodes stay down, at least.
	quorumOutage = 5 * time.Second
	// phonePublishTimeout bounds a phone's wait for a PUBACK; the bridge
	// answers (or closes the connection) within its CommandTimeout.
	phonePublishTimeout = 10 * time.Second
)

// Telemetry during an outage (issue 10, item 6): drivers' phones publish
// QoS 1 location fixes through the MQTT bridge (in process, with the
// drivers service that stores the fixes) to TELEMETRY at three replicas on
// a three-node cluster, while
//  1. the TELEMETRY stream leader is stopped: fixes are acknowledged again
//     within seconds, on a new leader;
//  2. two of three nodes are stopped for at least five seconds, the
//     TELEMETRY leader left alone without a quorum: no phone gets a PUBACK
//     for a fix the log has not stored; phones send their fix again until
//     the quorum is back.
//
// Afterwards every fix is in TELEMETRY exactly once (by driver and fix
// timestamp, and by Nats-Msg-Id), every replica holds the same stream, and
// no fix was acknowledged while the log could not accept it.
func TestTelemetryDuringLeaderLossAndQuorumLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster fault test")
	}
	ctx := context.Background()
	started := time.Now()
	c := testkit.RunCluster(t, 3)
	urls := strings.Join(c.ClientURLs(), ",")
	log, _ := captureLogs(t)
	connect := func(name string) *nats.Conn {
		nc, err := nats.Connect(urls, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
			// A node stopping under a connection is expected here: say so
			// in the captured log, not on stdout.
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				log.Info("NATS connection error", "connection", name, "err", err)
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	nc := connect("fault-test")
	js := testkit.JetStream(t, nc)
	streams := eventstore.StreamOptions{Replicas: 3}
	testkit.Eventually(t, 30*time.Second, func() error {
		return eventstore.Provision(ctx, js, streams, events.DomainContexts()...)
	})
	stream := events.Telemetry.Stream
	testkit.Eventually(t, 30*time.Second, func() error {
		if c.StreamLeader(globalAccount, stream) < 0 {
			return errors.New("TELEMETRY has no leader yet")
		}
		return nil
	})

	// The drivers service stores the fixes; the bridge sends them to it.
	// Each runs on its own connection to the cluster, as separate
	// processes would.
	rdb, ks := testkit.Redis(t)
	dnc := connect("drivers")
	drv, err := drivers.New(drivers.Config{Keyspace: ks, Streams: streams, TimeScale: 60, PositionsWait: time.Second},
		drivers.Deps{NC: dnc, JS: testkit.JetStream(t, dnc), Redis: rdb, Catalog: catalog.Default(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := drv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drv.Stop)
	testkit.Eventually(t, 30*time.Second, func() error { return drv.Ready(ctx) })
	bnc := connect("mqttbridge")
	metrics := prometheus.NewRegistry()
	bridge, err := mqttbridge.New(mqttbridge.Config{
		Keyspace: ks, Streams: streams, Addr: "127.0.0.1:0", TimeScale: 60,
		// No rate limit: over the rate an MQTT 3.1.1 publish is
		// acknowledged and dropped (by design), which is not this test's
		// subject. A shorter wait for the log makes phones retry more
		// often during the outage.
		RatePerSecond: -1, CommandTimeout: 2 * time.Second,
	}, mqttbridge.Deps{NC: bnc, JS: testkit.JetStream(t, bnc), Redis: rdb, Catalog: catalog.Default(), Log: log, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	if err := bridge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bridge.Stop)
	testkit.Eventually(t, 30*time.Second, func() error { return bridge.Ready(ctx) })

	phones, credentialsNotFound := registerPhones(ctx, t, nc, telemetryPhones)
	setupTook := time.Since(started)
	load := startTelemetryLoad(ctx, bridge.Addr().String(), phones, telemetryPeriod, 100*time.Second)
	// A test that ends early does not wait for fixes in flight.
	t.Cleanup(func() { load.cancel(); _ = load.stop() })
	faults := 0

	// Phase 1: lose the TELEMETRY leader under load.
	waitPhoneAcks(t, load, len(phones))
	phase1 := time.Now()
	leader := c.StreamLeader(globalAccount, stream)
	if leader < 0 {
		t.Fatal("TELEMETRY has no leader")
	}
	leaderName := c.Servers[leader].Name()
	stopIssued := time.Now()
	c.Stop(leader)
	stopDone := time.Now()
	faults++
	var resume time.Duration
	testkit.Eventually(t, 30*time.Second, func() error {
		at, ok := load.firstAckStartedAfter(stopDone)
		if !ok {
			return fmt.Errorf("no fix sent after %s stopped has been acknowledged", leaderName)
		}
		resume = at.Sub(stopIssued)
		return nil
	})
	if resume > 20*time.Second {
		t.Errorf("fixes were acknowledged again %v after the TELEMETRY leader stopped; want within seconds", resume)
	}
	waitPhoneAcks(t, load, load.acked()+len(phones))
	c.Restart(leader)
	testkit.Eventually(t, 60*time.Second, func() error { return replicasCurrent(ctx, js, stream) })

	// Phase 2: lose the quorum. The TELEMETRY leader stays up alone.
	phase2 := time.Now()
	survivor := c.StreamLeader(globalAccount, stream)
	if survivor < 0 {
		t.Fatal("TELEMETRY has no leader")
	}
	down := []int{(survivor + 1) % 3, (survivor + 2) % 3}
	for _, i := range down {
		c.Stop(i)
		faults++
	}
	quorumLost := time.Now()
	// The outage lasts at least quorumOutage and until every phone has
	// run into it (a failed attempt started after the quorum was lost).
	testkit.Eventually(t, 30*time.Second, func() error {
		if d := time.Since(quorumLost); d < quorumOutage {
			return fmt.Errorf("outage has lasted %v of %v", d, quorumOutage)
		}
		if n := load.phonesFailedSince(quorumLost); n < len(phones) {
			return fmt.Errorf("%d of %d phones have had a fix refused during the outage", n, len(phones))
		}
		return nil
	})
	quorumBack := time.Now()
	for _, i := range down {
		c.Restart(i)
	}
	// Convergence: every phone has a fix acknowledged again.
	var quorumRecovery, convergence time.Duration
	testkit.Eventually(t, 60*time.Second, func() error {
		first, last, missing := load.acksStartedAfter(quorumBack)
		if missing > 0 {
			return fmt.Errorf("%d of %d phones have no fix acknowledged since the quorum returned", missing, len(phones))
		}
		quorumRecovery, convergence = first.Sub(quorumBack), last.Sub(quorumBack)
		return nil
	})
	if err := load.stop(); err != nil {
		t.Fatal(err)
	}

	// Every replica holds the same stream, and the log holds every fix
	// exactly once.
	verifying := time.Now()
	lastSeq := streamLastSeq(ctx, t, js, stream)
	testkit.Eventually(t, 60*time.Second, func() error { return sameStateOnEveryNode(c, stream, lastSeq) })
	var stored []storedFix
	testkit.Eventually(t, 60*time.Second, func() error {
		var err error
		stored, err = readFixes(ctx, js)
		return err
	})
	audit := auditFixes(t, load, stored)
	outage := load.outageAudit(t, audit, quorumLost, quorumBack)
	if outage.failed == 0 {
		t.Error("no publish failed while two of three nodes were down: the outage was not observed")
	}

	verified := time.Now()
	v3, v5 := 0, 0
	for _, p := range phones {
		if p.v5 {
			v5++
		} else {
			v3++
		}
	}
	figures := load.figures()
	summary{
		Test: "telemetry-outage", Faults: faults, Acked: figures.acked, Stored: len(stored), Duplicates: audit.duplicates, Convergence: convergence,
		Extra: []any{"phones", len(phones), "mqtt311", v3, "mqtt5", v5, "fixes_per_phone_per_s", float64(time.Second) / float64(telemetryPeriod),
			"lost_leader", leaderName, "resume_after_leader_loss", resume,
			"quorum_outage", quorumBack.Sub(quorumLost), "quorum_recovery", quorumRecovery,
			"attempts", figures.attempts, "failed_attempts", figures.failed, "refused_0x83", figures.refused, "no_puback_disconnects", figures.noPuback,
			"attempts_in_outage", outage.attempts, "failed_in_outage", outage.failed, "acks_in_outage", outage.acks, "acks_in_outage_of_fixes_stored_before", outage.ackedStoredBefore,
			"acks_in_outage_sent_during", outage.sentDuring, "last_ack_into_outage", outage.lastAck,
			"false_acks", outage.falseAcks, "fixes_resent", figures.resent, "reconnects", figures.reconnects, "connects_refused", figures.failedConnects, "longest_ack_gap", figures.longestGap,
			"setup", setupTook, "warm_up", phase1.Sub(started) - setupTook, "leader_phase", phase2.Sub(phase1), "quorum_phase", verifying.Sub(phase2),
			"verify", verified.Sub(verifying), "credentials_404_after_register", credentialsNotFound, "unavailable_counted", counterSum(t, metrics, "pizza_mqtt_messages_total", "outcome", "unavailable")},
	}.print(t)
}

// telPhone is one driver's phone and what happened to its fixes.
type telPhone struct {
	driver string
	secret string
	v5     bool

	mu         sync.Mutex
	fixes      []*telFix
	attempts   []telAttempt
	reconnects int
	// failedConnects counts CONNECTs that failed; lastFailure is when the
	// latest failed publish or CONNECT began.
	failedConnects int
	lastFailure    time.Time
}

// telFix is one location fix as the phone sent it.
type telFix struct {
	idx      int
	at       time.Time // the fix's timestamp: its identity per driver
	payload  []byte
	ackedAt  time.Time // zero until a PUBACK
	attempts int
}

// telAttempt is one PUBLISH of a fix and its outcome.
type telAttempt struct {
	fix        int
	start, end time.Time
	ok         bool
	outcome    string // ack, refused (MQTT 5 failure reason), no_puback (connection closed or timed out)
}

// registerPhones registers n drivers with the drivers service and issues
// each an MQTT secret; even ones connect over MQTT 3.1.1, odd ones over
// MQTT 5.
func registerPhones(ctx context.Context, t *testing.T, nc *nats.Conn, n int) ([]*telPhone, int) {
	t.Helper()
	var notFound atomic.Int64
	restaurants := []string{"downtown", "pearl", "hawthorne"}
	phones := make([]*telPhone, n)
	errs := make(chan error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				id := fmt.Sprintf("fault-phone-%03d", i)
				rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				var reply driversapi.CommandReply
				_, err := requestWithRetry(rctx, nc, driversapi.SubjectRegister, driversapi.RegisterCommand{
					DriverID: id, Name: "Fault Phone " + id, RestaurantID: restaurants[i%len(restaurants)], Vehicle: "scooter",
					CommandMeta: driversapi.CommandMeta{IdempotencyKey: "register-" + id},
				}, &reply)
				var cred mqttapi.CredentialsReply
				for err == nil {
					_, err = requestWithRetry(rctx, nc, mqttapi.SubjectCredentials, mqttapi.CredentialsCommand{DeviceID: id, Kind: mqttapi.KindDriver}, &cred)
					// On a cluster the bridge may not see a driver registered
					// a moment ago (see DECISIONS.md F10): ask again.
					if err == nil || !errors.Is(err, errPermanent) || !strings.Contains(err.Error(), " 404: ") {
						break
					}
					notFound.Add(1)
					if err = pauseFor(rctx, 50*time.Millisecond); err != nil {
						break
					}
				}
				cancel()
				if err != nil {
					errs <- fmt.Errorf("phone %s: %w", id, err)
					continue
				}
				phones[i] = &telPhone{driver: id, secret: cred.Secret, v5: i%2 == 1}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return phones, int(notFound.Load())
}

// telemetryLoad runs every phone: one fix per period, each sent again
// until a PUBACK acknowledges it.
type telemetryLoad struct {
	addr   string
	period time.Duration
	phones []*telPhone
	halt   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
	nAcked atomic.Int64
	once   sync.Once

	mu  sync.Mutex
	err error
}

func startTelemetryLoad(ctx context.Context, addr string, phones []*telPhone, period, deadline time.Duration) *telemetryLoad {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	ld := &telemetryLoad{addr: addr, period: period, phones: phones, halt: make(chan struct{}), cancel: cancel}
	for i, p := range phones {
		ld.wg.Add(1)
		// Spread the phones over the period, as real phones are.
		go ld.run(ctx, p, time.Duration(i)*period/time.Duration(len(phones)))
	}
	return ld
}

func (ld *telemetryLoad) run(ctx context.Context, p *telPhone, offset time.Duration) {
	defer ld.wg.Done()
	var ph phone
	defer func() {
		if ph != nil {
			ph.close()
		}
	}()
	if pauseFor(ctx, offset) != nil {
		return
	}
	tick := time.NewTicker(ld.period)
	defer tick.Stop()
	var last time.Time
	topic := mqttapi.TopicLocation(p.driver)
	for i := 0; ; i++ {
		if i > 0 {
			select {
			case <-ld.halt:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		at := time.Now().UTC().Truncate(time.Millisecond)
		if !at.After(last) {
			at = last.Add(time.Millisecond)
		}
		last = at
		fix := &telFix{idx: i, at: at, payload: fixPayload(p, i, at)}
		p.mu.Lock()
		p.fixes = append(p.fixes, fix)
		p.mu.Unlock()
		// The same fix, byte for byte, until it is acknowledged: the
		// bridge recognises it by its content.
		pause := 50 * time.Millisecond
		for {
			if ph == nil || !ph.usable() {
				if ph != nil {
					ph.close()
				}
				dialed := time.Now()
				var err error
				ph, err = dialPhone(ctx, ld.addr, p)
				if err != nil {
					ph = nil
					p.mu.Lock()
					p.failedConnects++
					p.lastFailure = dialed
					p.mu.Unlock()
				} else {
					p.mu.Lock()
					p.reconnects++
					p.mu.Unlock()
				}
			}
			if ph != nil {
				start := time.Now()
				outcome, err := ph.publish(topic, fix.payload)
				end := time.Now()
				p.mu.Lock()
				fix.attempts++
				p.attempts = append(p.attempts, telAttempt{fix: i, start: start, end: end, ok: err == nil, outcome: outcome})
				if err == nil {
					fix.ackedAt = end
				} else {
					p.lastFailure = start
				}
				p.mu.Unlock()
				if err == nil {
					ld.nAcked.Add(1)
					break
				}
			}
			if ctx.Err() != nil {
				ld.fail(fmt.Errorf("%s: fix %d never acknowledged: %w", p.driver, i, ctx.Err()))
				return
			}
			if pauseFor(ctx, pause) != nil {
				ld.fail(fmt.Errorf("%s: fix %d never acknowledged: %w", p.driver, i, ctx.Err()))
				return
			}
			pause = min(pause*2, time.Second)
		}
	}
}

// fixPayload is fix i of a phone; its accuracy carries the index, for
// reading the log.
func fixPayload(p *telPhone, i int, at time.Time) []byte {
	body, err := json.Marshal(map[string]any{
		"lat": 45.5 + float64(len(p.driver)%7)/1000, "lon": -122.65 - float64(i)/100_000,
		"accuracy": float64(i), "speed": 20.0, "timestamp": at,
	})
	if err != nil {
		panic(err) // a map of numbers and a time always encodes
	}
	return body
}

func (ld *telemetryLoad) fail(err error) {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if ld.err == nil {
		ld.err = err
	}
}

// stop lets every phone finish its fix in flight (sent again until
// acknowledged) and returns the first error a phone met.
func (ld *telemetryLoad) stop() error {
	ld.once.Do(func() { close(ld.halt) })
	ld.wg.Wait()
	ld.cancel()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.err
}

func (ld *telemetryLoad) acked() int { return int(ld.nAcked.Load()) }

// firstAckStartedAfter is when the first PUBACK came for a publish sent
// after t.
func (ld *telemetryLoad) firstAckStartedAfter(t time.Time) (time.Time, bool) {
	var first time.Time
	for _, p := range ld.phones {
		p.mu.Lock()
		for _, a := range p.attempts {
			if a.ok && a.start.After(t) && (first.IsZero() || a.end.Before(first)) {
				first = a.end
			}
		}
		p.mu.Unlock()
	}
	return first, !first.IsZero()
}

// acksStartedAfter returns the earliest and the latest of the phones'
// first PUBACK for a publish sent after t, and how many phones have none.
func (ld *telemetryLoad) acksStartedAfter(t time.Time) (first, last time.Time, missing int) {
	for _, p := range ld.phones {
		var mine time.Time
		p.mu.Lock()
		for _, a := range p.attempts {
			if a.ok && a.start.After(t) {
				mine = a.end
				break
			}
		}
		p.mu.Unlock()
		if mine.IsZero() {
			missing++
			continue
		}
		if first.IsZero() || mine.Before(first) {
			first = mine
		}
		if mine.After(last) {
			last = mine
		}
	}
	return first, last, missing
}

// phonesFailedSince counts the phones with a publish or a CONNECT begun
// after t that failed.
func (ld *telemetryLoad) phonesFailedSince(t time.Time) int {
	n := 0
	for _, p := range ld.phones {
		p.mu.Lock()
		if p.lastFailure.After(t) {
			n++
		}
		p.mu.Unlock()
	}
	return n
}

// loadFigures are the load's totals for the summary.
type loadFigures struct {
	acked, attempts, failed, refused, noPuback, resent, reconnects, failedConnects int
	longestGap                                                                     time.Duration
}

func (ld *telemetryLoad) figures() loadFigures {
	var f loadFigures
	var acks []time.Time
	for _, p := range ld.phones {
		p.mu.Lock()
		f.reconnects += max(0, p.reconnects-1)
		f.failedConnects += p.failedConnects
		for _, x := range p.fixes {
			if !x.ackedAt.IsZero() {
				f.acked++
				acks = append(acks, x.ackedAt)
			}
			if x.attempts > 1 {
				f.resent++
			}
		}
		for _, a := range p.attempts {
			f.attempts++
			switch {
			case a.ok:
			case a.outcome == "refused":
				f.failed++
				f.refused++
			default:
				f.failed++
				f.noPuback++
			}
		}
		p.mu.Unlock()
	}
	slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(acks); i++ {
		f.longestGap = max(f.longestGap, acks[i].Sub(acks[i-1]))
	}
	return f
}

// storedFix is a driver_location_reported event read back from TELEMETRY.
type storedFix struct {
	Seq        uint64
	Driver     string
	RecordedAt time.Time
	Stored     time.Time // when the stream leader proposed it
	MsgID      string
}

// readFixes reads every location fix stored on TELEMETRY.
func readFixes(ctx context.Context, js jetstream.JetStream) ([]storedFix, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	filter := events.DriverLocationSubject("*")
	st, err := js.Stream(ctx, events.Telemetry.Stream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	var want uint64
	for _, n := range info.State.Subjects {
		want += n
	}
	if want == 0 {
		return nil, nil
	}
	cons, err := js.OrderedConsumer(ctx, events.Telemetry.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, err
	}
	reg := events.NewRegistry()
	prefix := events.DriverLocationSubject("")
	out := make([]storedFix, 0, want)
	for uint64(len(out)) < want {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read TELEMETRY: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			rec, err := eventstore.DecodeMessage(reg, m.Subject(), m.Headers(), m.Data(), md.Stream, md.Sequence.Stream, md.Timestamp)
			if err != nil {
				return nil, err
			}
			ev, ok := rec.Event.(events.DriverLocationReported)
			if !ok {
				return nil, fmt.Errorf("TELEMETRY seq %d on %s is a %T", rec.Seq, rec.Subject, rec.Event)
			}
			out = append(out, storedFix{Seq: rec.Seq, Driver: strings.TrimPrefix(m.Subject(), prefix), RecordedAt: ev.RecordedAt,
				Stored: md.Timestamp, MsgID: m.Headers().Get(jetstream.MsgIDHeader)})
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read TELEMETRY: %w", err)
		}
		if got == 0 {
			return nil, fmt.Errorf("read TELEMETRY: %d of %d fixes read", len(out), want)
		}
	}
	return out, nil
}

// fixKey identifies a fix: its driver and its timestamp.
type fixKey struct {
	driver string
	at     int64
}

// fixAudit is what the log says about the phones' fixes.
type fixAudit struct {
	byKey      map[fixKey][]storedFix
	duplicates int
}

// auditFixes checks that every fix a phone sent, all acknowledged by the
// end, is stored exactly once, that nothing else is stored, and that no
// Nats-Msg-Id is stored twice.
func auditFixes(t *testing.T, ld *telemetryLoad, stored []storedFix) fixAudit {
	t.Helper()
	a := fixAudit{byKey: map[fixKey][]storedFix{}}
	msgIDs := map[string]int{}
	for _, s := range stored {
		k := fixKey{s.Driver, s.RecordedAt.UnixNano()}
		a.byKey[k] = append(a.byKey[k], s)
		if s.MsgID != "" {
			msgIDs[s.MsgID]++
		}
	}
	sent := map[fixKey]bool{}
	reported := 0
	report := func(format string, args ...any) {
		if reported++; reported <= 20 {
			t.Errorf(format, args...)
		}
	}
	for _, p := range ld.phones {
		p.mu.Lock()
		for _, f := range p.fixes {
			k := fixKey{p.driver, f.at.UnixNano()}
			sent[k] = true
			if f.ackedAt.IsZero() {
				report("%s: fix %d (%s) was never acknowledged", p.driver, f.idx, f.at.Format(time.RFC3339Nano))
			}
			switch n := len(a.byKey[k]); {
			case n == 0:
				report("%s: fix %d (%s, acknowledged %v, %d attempts) is not in TELEMETRY", p.driver, f.idx, f.at.Format(time.RFC3339Nano), !f.ackedAt.IsZero(), f.attempts)
			case n > 1:
				seqs := make([]uint64, n)
				for i, s := range a.byKey[k] {
					seqs[i] = s.Seq
				}
				report("%s: fix %d stored %d times, at %v", p.driver, f.idx, n, seqs)
			}
		}
		p.mu.Unlock()
	}
	for k, ss := range a.byKey {
		a.duplicates += len(ss) - 1
		if !sent[k] {
			report("TELEMETRY seq %d holds a fix of %s at %s that no phone sent", ss[0].Seq, k.driver, time.Unix(0, k.at).UTC().Format(time.RFC3339Nano))
		}
	}
	for id, n := range msgIDs {
		if n > 1 {
			report("Nats-Msg-Id %s stored %d times", id, n)
		}
	}
	if reported > 20 {
		t.Errorf("... and %d more problems", reported-20)
	}
	return a
}

// outageFigures describe the publishes during the quorum outage.
type outageFigures struct {
	attempts, failed, acks, ackedStoredBefore, falseAcks int
	// sentDuring counts the PUBACKs in the window for publishes sent
	// after the quorum was lost (resends of fixes stored before), and
	// lastAck is how far into the window the last PUBACK came.
	sentDuring int
	lastAck    time.Duration
}

// outageAudit checks that no phone got a PUBACK, between the moment two
// of three nodes were down and the moment they were restarted, for a fix
// the log had not stored before the quorum was lost. (A PUBACK in that
// window for a fix the stream leader proposed earlier, and which is in the
// log, is a late acknowledgement of a stored fix: correct, and counted.)
func (ld *telemetryLoad) outageAudit(t *testing.T, a fixAudit, from, to time.Time) outageFigures {
	t.Helper()
	var f outageFigures
	for _, p := range ld.phones {
		p.mu.Lock()
		for _, at := range p.attempts {
			if at.start.After(from) && at.start.Before(to) {
				f.attempts++
				if !at.ok {
					f.failed++
				}
			}
			if !at.ok || at.end.Before(from) || at.end.After(to) {
				continue
			}
			f.acks++
			f.lastAck = max(f.lastAck, at.end.Sub(from))
			if at.start.After(from) {
				f.sentDuring++
			}
			fix := p.fixes[at.fix]
			ss := a.byKey[fixKey{p.driver, fix.at.UnixNano()}]
			if len(ss) > 0 && ss[0].Stored.Before(from) {
				f.ackedStoredBefore++
				continue
			}
			f.falseAcks++
			stored := "not stored"
			if len(ss) > 0 {
				stored = fmt.Sprintf("stored at seq %d, proposed %v after the quorum was lost", ss[0].Seq, ss[0].Stored.Sub(from))
			}
			t.Errorf("%s: fix %d acknowledged %v after the quorum was lost (publish sent %v after), %s",
				p.driver, at.fix, at.end.Sub(from), at.start.Sub(from), stored)
		}
		p.mu.Unlock()
	}
	return f
}

// replicasCurrent reports nil once the stream has a leader and both of
// its followers are online and current.
func replicasCurrent(ctx context.Context, js jetstream.JetStream, stream string) error {
	info, err := streamInfo(ctx, js, stream)
	if err != nil {
		return err
	}
	cl := info.Cluster
	if cl == nil || cl.Leader == "" {
		return fmt.Errorf("%s has no leader", stream)
	}
	if len(cl.Replicas) != 2 {
		return fmt.Errorf("%s has %d followers", stream, len(cl.Replicas))
	}
	for _, r := range cl.Replicas {
		if !r.Current || r.Offline {
			return fmt.Errorf("%s follower %s is not current (offline %v, lag %d)", stream, r.Name, r.Offline, r.Lag)
		}
	}
	return nil
}

func waitPhoneAcks(t *testing.T, ld *telemetryLoad, n int) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, func() error {
		ld.mu.Lock()
		err := ld.err
		ld.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if got := ld.acked(); got < n {
			return fmt.Errorf("%d of %d fixes acknowledged", got, n)
		}
		return nil
	})
}

// counterSum sums a counter's series with the given label value.
func counterSum(t *testing.T, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// phone is a driver's MQTT connection to the bridge.
type phone interface {
	// publish sends a QoS 1 message and waits for its PUBACK. The outcome
	// is "ack", "refused" (MQTT 5 failure reason code) or "no_puback".
	publish(topic string, payload []byte) (string, error)
	usable() bool
	close()
}

func dialPhone(ctx context.Context, addr string, p *telPhone) (phone, error) {
	if p.v5 {
		return dialPhone5(ctx, addr, p)
	}
	return dialPhone311(addr, p)
}

// phone311 is an MQTT 3.1.1 client (eclipse/paho.mqtt.golang).
type phone311 struct{ c mqtt3.Client }

func dialPhone311(addr string, p *telPhone) (phone, error) {
	opts := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("tel-" + p.driver).
		SetUsername(p.driver).SetPassword(p.secret).SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetKeepAlive(30 * time.Second).
		SetConnectTimeout(5 * time.Second).SetOrderMatters(false)
	c := mqtt3.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		c.Disconnect(0)
		return nil, errors.New("CONNECT timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return &phone311{c: c}, nil
}

func (p *phone311) publish(topic string, payload []byte) (string, error) {
	tok := p.c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(phonePublishTimeout) {
		return "no_puback", errors.New("no PUBACK in time")
	}
	if err := tok.Error(); err != nil {
		return "no_puback", err
	}
	return "ack", nil
}

func (p *phone311) usable() bool { return p.c.IsConnectionOpen() }
func (p *phone311) close()       { p.c.Disconnect(0) }

// phone5 is an MQTT 5 client (eclipse/paho.golang).
type phone5 struct {
	c      *paho.Client
	conn   net.Conn
	broken bool
}

func dialPhone5(ctx context.Context, addr string, p *telPhone) (phone, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ca, err := c.Connect(cctx, &paho.Connect{ClientID: "tel-" + p.driver, KeepAlive: 30, CleanStart: true,
		UsernameFlag: true, Username: p.driver, PasswordFlag: true, Password: []byte(p.secret)})
	if err != nil {
		_ = conn.Close()
		if ca != nil {
			return nil, fmt.Errorf("CONNACK %#x: %w", ca.ReasonCode, err)
		}
		return nil, err
	}
	return &phone5{c: c, conn: conn}, nil
}

func (p *phone5) publish(topic string, payload []byte) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), phonePublishTimeout)
	defer cancel()
	resp, err := p.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	switch {
	case err == nil && resp != nil && resp.ReasonCode < 0x80:
		return "ack", nil
	case resp != nil:
		if err == nil {
			err = fmt.Errorf("PUBACK reason %#x", resp.ReasonCode)
		}
		return "refused", err
	default:
		p.broken = true
		if err == nil {
			err = errors.New("no PUBACK")
		}
		return "no_puback", err
	}
}

func (p *phone5) usable() bool {
	if p.broken {
		return false
	}
	select {
	case <-p.c.Done():
		return false
	default:
		return true
	}
}

func (p *phone5) close() {
	_ = p.c.Disconnect(&paho.Disconnect{})
	_ = p.conn.Close()
}
