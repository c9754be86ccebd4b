package guard

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func connectV5(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "c"}}
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// read feeds input through a guarded connection and returns what the
// broker would read, with the error that ended it.
func read(t *testing.T, opts Options, input []byte) ([]byte, error) {
	t.Helper()
	client, server := net.Pipe()
	go func() {
		_, _ = client.Write(input)
		_ = client.Close()
	}()
	var refused []string
	opts.OnRefused = func(r string) { refused = append(refused, r) }
	g := NewConn(server, &opts)
	out, err := io.ReadAll(g)
	if err == nil && len(refused) > 0 {
		t.Fatalf("refused %v without an error", refused)
	}
	return out, err
}

func TestGuard(t *testing.T) {
	connect := connectV5(t)
	ping := []byte{packets.Pingreq << 4, 0}
	truncatedSubscribe := []byte{0x82, 0x08, 0x00, 0x01, 0x00, 0x00, 0x03, 'a', '/', 'b'}
	wholeSubscribe := []byte{0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x03, 'a', '/', 'b', 0x01}
	tests := []struct {
		name    string
		opts    Options
		input   []byte
		passed  []byte // what reaches the broker
		refused bool
	}{
		{"valid packets pass unchanged", Options{}, concat(connect, wholeSubscribe, ping), concat(connect, wholeSubscribe, ping), false},
		{"issue 501 refused", Options{}, concat(connect, truncatedSubscribe, ping), connect, true},
		{"too large refused before reading it", Options{MaxPacketSize: 8}, concat(ping, wholeSubscribe), ping, true},
		{"remaining length over 4 bytes", Options{}, []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, nil, true},
		{"bad flags", Options{}, []byte{0x33 | 0x06, 0x00}, nil, true},
		{"a truncated stream is just EOF", Options{}, concat(connect, []byte{0x30, 0x10, 0x00}), connect, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := read(t, tt.opts, tt.input)
			if tt.refused != errors.Is(err, ErrRefused) {
				t.Fatalf("err %v, refused %v", err, tt.refused)
			}
			if !bytes.Equal(out, tt.passed) {
				t.Fatalf("passed % x, want % x", out, tt.passed)
			}
		})
	}
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
