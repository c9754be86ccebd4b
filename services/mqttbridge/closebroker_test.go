package mqttbridge_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/mqttbridge"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// bareBroker runs a Mochi broker that lets anyone in, on a random port.
func bareBroker(t *testing.T) (*mqtt.Server, string) {
	t.Helper()
	s := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(listeners.NewNet("t", l)); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	return s, l.Addr().String()
}

// TestCloseBrokerClosesWhileClientsLeave: clients disconnecting while the
// broker closes (the moment Mochi's Close can deadlock, and did in the
// benchmark) end with the broker closed and every client disconnected.
func TestCloseBrokerClosesWhileClientsLeave(t *testing.T) {
	s, addr := bareBroker(t)
	var clients []mqtt3.Client
	for i := range 40 {
		c := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("leaver-%d", i)).
			SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetConnectTimeout(5 * time.Second))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("client %d: %v", i, tok.Error())
		}
		clients = append(clients, c)
	}
	for _, c := range clients[:20] {
		go c.Disconnect(0) // half leave on their own as the broker closes
	}
	if err := mqttbridge.CloseBroker(s, 10*time.Second, "t"); err != nil {
		t.Fatalf("CloseBroker: %v", err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		for i, c := range clients {
			if c.IsConnectionOpen() {
				return fmt.Errorf("client %d still connected", i)
			}
		}
		return nil
	})
}

// TestCloseBrokerStopsReconnectingClients: phones that reconnect at once
// (as the simulator's do) find the listener closed, so closing does not
// wait for its limit.
func TestCloseBrokerStopsReconnectingClients(t *testing.T) {
	s, addr := bareBroker(t)
	for i := range 10 {
		c := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("stayer-%d", i)).
			SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(10 * time.Millisecond).SetMaxReconnectInterval(20 * time.Millisecond).
			SetCleanSession(true).SetConnectTimeout(time.Second))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("client %d: %v", i, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(0) })
	}
	start := time.Now()
	if err := mqttbridge.CloseBroker(s, 20*time.Second, "t"); err != nil {
		t.Fatalf("CloseBroker: %v", err)
	}
	// Without the listener closed first, the phones are back before the
	// client map settles, and closing waits for its whole limit.
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("CloseBroker took %s: it waited for reconnecting phones", took)
	}
}

// TestCloseBrokerGivesUpOnAStuckBroker: with the clients' lock held (the
// state Mochi's deadlock leaves behind), CloseBroker returns
// ErrBrokerStuck after its limit instead of hanging the shutdown.
func TestCloseBrokerGivesUpOnAStuckBroker(t *testing.T) {
	s, _ := bareBroker(t)
	s.Clients.Lock()
	start := time.Now()
	err := mqttbridge.CloseBroker(s, 300*time.Millisecond)
	took := time.Since(start)
	s.Clients.Unlock()
	if !errors.Is(err, mqttbridge.ErrBrokerStuck) {
		t.Fatalf("CloseBroker on a stuck broker: %v, want ErrBrokerStuck", err)
	}
	if took > 5*time.Second {
		t.Fatalf("CloseBroker took %s with a limit of 300ms", took)
	}
}
