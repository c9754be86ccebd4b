package mqttbridge

import (
	"errors"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// ErrBrokerStuck: the broker did not close within its limit (see
// CloseBroker).
var ErrBrokerStuck = errors.New("mqtt broker did not close in time")

// brokerSettle is how long the broker's client map must stay unchanged,
// with no client connected, before the broker is closed.
const brokerSettle = 100 * time.Millisecond

// CloseBroker closes a Mochi broker without hanging on its known deadlock.
//
// Mochi v2.7.9 closes each listener's clients through
// Clients.GetByListener, which takes the clients' read lock twice
// (mochi-mqtt/server#488, fixed in no release). If a client connects or
// goes away between the two, the writer waits for the first read lock
// and the second waits for the writer: Close never returns, and nor does
// any later client operation. It happened when the benchmark closed its
// bare broker just after its 1,200 clients disconnected.
//
// So CloseBroker:
//  1. closes the listeners named by listenerIDs with a closer that does
//     nothing: they stop accepting (a phone that reconnects at once finds
//     no one), and Close will not close their clients again, so it never
//     calls GetByListener;
//  2. disconnects every client itself, through Clients.GetAll, which
//     locks once;
//  3. waits until no client is connected and the client map has stopped
//     changing, and calls Close, which now only waits for the clients'
//     connections to end.
//
// The whole procedure is bounded: after limit CloseBroker returns
// ErrBrokerStuck (the procedure goes on in the background), so a
// shutdown goes on. A listener left out of listenerIDs is closed by
// Close, through GetByListener.
func CloseBroker(s *mqtt.Server, limit time.Duration, listenerIDs ...string) error {
	closed := make(chan error, 1)
	go func() { closed <- closeBroker(s, time.Now().Add(limit-brokerSettle), listenerIDs) }()
	wait := time.NewTimer(limit)
	defer wait.Stop()
	select {
	case err := <-closed:
		return err
	case <-wait.C:
		return ErrBrokerStuck
	}
}

// closeBroker stops the listeners accepting, disconnects the clients,
// waits (until deadline at most) until none is connected and the client
// map has stopped changing, and closes the broker.
func closeBroker(s *mqtt.Server, deadline time.Time, listenerIDs []string) error {
	for _, id := range listenerIDs {
		s.Listeners.Close(id, func(string) {})
	}
	for _, cl := range s.Clients.GetAll() {
		if !cl.Closed() {
			_ = s.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last, since := -1, time.Now()
	for time.Now().Before(deadline) {
		all := s.Clients.GetAll()
		open := 0
		for _, cl := range all {
			if !cl.Closed() {
				open++
			}
		}
		if len(all) != last {
			last, since = len(all), time.Now()
		}
		if open == 0 && time.Since(since) >= brokerSettle {
			break
		}
		<-tick.C
	}
	return s.Close()
}
