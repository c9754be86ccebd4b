// Package guard keeps malformed MQTT packets from crashing the broker.
//
// mochi v2.7.9 decodes packets in the connection's goroutine and recovers
// no panic, so one malformed packet kills the whole process: its issue 501,
// a truncated MQTT 5 SUBSCRIBE whose subscription options byte is missing,
// makes SubscribeDecode index past the end of the packet. Upstream fixes
// it by bounds-checking that byte (decodeByte instead of buf[offset]); the
// pinned release does not have the fix.
//
// The guard defends in two layers:
//
//   - Conn sits between the socket and mochi's reader. It frames the byte
//     stream into packets itself (fixed header, remaining length, body),
//     refuses a packet larger than the limit before reading it, and decodes
//     every packet with mochi's own decoders under recover before mochi
//     sees it. A packet that makes a decoder panic never reaches mochi: the
//     connection is closed instead.
//   - Listener wraps each connection's goroutine (mochi's attachClient:
//     CONNECT, authentication, the read loop and packet processing all run
//     in it) with a recover, so any other panic on a connection's path ends
//     that connection, not the process.
package guard

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Reasons a connection is refused, as passed to Options.OnRefused.
const (
	ReasonTooLarge     = "packet_too_large"
	ReasonBadHeader    = "malformed_fixed_header"
	ReasonDecoderPanic = "decoder_panic"
	ReasonHandlerPanic = "handler_panic"
)

// ErrRefused is returned by Conn.Read for a packet the guard refused.
var ErrRefused = errors.New("mqtt packet refused by guard")

// Options configure the guard.
type Options struct {
	// MaxPacketSize bounds a packet (fixed header byte plus remaining
	// length, as mochi counts it); 0 means no limit.
	MaxPacketSize uint32
	Log           *slog.Logger
	// OnRefused is called once per refused connection with a Reason*.
	OnRefused func(reason string)
	// OnPanic is called after a connection's goroutine panicked and was
	// recovered, with the connection, so the caller can clean up the
	// broker's state for it.
	OnPanic func(c net.Conn, recovered any)
}

// Conn validates the MQTT packets read from an underlying connection.
type Conn struct {
	net.Conn
	r       *bufio.Reader
	opts    *Options
	pending []byte
	version byte // protocol version from CONNECT; 0 before it
	err     error
}

// NewConn wraps c.
func NewConn(c net.Conn, opts *Options) *Conn {
	return &Conn{Conn: c, r: bufio.NewReaderSize(c, 4096), opts: opts}
}

// Read returns bytes of whole packets that passed validation.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if err := c.next(); err != nil {
			c.err = err
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *Conn) refuse(reason, detail string) error {
	if c.opts.Log != nil {
		c.opts.Log.Warn("malformed MQTT packet refused; closing the connection", "reason", reason, "detail", detail, "remote", c.RemoteAddr().String())
	}
	if c.opts.OnRefused != nil {
		c.opts.OnRefused(reason)
	}
	return fmt.Errorf("%w: %s: %s", ErrRefused, reason, detail)
}

// next reads, frames and validates one packet into c.pending.
func (c *Conn) next() error {
	first, err := c.r.ReadByte()
	if err != nil {
		return err
	}
	var fh packets.FixedHeader
	if err := fh.Decode(first); err != nil {
		return c.refuse(ReasonBadHeader, err.Error())
	}
	header := []byte{first}
	remaining, multiplier := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return c.refuse(ReasonBadHeader, "remaining length longer than 4 bytes")
		}
		b, err := c.r.ReadByte()
		if err != nil {
			return err
		}
		header = append(header, b)
		remaining += int(b&0x7f) * multiplier
		if b&0x80 == 0 {
			break
		}
		multiplier *= 128
	}
	if limit := c.opts.MaxPacketSize; limit > 0 && uint64(remaining)+1 > uint64(limit) {
		return c.refuse(ReasonTooLarge, fmt.Sprintf("%d bytes, limit %d", remaining+1, limit))
	}
	packet := make([]byte, len(header)+remaining)
	copy(packet, header)
	if _, err := io.ReadFull(c.r, packet[len(header):]); err != nil {
		return err
	}
	fh.Remaining = remaining
	if detail, panicked := c.tryDecode(fh, packet[len(header):]); panicked {
		return c.refuse(ReasonDecoderPanic, detail)
	}
	c.pending = packet
	return nil
}

// tryDecode decodes the packet as mochi will, on a copy, and reports a
// panic. Decoding errors are left to mochi, which answers them as the
// protocol says.
func (c *Conn) tryDecode(fh packets.FixedHeader, body []byte) (detail string, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			detail, panicked = fmt.Sprint(r), true
		}
	}()
	pk := packets.Packet{FixedHeader: fh, ProtocolVersion: c.version}
	buf := append([]byte(nil), body...)
	var err error // decoding errors are mochi's to answer; only panics matter here
	switch fh.Type {
	case packets.Connect:
		if err = pk.ConnectDecode(buf); err == nil {
			c.version = pk.ProtocolVersion
		}
	case packets.Disconnect:
		err = pk.DisconnectDecode(buf)
	case packets.Connack:
		err = pk.ConnackDecode(buf)
	case packets.Publish:
		err = pk.PublishDecode(buf)
	case packets.Puback:
		err = pk.PubackDecode(buf)
	case packets.Pubrec:
		err = pk.PubrecDecode(buf)
	case packets.Pubrel:
		err = pk.PubrelDecode(buf)
	case packets.Pubcomp:
		err = pk.PubcompDecode(buf)
	case packets.Subscribe:
		err = pk.SubscribeDecode(buf)
	case packets.Suback:
		err = pk.SubackDecode(buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeDecode(buf)
	case packets.Unsuback:
		err = pk.UnsubackDecode(buf)
	case packets.Auth:
		err = pk.AuthDecode(buf)
	}
	_ = err
	return "", false
}

// Listener wraps a mochi listener: every connection it accepts is read
// through a Conn, and its goroutine recovers from panics.
type Listener struct {
	listeners.Listener
	opts *Options
}

// Wrap returns inner guarded by opts.
func Wrap(inner listeners.Listener, opts Options) *Listener {
	return &Listener{Listener: inner, opts: &opts}
}

// Serve serves the inner listener with a guarded establish function.
func (l *Listener) Serve(establish listeners.EstablishFn) {
	l.Listener.Serve(func(id string, c net.Conn) (err error) {
		gc := NewConn(c, l.opts)
		defer func() {
			if r := recover(); r != nil {
				if l.opts.Log != nil {
					l.opts.Log.Error("panic on an MQTT connection recovered; connection closed", "panic", fmt.Sprint(r), "remote", c.RemoteAddr().String(), "stack", string(debug.Stack()))
				}
				if l.opts.OnRefused != nil {
					l.opts.OnRefused(ReasonHandlerPanic)
				}
				_ = gc.Close()
				if l.opts.OnPanic != nil {
					l.opts.OnPanic(gc, r)
				}
				err = fmt.Errorf("recovered panic: %v", r)
			}
		}()
		return establish(id, gc)
	})
}
