package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/redis/go-redis/v9"
)

// startHub runs a hub on a keyspace of its own and waits for its
// subscription.
func startHub(t *testing.T) (*Hub, *redis.Client, string) {
	t.Helper()
	rdb, ks := testkit.Redis(t)
	h := New(rdb, ks, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-h.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("the hub did not subscribe")
	}
	return h, rdb, ks
}

// announce publishes an order notification as the orders projector does,
// and waits until the hub has taken it in.
func announce(t *testing.T, h *Hub, rdb *redis.Client, ks, orderID string, seq uint64) {
	t.Helper()
	payload, err := json.Marshal(ordersapi.Notification{OrderID: orderID, Seq: seq, Order: ordersapi.OrderView{OrderID: orderID, RestaurantID: "downtown", Version: seq}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Publish(context.Background(), ordersapi.Channel(ks), payload).Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if v, _ := h.seen.get(orderID, Mark{}); v < seq {
			return fmt.Errorf("the hub holds version %d of %s, want %d", v, orderID, seq)
		}
		return nil
	})
}

// TestWaitForTrustsAnAnnouncementAfterTheMark: a result announced between
// the mark and the wait ends the wait at once, with nothing read from
// Redis (the order is not even there).
func TestWaitForTrustsAnAnnouncementAfterTheMark(t *testing.T) {
	h, rdb, ks := startHub(t)
	mark := h.Mark()
	announce(t, h, rdb, ks, "o-1", 7)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := h.WaitFor(ctx, mark, "o-1", 7); err != nil {
		t.Fatalf("WaitFor after the announcement: %v", err)
	}
	// An older version than the one wanted does not end it.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if err := h.WaitFor(ctx2, mark, "o-1", 8); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor a version never announced = %v, want the deadline", err)
	}
}

// TestWaitForWakesOnTheAnnouncement: a wait that starts first ends when the
// result is announced.
func TestWaitForWakesOnTheAnnouncement(t *testing.T) {
	h, rdb, ks := startHub(t)
	mark := h.Mark()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- h.WaitFor(ctx, mark, "o-2", 3)
	}()
	testkit.Eventually(t, 5*time.Second, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.watchers["o-2"]) != 1 {
			return errors.New("the wait did not register")
		}
		return nil
	})
	announce(t, h, rdb, ks, "o-2", 3)
	if err := <-done; err != nil {
		t.Fatalf("WaitFor: %v", err)
	}
}

// TestWaitForReadsWhatTheMarkCannotVouchFor: with a mark that does not
// cover the result (a replayed command, or a subscription that came down
// since), the wait reads the read model first.
func TestWaitForReadsWhatTheMarkCannotVouchFor(t *testing.T) {
	h, rdb, ks := startHub(t)
	view, err := json.Marshal(ordersapi.OrderView{OrderID: "o-3", RestaurantID: "downtown", Version: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(context.Background(), ordersapi.OrderKey(ks, "o-3"), view, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	// No periodic read: only the one the wait makes first can end it.
	h.waitTick = time.Hour
	for name, mark := range map[string]func() Mark{
		"zero mark": func() Mark { return Mark{} },
		"interrupted since": func() Mark {
			m := h.Mark()
			h.seen.interrupted()
			h.seen.subscribed()
			return m
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := h.WaitFor(ctx, mark(), "o-3", 4); err != nil {
				t.Fatalf("WaitFor: %v", err)
			}
		})
	}
}

func TestRecentVersionsCoverage(t *testing.T) {
	var r recentVersions
	if _, complete := r.get("x", r.mark()); complete {
		t.Fatal("a mark taken before the subscription is up must not vouch")
	}
	r.subscribed()
	m := r.mark()
	r.note("a", 2)
	r.note("a", 1) // an older announcement does not lower it
	if v, complete := r.get("a", m); v != 2 || !complete {
		t.Fatalf("get = %d, %v; want 2, true", v, complete)
	}
	// Fill one generation: "a" moves to the older one and is still known.
	for i := range recentOrders {
		r.note("b"+strconv.Itoa(i), 1)
	}
	if v, complete := r.get("a", m); v != 2 || !complete {
		t.Fatalf("after one rotation get = %d, %v; want 2, true", v, complete)
	}
	// A second rotation drops it: the mark no longer vouches.
	for i := range recentOrders {
		r.note("c"+strconv.Itoa(i), 1)
	}
	if v, complete := r.get("a", m); v != 0 || complete {
		t.Fatalf("after two rotations get = %d, %v; want 0, false", v, complete)
	}
	if _, complete := r.get("a", r.mark()); !complete {
		t.Fatal("a fresh mark vouches again")
	}
	r.interrupted()
	if _, complete := r.get("a", r.mark()); complete {
		t.Fatal("a mark taken while the subscription is down must not vouch")
	}
}
