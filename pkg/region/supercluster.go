package region

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/netutil"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// FreeAddrs gives every server of the plan's topology loopback (or host)
// addresses on ports that are free now (netutil.FreePorts). Another process could
// still bind one first; StartSupercluster then reports the missing listener.
func (p *Plan) FreeAddrs(host string) error {
	if host == "" {
		host = "127.0.0.1"
	}
	for _, r := range p.Topology.Regions {
		addrs := make([]Addr, r.Servers)
		for i := range addrs {
			ports, err := netutil.FreePorts(host, 3)
			if err != nil {
				return err
			}
			addrs[i] = Addr{Host: host, ClientPort: ports[0], ClusterPort: ports[1], GatewayPort: ports[2]}
		}
		p.Servers[r.Name] = addrs
	}
	return nil
}

// Supercluster is a running in-process supercluster: every region's servers
// of a Plan, for `pizza dev --regions N` and tests.
type Supercluster struct {
	Plan *Plan

	mu      sync.Mutex
	servers map[string][]*server.Server
	opts    map[string][]*server.Options
}

// Configure lets a caller adjust a server's options before it starts
// (logging, monitoring ports).
type Configure func(region string, i int, o *server.Options)

// StartSupercluster starts every server of the plan and waits until each
// accepts connections, every region's gateways are connected to every
// other region, and JetStream has a meta leader.
func StartSupercluster(ctx context.Context, p *Plan, configure Configure) (*Supercluster, error) {
	sc := &Supercluster{Plan: p, servers: map[string][]*server.Server{}, opts: map[string][]*server.Options{}}
	for _, r := range p.Topology.Regions {
		for i := range r.Servers {
			o, err := p.Options(r.Name, i)
			if err != nil {
				sc.Shutdown()
				return nil, err
			}
			if configure != nil {
				configure(r.Name, i, o)
			}
			sc.opts[r.Name] = append(sc.opts[r.Name], o)
		}
	}
	// A clustered JetStream server waits for its peers: start all, then wait.
	for _, r := range p.Topology.Regions {
		for i := range r.Servers {
			s, err := server.NewServer(sc.opts[r.Name][i].Clone())
			if err != nil {
				sc.Shutdown()
				return nil, fmt.Errorf("region: server %s: %w", ServerName(r.Name, i), err)
			}
			s.ConfigureLogger() // does nothing for a server with NoLog
			go s.Start()
			sc.servers[r.Name] = append(sc.servers[r.Name], s)
		}
	}
	for _, r := range p.Topology.Regions {
		for _, s := range sc.servers[r.Name] {
			if !s.ReadyForConnections(30 * time.Second) {
				sc.Shutdown()
				return nil, fmt.Errorf("region: server %s not ready", s.Name())
			}
		}
	}
	if err := sc.WaitConnected(ctx); err != nil {
		sc.Shutdown()
		return nil, err
	}
	return sc, nil
}

// WaitConnected waits until every running server has outbound gateways to
// every other region and some server knows the JetStream meta leader.
func (sc *Supercluster) WaitConnected(ctx context.Context) error {
	want := len(sc.Plan.Topology.Regions) - 1
	return poll(ctx, func() error {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		leader := false
		for _, r := range sc.Plan.Topology.Regions {
			for _, s := range sc.servers[r.Name] {
				if s == nil {
					continue
				}
				if n := s.NumOutboundGateways(); n < want {
					return fmt.Errorf("server %s has %d of %d gateways", s.Name(), n, want)
				}
				if s.JetStreamIsLeader() {
					leader = true
				}
			}
		}
		if !leader {
			return errors.New("no JetStream meta leader yet")
		}
		return nil
	})
}

func poll(ctx context.Context, check func() error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	wait := 5 * time.Millisecond
	for {
		err := check()
		if err == nil {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("region: supercluster: %w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
		wait = min(wait*2, 100*time.Millisecond)
	}
}

// Server returns server i of a region (nil when stopped).
func (sc *Supercluster) Server(region string, i int) *server.Server {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if i < 0 || i >= len(sc.servers[region]) {
		return nil
	}
	return sc.servers[region][i]
}

// ClientURLs returns the client URLs of a region's servers.
func (sc *Supercluster) ClientURLs(region string) []string {
	var out []string
	for _, a := range sc.Plan.Servers[region] {
		out = append(out, "nats://"+hostPort(a.Host, a.ClientPort))
	}
	return out
}

// Connect opens a connection to a region's account, in process to the
// region's first running server.
func (sc *Supercluster) Connect(region string, opts ...nats.Option) (*nats.Conn, error) {
	return sc.connect(region, sc.Plan.RegionCredentials(region), opts...)
}

// ConnectGlobal opens a connection to the GLOBAL account, in process to a
// server of the global home region.
func (sc *Supercluster) ConnectGlobal(opts ...nats.Option) (*nats.Conn, error) {
	return sc.connect(sc.Plan.Topology.Global(), sc.Plan.GlobalCredentials(), opts...)
}

func (sc *Supercluster) connect(region string, c Credentials, opts ...nats.Option) (*nats.Conn, error) {
	sc.mu.Lock()
	var s *server.Server
	for _, cand := range sc.servers[region] {
		if cand != nil {
			s = cand
			break
		}
	}
	sc.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("%w %q", errNoServers, region)
	}
	all := append([]nats.Option{nats.UserInfo(c.User, c.Password), nats.InProcessServer(s), nats.Name("region-" + region)}, opts...)
	return nats.Connect("", all...)
}

// Shutdown stops every server (stores stay on disk).
func (sc *Supercluster) Shutdown() {
	sc.mu.Lock()
	var all []*server.Server
	for r, ss := range sc.servers {
		all = append(all, ss...)
		sc.servers[r] = make([]*server.Server, len(ss))
	}
	sc.mu.Unlock()
	for _, s := range all {
		if s != nil {
			s.Shutdown()
		}
	}
	for _, s := range all {
		if s != nil {
			s.WaitForShutdown()
		}
	}
}
