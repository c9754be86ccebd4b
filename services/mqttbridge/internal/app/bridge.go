// Package app is the bridge between the embedded MQTT broker and the
// platform: the broker hook (authentication, ACL, limits, ingest of device
// publishes, last will), the consumer that sends assignments and ETAs to
// devices, the credentials command and the kitchen-telemetry projector.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/mqttbridge/internal/device"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// Options are the bridge's settings (see mqttbridge.Config).
type Options struct {
	Keyspace        string
	MaxPayloadBytes int
	// RatePerSecond and RateBurst shape each connection's publishes (token
	// bucket); RatePerSecond < 0 disables the limit.
	RatePerSecond  float64
	RateBurst      int
	CommandTimeout time.Duration
	// OutboundMaxAge: DRIVERS events older than this are not sent to
	// devices (a new consumer replays history; phones need the present).
	OutboundMaxAge time.Duration
}

// Bridge holds what the hook, the consumer and the endpoints share.
type Bridge struct {
	opts    Options
	nc      *nats.Conn
	js      jetstream.JetStream
	pub     jetstream.JetStream // async telemetry appends (append)
	rdb     *redis.Client
	creds   *Credentials
	drivers *eventstore.Store // DRIVERS: is a driver registered?
	log     *slog.Logger
	clock   func() time.Time
	metrics *Metrics
	server  *mqtt.Server

	stopping atomic.Bool

	// known holds the ids of drivers found registered on DRIVERS. Drivers
	// are never removed, so an id stays known for the bridge's lifetime.
	known sync.Map

	mu       sync.Mutex
	sessions map[*mqtt.Client]*session
	latest   map[string]*mqtt.Client // device id -> its newest connection
	orders   map[string]string       // order id -> driver holding it (from DRIVERS)
}

// session is what the bridge knows of one authenticated connection.
type session struct {
	who     device.Identity
	credRev uint64
	limiter *rate.Limiter
	// kicked is set when the bridge closes the connection on purpose (log
	// unavailable, credential revoked): no last will for it.
	kicked atomic.Bool
}

// NewBridge returns a bridge; attach it to a broker with SetServer and
// register Hook.
func NewBridge(opts Options, nc *nats.Conn, js jetstream.JetStream, rdb *redis.Client, creds *Credentials, drivers *eventstore.Store, log *slog.Logger, clock func() time.Time, m *Metrics) *Bridge {
	// The async publisher's ack timeout drops a pending ack whose waiter
	// gave up, so that it does not hold a slot of the window.
	pub, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(AppendWindow), jetstream.WithPublishAsyncTimeout(max(opts.CommandTimeout, time.Second)))
	if err != nil {
		pub = js
	}
	return &Bridge{pub: pub, opts: opts, nc: nc, js: js, rdb: rdb, creds: creds, drivers: drivers, log: log, clock: clock, metrics: m,
		sessions: map[*mqtt.Client]*session{}, latest: map[string]*mqtt.Client{}, orders: map[string]string{}}
}

// SetServer gives the bridge the broker it serves.
func (b *Bridge) SetServer(s *mqtt.Server) { b.server = s }

// SetStopping marks the bridge as shutting down: disconnections from now
// on are the bridge's doing, not the drivers' (no Offline status).
func (b *Bridge) SetStopping() { b.stopping.Store(true) }

func (b *Bridge) session(cl *mqtt.Client) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[cl]
}

// Forget drops the state of a connection whose goroutine died (the guard
// recovered a panic on it): mochi's own clean-up after its read loop did
// not run.
func (b *Bridge) Forget(conn any) {
	if b.server == nil {
		return
	}
	for _, cl := range b.server.Clients.GetAll() {
		if cl.Net.Conn != conn {
			continue
		}
		cl.Stop(errors.New("connection goroutine panicked"))
		b.server.UnsubscribeClient(cl)
		cl.ClearInflights()
		b.server.Clients.Delete(cl.ID)
		b.mu.Lock()
		if s := b.sessions[cl]; s != nil {
			delete(b.sessions, cl)
			if b.latest[s.who.ID] == cl {
				delete(b.latest, s.who.ID)
			}
		}
		b.mu.Unlock()
	}
}

// Revoked ends the sessions of a device authenticated with a credential
// older than rev (a new secret was issued).
func (b *Bridge) Revoked(deviceID string, rev uint64) {
	b.mu.Lock()
	var victims []*mqtt.Client
	for cl, s := range b.sessions {
		if s.who.ID == deviceID && s.credRev < rev {
			s.kicked.Store(true)
			victims = append(victims, cl)
		}
	}
	b.mu.Unlock()
	for _, cl := range victims {
		b.log.Info("credential revoked; disconnecting the device's session", "device_id", deviceID, "client_id", cl.ID)
		if cl.Properties.ProtocolVersion == 5 && b.server != nil {
			_ = b.server.DisconnectClient(cl, errNotAuthorizedCode)
		} else {
			cl.Stop(errNotAuthorizedCode)
		}
	}
}

// setOrder remembers which driver holds an order ("" forgets it).
func (b *Bridge) setOrder(orderID, driverID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if driverID == "" {
		delete(b.orders, orderID)
		return
	}
	b.orders[orderID] = driverID
}

// owns reports whether driverID holds orderID: from the assignments this
// bridge has seen, else from the drivers read model in Redis.
func (b *Bridge) owns(orderID, driverID string) bool {
	b.mu.Lock()
	holder, known := b.orders[orderID]
	b.mu.Unlock()
	if known {
		return holder == driverID
	}
	if b.rdb == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	raw, err := b.rdb.Get(ctx, driversapi.DeliveryKey(b.opts.Keyspace, orderID)).Bytes()
	if err != nil {
		return false
	}
	var v driversapi.DeliveryView
	if json.Unmarshal(raw, &v) != nil || v.DriverID == nil {
		return false
	}
	return *v.DriverID == driverID && (v.Status == driversapi.DeliveryAssigned || v.Status == driversapi.DeliveryPickedUp)
}
