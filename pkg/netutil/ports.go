// Package netutil holds the network helpers shared by the in-process
// platforms (pizza dev --regions) and the tests.
package netutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// FreePorts finds n distinct ports on host that can be bound now, for
// servers that must know each other's addresses before any of them starts
// (routes and gateways name their peers' ports in their configuration).
//
// The ports are drawn from below the kernel's ephemeral range. A port the
// kernel hands out for ":0" is also the next candidate for the local end of
// an outgoing connection, so between our probe and the server's bind another
// process's client connection could take it, and nats-server does not stop
// when its cluster or gateway listener fails to bind: it runs without it,
// quietly. Below the ephemeral range only another explicit bind can collide.
func FreePorts(host string, n int) ([]int, error) {
	if host == "" {
		host = "127.0.0.1"
	}
	low := ephemeralLow()
	const floor = 10000
	if low-floor < 1000 {
		low = floor + 1000
	}
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts > 1000 {
			return nil, fmt.Errorf("netutil: no free port in [%d, %d) on %s", floor, low, host)
		}
		port := floor + rand.IntN(low-floor)
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, port)
	}
	return ports, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux;
// elsewhere the IANA range's start).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				return v
			}
		}
	}
	return 49152
}
