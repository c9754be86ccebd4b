package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/nats-io/nats.go"
)

// candidate is one member of an election, on its own connection.
type candidate struct {
	name    string
	nc      *nats.Conn
	l       eventstore.Leadership
	working atomic.Int32 // work running now
	stop    context.CancelFunc
	done    chan struct{}
}

// Three members of one role: exactly one works at a time. The leader that
// stops hands the role over at once; the leader whose connection is cut
// (a crash) loses it when its lease expires, and its work is cancelled
// before that.
func TestLeadOneAtATimeAndTakeOver(t *testing.T) {
	s := testkit.RunJetStream(t)
	const ttl = 1500 * time.Millisecond
	var overlap atomic.Int32 // work running at once, across members
	maxOverlap := atomic.Int32{}
	var mu sync.Mutex
	var order []string // who worked, in order

	start := func(name string) *candidate {
		c := &candidate{name: name, nc: testkit.Connect(t, s), done: make(chan struct{})}
		js := testkit.JetStream(t, c.nc)
		ctx, cancel := context.WithCancel(context.Background())
		c.stop = cancel
		go func() {
			defer close(c.done)
			spec := eventstore.LeaderSpec{Role: "test-role", Member: name, TTL: ttl, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			err := eventstore.Lead(ctx, js, spec, &c.l, func(wctx context.Context) {
				n := overlap.Add(1)
				for {
					m := maxOverlap.Load()
					if n <= m || maxOverlap.CompareAndSwap(m, n) {
						break
					}
				}
				c.working.Add(1)
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				<-wctx.Done()
				c.working.Add(-1)
				overlap.Add(-1)
			})
			if err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
		t.Cleanup(func() { cancel(); <-c.done })
		return c
	}
	cs := []*candidate{start("a"), start("b"), start("c")}
	leader := func() (*candidate, error) {
		var leaders []*candidate
		for _, c := range cs {
			if c.l.Leading() && c.working.Load() == 1 {
				leaders = append(leaders, c)
			}
		}
		if len(leaders) != 1 {
			return nil, fmt.Errorf("%d members lead and work", len(leaders))
		}
		return leaders[0], nil
	}
	var first *candidate
	testkit.Eventually(t, 10*time.Second, func() (err error) { first, err = leader(); return err })

	// Graceful stop: another member takes over well within the TTL.
	first.stop()
	<-first.done
	stopped := time.Now()
	var second *candidate
	testkit.Eventually(t, 10*time.Second, func() (err error) {
		second, err = leader()
		if err == nil && second == first {
			return errors.New("the stopped member still leads")
		}
		return err
	})
	if took := time.Since(stopped); took > ttl {
		t.Errorf("handover after a graceful stop took %v, want under the TTL %v", took, ttl)
	}

	// Crash: the leader's connection is cut. Its work ends (local
	// deadline) and the last member takes over after the lease expires.
	second.nc.Close()
	crashed := time.Now()
	var third *candidate
	testkit.Eventually(t, 15*time.Second, func() (err error) {
		if second.working.Load() != 0 {
			return errors.New("the cut-off leader still works")
		}
		third, err = leader()
		if err == nil && (third == first || third == second) {
			return fmt.Errorf("%s leads", third.name)
		}
		return err
	})
	mu.Lock()
	t.Logf("leaders in turn: %v; the crashed leader's role moved after %v", order, time.Since(crashed).Round(time.Millisecond))
	mu.Unlock()
	if m := maxOverlap.Load(); m != 1 {
		t.Errorf("%d members worked at the same time", m)
	}
	if third.l.Terms() != 1 {
		t.Errorf("the last leader took the role %d times, want 1", third.l.Terms())
	}
}
