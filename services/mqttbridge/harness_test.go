package mqttbridge_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/drivers"
	"github.com/awesome-pizza/pizza/services/kitchen"
	"github.com/awesome-pizza/pizza/services/mqttbridge"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
	paho "github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// The seeded catalogue's restaurants and drivers.
const (
	downtown = "downtown"
	d1       = "downtown-driver-1"
	d2       = "downtown-driver-2"
	d3       = "downtown-driver-3"
	p1       = "pearl-driver-1"
)

const waitTimeout = 10 * time.Second

func testLogger() *slog.Logger {
	if os.Getenv("MQTT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// harness runs the bridge and a real drivers service against an
// in-process JetStream and the real Redis.
type harness struct {
	t       testing.TB
	nc      *nats.Conn
	js      jetstream.JetStream
	rdb     *redis.Client
	ks      string
	metrics *prometheus.Registry
	drivers *drivers.Service
	bridge  *mqttbridge.Service
	addr    string
	secrets map[string]string
}

func newHarness(t testing.TB, cfg mqttbridge.Config) *harness {
	t.Helper()
	return newHarnessOn(t, cfg, testkit.RunJetStream(t), nil)
}

// newHarnessOn is newHarness on a given nats-server (one a test restarts);
// prepare, if set, runs on the provisioned log before any service starts.
func newHarnessOn(t testing.TB, cfg mqttbridge.Config, ns *server.Server, prepare func(jetstream.JetStream)) *harness {
	t.Helper()
	nc := testkit.Connect(t, ns)
	js := testkit.JetStream(t, nc)
	ctx := context.Background()
	if err := eventstore.Provision(ctx, js, eventstore.StreamOptions{}, events.DomainContexts()...); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(js)
	}
	rdb, ks := testkit.Redis(t)
	h := &harness{t: t, nc: nc, js: js, rdb: rdb, ks: ks, metrics: prometheus.NewRegistry()}
	h.startDrivers()
	cfg.Keyspace = ks
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 60
	}
	svc, err := mqttbridge.New(cfg, mqttbridge.Deps{NC: nc, JS: js, Redis: rdb, Catalog: catalog.Default(), Log: testLogger(), Metrics: h.metrics})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Stop)
	h.bridge, h.addr = svc, svc.Addr().String()
	testkit.Eventually(t, waitTimeout, func() error { return svc.Ready(ctx) })
	h.secrets, err = svc.SeedDemoCredentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// startBridge starts another bridge instance on the harness's log and
// Redis, and returns a harness whose clients connect to it.
func (h *harness) startBridge() *harness {
	h.t.Helper()
	ctx := context.Background()
	svc, err := mqttbridge.New(mqttbridge.Config{Keyspace: h.ks, Addr: "127.0.0.1:0", TimeScale: 60},
		mqttbridge.Deps{NC: h.nc, JS: h.js, Redis: h.rdb, Catalog: catalog.Default(), Log: testLogger(), Metrics: prometheus.NewRegistry()})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(svc.Stop)
	testkit.Eventually(h.t, waitTimeout, func() error { return svc.Ready(ctx) })
	other := *h
	other.bridge, other.addr = svc, svc.Addr().String()
	return &other
}

// startDrivers starts a drivers service on the same log and Redis.
func (h *harness) startDrivers() {
	h.t.Helper()
	svc, err := drivers.New(drivers.Config{Keyspace: h.ks, TimeScale: 60}, drivers.Deps{NC: h.nc, JS: h.js, Redis: h.rdb, Catalog: catalog.Default(), Log: testLogger()})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(svc.Stop)
	h.drivers = svc
	testkit.Eventually(h.t, waitTimeout, func() error { return svc.Ready(context.Background()) })
}

// startKitchen starts a kitchen service on the same log and Redis (the
// owner of the alerts kitchen devices raise).
func (h *harness) startKitchen() *kitchen.Service {
	h.t.Helper()
	svc, err := kitchen.New(kitchen.Config{Keyspace: h.ks, TimeScale: 60}, kitchen.Deps{NC: h.nc, JS: h.js, Redis: h.rdb, Catalog: catalog.Default(), Log: testLogger()})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	if err := svc.Start(ctx); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(svc.Stop)
	testkit.Eventually(h.t, waitTimeout, func() error { return svc.Ready(context.Background()) })
	return svc
}

// call sends a command; a typed error reply comes back as its problem.
func (h *harness) call(subject string, cmd, out any) (*problem.Problem, error) {
	data, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	msg, err := h.nc.Request(subject, data, waitTimeout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", subject, err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		var p problem.Problem
		if err := json.Unmarshal(msg.Data, &p); err != nil {
			return nil, fmt.Errorf("%s: error %s without a problem document: %q", subject, code, msg.Data)
		}
		return &p, nil
	}
	return nil, json.Unmarshal(msg.Data, out)
}

// counter sums a counter's series whose labels include want.
func (h *harness) counter(name string, want map[string]string) float64 {
	mfs, err := h.metrics.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metric
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// telemetry reads every message stored on TELEMETRY under filter.
func (h *harness) telemetry(filter string) []eventstore.Record {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	st, err := h.js.Stream(ctx, events.Telemetry.Stream)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		h.t.Fatal(err)
	}
	var want uint64
	for _, n := range info.State.Subjects {
		want += n
	}
	if want == 0 {
		return nil
	}
	cons, err := h.js.OrderedConsumer(ctx, events.Telemetry.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		h.t.Fatal(err)
	}
	reg := mqttapi.NewRegistry()
	var out []eventstore.Record
	for uint64(len(out)) < want {
		batch, err := cons.Fetch(int(min(want-uint64(len(out)), 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			h.t.Fatalf("reading TELEMETRY after %d of %d: %v", len(out), want, err)
		}
		n := len(out)
		for m := range batch.Messages() {
			md, _ := m.Metadata()
			rec, err := eventstore.DecodeMessage(reg, m.Subject(), m.Headers(), m.Data(), md.Stream, md.Sequence.Stream, md.Timestamp)
			if err != nil {
				h.t.Fatal(err)
			}
			out = append(out, rec)
		}
		if err := batch.Error(); err != nil || len(out) == n {
			h.t.Fatalf("reading TELEMETRY after %d of %d: %v", len(out), want, err)
		}
	}
	return out
}

// plantCredential writes a device credential straight into the bucket, as
// the issuer would store it but without its checks, and returns the
// secret.
func (h *harness) plantCredential(deviceID, kind string) string {
	h.t.Helper()
	ctx := context.Background()
	kv, err := h.js.KeyValue(ctx, mqttapi.CredentialsBucket)
	if err != nil {
		h.t.Fatal(err)
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	secret := rand.Text()
	sum := sha256.Sum256(append(append([]byte(nil), salt...), secret...))
	rec, _ := json.Marshal(map[string]any{"kind": kind, "algorithm": "sha256-salted", "salt": base64.StdEncoding.EncodeToString(salt),
		"hash": base64.StdEncoding.EncodeToString(sum[:]), "issuedAt": time.Now().UTC()})
	if _, err := kv.Put(ctx, deviceID, rec); err != nil {
		h.t.Fatal(err)
	}
	return secret
}

// --- MQTT 3.1.1 clients (eclipse/paho.mqtt.golang) ---

type v3Client struct {
	mqtt3.Client
	mu       sync.Mutex
	received map[string][][]byte
}

func (h *harness) connectV3(clientID, user, secret string) (*v3Client, error) {
	c := &v3Client{received: map[string][][]byte{}}
	opts := mqtt3.NewClientOptions().AddBroker("tcp://" + h.addr).SetClientID(clientID).SetUsername(user).SetPassword(secret).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetKeepAlive(30 * time.Second).
		SetConnectTimeout(5 * time.Second).SetOrderMatters(false).SetProtocolVersion(4).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) {
			c.mu.Lock()
			c.received[m.Topic()] = append(c.received[m.Topic()], m.Payload())
			c.mu.Unlock()
		})
	c.Client = mqtt3.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitTimeout) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	h.t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func (c *v3Client) messages(topic string) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.received[topic]...)
}

// publish sends at QoS q and waits for the acknowledgement.
func (c *v3Client) publish(topic string, q byte, payload any) error {
	tok := c.Publish(topic, q, false, body(payload))
	if !tok.WaitTimeout(waitTimeout) {
		return errors.New("no PUBACK")
	}
	return tok.Error()
}

// --- MQTT 5 clients (eclipse/paho.golang) ---

type v5Client struct {
	*paho.Client
	mu       sync.Mutex
	received map[string][][]byte
	conn     net.Conn
}

func (h *harness) connectV5(clientID, user, secret string) (*v5Client, *paho.Connack, error) {
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		return nil, nil, err
	}
	c := &v5Client{received: map[string][][]byte{}, conn: conn}
	c.Client = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			c.mu.Lock()
			c.received[pr.Packet.Topic] = append(c.received[pr.Packet.Topic], pr.Packet.Payload)
			c.mu.Unlock()
			return true, nil
		},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cp := &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true}
	if user != "" {
		cp.UsernameFlag, cp.Username = true, user
		cp.PasswordFlag, cp.Password = true, []byte(secret)
	}
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		return nil, ca, err
	}
	h.t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ca, nil
}

func (c *v5Client) messages(topic string) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.received[topic]...)
}

// publish sends at QoS q; for QoS 1 it returns the PUBACK's reason code
// (an error for a failure code).
func (c *v5Client) publish(topic string, q byte, payload any) (byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: q, Payload: body(payload)})
	if resp != nil {
		return resp.ReasonCode, err
	}
	return 0, err
}

func body(payload any) []byte {
	switch p := payload.(type) {
	case []byte:
		return p
	case string:
		return []byte(p)
	default:
		b, _ := json.Marshal(p)
		return b
	}
}
