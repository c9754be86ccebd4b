package testkit

import (
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/netutil"
	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is an in-process JetStream cluster of real nats-servers joined by
// routes, each with its own store directory, for tests that need
// replication, leader loss and restarts.
type Cluster struct {
	t       testing.TB
	Name    string
	opts    []*server.Options
	Servers []*server.Server
}

// RunCluster starts n JetStream servers in one cluster and waits until
// they have elected a meta leader.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Name: "test-cluster"}
	for i := 0; i < n; i++ {
		c.opts = append(c.opts, &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       freePort(t),
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: c.Name, Host: "127.0.0.1", Port: freePort(t)},
		})
	}
	// Every node routes to every other, so any of them can restart alone.
	for i, o := range c.opts {
		for j, other := range c.opts {
			if i != j {
				o.Routes = append(o.Routes, routeURL(other))
			}
		}
	}
	// A clustered JetStream node is not ready until it sees a quorum, so
	// start all of them before waiting for any.
	for _, o := range c.opts {
		s, err := server.NewServer(o.Clone())
		if err != nil {
			t.Fatalf("nats-server: %v", err)
		}
		go s.Start()
		c.Servers = append(c.Servers, s)
	}
	t.Cleanup(c.Shutdown)
	for _, s := range c.Servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("nats-server %s not ready", s.Name())
		}
	}
	c.WaitForMetaLeader(30 * time.Second)
	return c
}

// freePort finds a port below the kernel's ephemeral range that is free
// now (netutil.FreePorts): a cluster listener that fails to bind does not
// stop nats-server, so a taken port would show up only as a missing route.
func freePort(t testing.TB) int {
	t.Helper()
	ports, err := netutil.FreePorts("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

func routeURL(o *server.Options) *url.URL {
	return &url.URL{Scheme: "nats", Host: fmt.Sprintf("%s:%d", o.Cluster.Host, o.Cluster.Port)}
}

// ClientURLs returns the client URLs of all servers, for a connection that
// fails over between them.
func (c *Cluster) ClientURLs() []string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		urls[i] = fmt.Sprintf("nats://%s:%d", o.Host, o.Port)
	}
	return urls
}

// Stop shuts node i down (its store stays).
func (c *Cluster) Stop(i int) {
	if s := c.Servers[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.Servers[i] = nil
	}
}

// Restart starts node i again on its old addresses and store.
func (c *Cluster) Restart(i int) *server.Server {
	c.t.Helper()
	c.Stop(i)
	s := start(c.t, c.opts[i].Clone())
	c.Servers[i] = s
	return s
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	for i := range c.Servers {
		c.Stop(i)
	}
}

// WaitForMetaLeader waits until some running node knows the JetStream meta leader.
func (c *Cluster) WaitForMetaLeader(timeout time.Duration) {
	c.t.Helper()
	Eventually(c.t, timeout, func() error {
		for _, s := range c.Servers {
			if s != nil && s.JetStreamIsLeader() {
				return nil
			}
		}
		return errors.New("no JetStream meta leader yet")
	})
}

// StreamLeader returns the index of the node leading the stream, or -1.
func (c *Cluster) StreamLeader(account, stream string) int {
	for i, s := range c.Servers {
		if s != nil && s.JetStreamIsStreamLeader(account, stream) {
			return i
		}
	}
	return -1
}
