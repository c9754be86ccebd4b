package app

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/mqttbridge/internal/device"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"
)

var errNotAuthorizedCode = packets.ErrNotAuthorized

// Hook is the bridge's mochi hook. It authenticates devices, enforces the
// ACL and the per-connection rate, turns device publishes into commands
// and telemetry before mochi acknowledges them, and sets a driver Offline
// when its phone drops off.
type Hook struct {
	mqtt.HookBase
	b *Bridge
	// MaxPacketBytes is announced to MQTT 5 clients in CONNACK.
	MaxPacketBytes uint32
}

// NewHook returns the hook of b.
func NewHook(b *Bridge, maxPacketBytes uint32) *Hook {
	return &Hook{b: b, MaxPacketBytes: maxPacketBytes}
}

// ID names the hook.
func (h *Hook) ID() string { return "pizza-bridge" }

// Provides lists the events the hook handles.
func (h *Hook) Provides(e byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablish, mqtt.OnACLCheck,
		mqtt.OnSubscribed, mqtt.OnPublish, mqtt.OnDisconnect, mqtt.OnPacketEncode,
	}, []byte{e})
}

// OnConnect authenticates the device (username = device id, password =
// its secret), refuses a client id held by another device, and checks the
// will topic. A refusal is answered with CONNACK here.
func (h *Hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	b := h.b
	refuse := func(reason string, code packets.Code) error {
		b.metrics.ConnectsRefused.WithLabelValues(reason).Inc()
		b.log.Warn("MQTT connection refused", "reason", reason, "client_id", cl.ID, "username", string(pk.Connect.Username), "remote", cl.Net.Remote)
		ack := code
		if cl.Properties.ProtocolVersion < 5 && code == packets.ErrNotAuthorized {
			ack = packets.Err3NotAuthorized // mochi maps no v5 code to it
		}
		_ = b.server.SendConnack(cl, ack, false, nil)
		return code
	}
	username := string(pk.Connect.Username)
	if !pk.Connect.UsernameFlag || username == "" {
		return refuse("anonymous", packets.ErrNotAuthorized)
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.CommandTimeout)
	defer cancel()
	kind, rev, ok, err := b.creds.Verify(ctx, username, string(pk.Connect.Password))
	if err != nil {
		b.log.Error("credential store unavailable; refusing the connection", "device_id", username, "err", err)
		return refuse("auth_unavailable", packets.ErrServerUnavailable)
	}
	if !ok {
		return refuse("bad_credentials", packets.ErrBadUsernameOrPassword)
	}
	if existing, found := b.server.Clients.Get(cl.ID); found && string(existing.Properties.Username) != username {
		return refuse("takeover", packets.ErrNotAuthorized)
	}
	who := device.Identity{Kind: kind, ID: username}
	if pk.Connect.WillFlag && !device.CanPublish(who, pk.Connect.WillTopic, b.owns) {
		return refuse("will_not_allowed", packets.ErrNotAuthorized)
	}
	s := &session{who: who, credRev: rev}
	if b.opts.RatePerSecond >= 0 {
		s.limiter = rate.NewLimiter(rate.Limit(b.opts.RatePerSecond), b.opts.RateBurst)
	}
	b.mu.Lock()
	b.sessions[cl] = s
	b.mu.Unlock()
	return nil
}

// OnConnectAuthenticate admits the connections OnConnect authenticated.
func (h *Hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return h.b.session(cl) != nil
}

// OnSessionEstablish records the connection as the device's newest. It
// runs before mochi takes over an older session with the same client id,
// so that session's disconnection is known not to be the device's last.
func (h *Hook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if s := h.b.session(cl); s != nil {
		h.b.mu.Lock()
		h.b.latest[s.who.ID] = cl
		h.b.mu.Unlock()
		h.b.log.Info("device connected", "device_id", s.who.ID, "kind", s.who.Kind, "client_id", cl.ID, "protocol", cl.Properties.ProtocolVersion, "remote", cl.Net.Remote)
	}
}

// OnACLCheck applies the device ACL to publishes, subscriptions and every
// delivery of a message to a subscriber.
func (h *Hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	s := h.b.session(cl)
	if s == nil {
		return false
	}
	if write {
		ok := device.CanPublish(s.who, topic, h.b.owns)
		if !ok {
			h.b.metrics.ACLDenied.WithLabelValues("publish").Inc()
			h.b.log.Warn("publish refused by ACL", "device_id", s.who.ID, "topic", topic)
		}
		return ok
	}
	return device.CanSubscribe(s.who, topic, h.b.owns)
}

// OnSubscribed counts refused subscriptions.
func (h *Hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	for i, c := range codes {
		if c >= packets.ErrUnspecifiedError.Code && i < len(pk.Filters) {
			h.b.metrics.ACLDenied.WithLabelValues("subscribe").Inc()
			h.b.log.Warn("subscription refused", "client_id", cl.ID, "username", string(cl.Properties.Username), "filter", pk.Filters[i].Filter, "code", c)
		}
	}
}

// OnPacketEncode announces the maximum packet size to MQTT 5 clients.
func (h *Hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.ReasonCode == 0 && h.MaxPacketBytes > 0 {
		pk.Properties.MaximumPacketSize = h.MaxPacketBytes
	}
	return pk
}

// OnPublish handles a device publish before mochi acknowledges it: the
// PUBACK of a QoS 1 message is sent only if this returns no error, so the
// append to the log happens here, synchronously.
//
// Outcomes:
//   - stored: mochi acknowledges it (and relays it to permitted subscribers);
//   - invalid payload, refused downstream, too large or over the rate:
//     MQTT 5 gets a PUBACK with a failure reason code; MQTT 3.1.1, which
//     has none, gets its PUBACK and the message is dropped (resending it
//     would fail the same way);
//   - log unavailable: MQTT 5 gets a PUBACK with reason 0x83; an MQTT 3.1.1
//     client gets no PUBACK and is disconnected, so that it sends again.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	b := h.b
	s := b.session(cl)
	if s == nil {
		return pk, packets.ErrRejectPacket
	}
	topic := device.ParseTopic(pk.TopicName)
	kind := topic.Kind.String()
	if s.limiter != nil && !s.limiter.AllowN(b.clock(), 1) {
		b.metrics.Messages.WithLabelValues(kind, "rate_limited").Inc()
		b.log.Warn("device over its message rate; publish dropped", "device_id", s.who.ID, "topic", pk.TopicName, "rate_per_second", b.opts.RatePerSecond)
		return h.refuse(cl, pk, packets.ErrQuotaExceeded, "message rate exceeded")
	}
	if len(pk.Payload) > b.opts.MaxPayloadBytes {
		b.metrics.Messages.WithLabelValues(kind, "too_large").Inc()
		b.log.Warn("payload too large; publish refused", "device_id", s.who.ID, "topic", pk.TopicName, "bytes", len(pk.Payload), "limit", b.opts.MaxPayloadBytes)
		return h.refuse(cl, pk, packets.ErrPayloadFormatInvalid, "payload too large")
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.CommandTimeout)
	defer cancel()
	start := time.Now()
	err := b.ingest(ctx, s.who, topic, pk.TopicName, pk.Payload)
	var inv *device.InvalidPayloadError
	var rej *RejectedError
	switch {
	case err == nil:
		b.metrics.Messages.WithLabelValues(kind, "accepted").Inc()
		b.log.Debug("device publish stored", "device_id", s.who.ID, "topic", pk.TopicName, "qos", pk.FixedHeader.Qos, "took", time.Since(start))
		pk.FixedHeader.Retain = false // the log keeps history, not the broker
		return pk, nil
	case errors.As(err, &inv):
		b.metrics.Messages.WithLabelValues(kind, "invalid").Inc()
		b.log.Warn("invalid device payload refused", "device_id", s.who.ID, "topic", pk.TopicName, "err", err)
		return h.refuse(cl, pk, packets.ErrPayloadFormatInvalid, inv.Error())
	case errors.As(err, &rej):
		b.metrics.Messages.WithLabelValues(kind, "rejected").Inc()
		b.log.Warn("device publish refused by its owner service", "device_id", s.who.ID, "topic", pk.TopicName, "status", rej.Problem.Status, "err", err)
		code := packets.ErrImplementationSpecificError
		if rej.Problem.Status == 404 || rej.Problem.Status == 422 || rej.Problem.Status == 400 {
			code = packets.ErrPayloadFormatInvalid
		}
		return h.refuse(cl, pk, code, rej.Problem.Error())
	default:
		b.metrics.Messages.WithLabelValues(kind, "unavailable").Inc()
		b.log.Error("event log unavailable; publish not acknowledged", "device_id", s.who.ID, "topic", pk.TopicName, "qos", pk.FixedHeader.Qos, "err", err)
		if cl.Properties.ProtocolVersion == 5 {
			return h.refuse(cl, pk, packets.Code{Code: packets.ErrImplementationSpecificError.Code, Reason: "event log unavailable; publish again"}, "")
		}
		if pk.FixedHeader.Qos > 0 {
			// MQTT 3.1.1 has no negative acknowledgement and mochi would
			// acknowledge an error: no PUBACK, and the connection ends so
			// that the client sends the message again.
			s.kicked.Store(true)
			cl.Stop(packets.ErrServerUnavailable)
		}
		return pk, packets.ErrRejectPacket
	}
}

// refuse answers a refused publish: a PUBACK with a failure reason code
// for MQTT 5 at QoS 1, nothing at QoS 0, and for MQTT 3.1.1 (which has no
// reason codes) an acknowledgement of a dropped message.
func (h *Hook) refuse(cl *mqtt.Client, pk packets.Packet, code packets.Code, reason string) (packets.Packet, error) {
	if cl.Properties.ProtocolVersion < 5 {
		return pk, packets.CodeSuccessIgnore
	}
	if pk.FixedHeader.Qos > 0 {
		if reason == "" {
			reason = code.Reason
		}
		if len(reason) > 200 {
			reason = reason[:200]
		}
		ack := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Puback},
			PacketID:    pk.PacketID,
			ReasonCode:  code.Code,
			Properties:  packets.Properties{ReasonString: reason},
		}
		if err := cl.WritePacket(ack); err != nil {
			h.b.log.Debug("negative PUBACK not sent", "client_id", cl.ID, "err", err)
		}
	}
	return pk, packets.ErrRejectPacket
}

// OnDisconnect forgets the connection and, when a driver's phone dropped
// off without saying goodbye (no DISCONNECT: network loss, keep-alive
// timeout, crash), sets the driver Offline. This is the platform's last
// will: it works whether or not the phone registered an MQTT will. It is
// skipped when a newer connection of the same driver exists, when the
// bridge itself closed the connection, and while the bridge shuts down.
func (h *Hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	b := h.b
	b.mu.Lock()
	s := b.sessions[cl]
	delete(b.sessions, cl)
	newest := false
	if s != nil && b.latest[s.who.ID] == cl {
		newest = true
		delete(b.latest, s.who.ID)
	}
	b.mu.Unlock()
	if s == nil {
		return
	}
	b.log.Info("device disconnected", "device_id", s.who.ID, "client_id", cl.ID, "err", err)
	if s.who.Kind != mqttapi.KindDriver || err == nil || !newest || s.kicked.Load() || b.stopping.Load() ||
		errors.Is(err, packets.ErrSessionTakenOver) || errors.Is(err, packets.ErrServerShuttingDown) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.CommandTimeout)
	defer cancel()
	var reply driversapi.CommandReply
	cmd := driversapi.StatusCommand{DriverID: s.who.ID, Status: driversapi.StatusOffline, CommandMeta: driversapi.CommandMeta{CorrelationID: s.who.ID}}
	if rerr := b.request(ctx, driversapi.SubjectStatus, cmd, &reply); rerr != nil {
		b.metrics.DriversOffline.WithLabelValues("failed").Inc()
		b.log.Warn("driver's phone dropped off; setting it Offline failed", "driver_id", s.who.ID, "cause", err, "err", rerr)
		return
	}
	b.metrics.DriversOffline.WithLabelValues("ok").Inc()
	b.log.Info("driver's phone dropped off; driver set Offline", "driver_id", s.who.ID, "cause", err, "seq", reply.Seq)
}
