package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/redis/go-redis/v9"
)

// A rebuild while orders keep coming: every read during it finds the
// orders it knows of, and the switched-in model equals a from-scratch
// rebuild once the load has stopped.
func TestRebuildDuringLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	rdb, keyspace := testkit.Redis(t)
	h := startPlatform(t, PlatformConfig{HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", DataDir: t.TempDir(), RedisURL: testkit.RedisURL(),
		Keyspace: keyspace, TimeScale: 1})
	defer func() { h.stop() }()
	var (
		mu     sync.Mutex
		known  []string
		misses atomic.Int64
		reads  atomic.Int64
	)
	for i := 0; i < 40; i++ {
		known = append(known, h.placePearl())
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // writers
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			res, b := h.do("POST", "/api/orders", pearlOrder, nil)
			if res.StatusCode != 201 {
				t.Errorf("place during rebuild: %d %s", res.StatusCode, b)
				return
			}
			id := strings.Split(strings.Split(string(b), `"orderId":"`)[1], `"`)[0]
			mu.Lock()
			known = append(known, id)
			mu.Unlock()
		}
	}()
	go func() { // readers
		defer wg.Done()
		rng := rand.New(rand.NewPCG(3, 4))
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			id := known[rng.IntN(len(known))]
			mu.Unlock()
			res, _ := h.do("GET", "/api/orders/"+id, "", nil)
			reads.Add(1)
			if res.StatusCode != http.StatusOK {
				misses.Add(1)
			}
		}
	}()
	var out, errOut strings.Builder
	err := run(context.Background(), []string{"rebuild", "--nats-url", h.p.NATSURL(), "--redis-url", testkit.RedisURL(), "--keyspace", keyspace, "--projection", "orders"}, &out, &errOut)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("rebuild: %v\n%s%s", err, out.String(), errOut.String())
	}
	t.Log(strings.TrimSpace(out.String()))
	if misses.Load() != 0 {
		t.Fatalf("%d of %d reads during the rebuild missed an order", misses.Load(), reads.Load())
	}

	// Once the live projector has caught up, the model equals a fresh rebuild.
	ctx := context.Background()
	st, _ := h.p.js.Stream(ctx, events.Orders.Stream)
	testkit.Eventually(t, 20*time.Second, func() error {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		cp, _ := rdb.Get(ctx, projection.CheckpointKey(keyspace, "orders")).Uint64()
		if cp != info.State.LastSeq {
			return fmt.Errorf("live checkpoint %d, stream at %d", cp, info.State.LastSeq)
		}
		return nil
	})
	fresh := keyspace + "fresh:"
	if err := run(ctx, []string{"rebuild", "--nats-url", h.p.NATSURL(), "--redis-url", testkit.RedisURL(), "--keyspace", fresh, "--projection", "orders"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	live, rebuilt := modelDump(t, rdb, keyspace, "orders"), modelDump(t, rdb, fresh, "orders")
	if len(live) == 0 || strings.Join(live, "\n") != strings.Join(rebuilt, "\n") {
		t.Fatalf("live model (%d keys) differs from a fresh rebuild (%d keys)", len(live), len(rebuilt))
	}
}

// modelDump lists a model's keys (without keyspace) and values, sorted.
func modelDump(t *testing.T, rdb *redis.Client, keyspace, model string) []string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, projection.KeyBase(keyspace, model)+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		var v string
		switch rdb.Type(ctx, k).Val() {
		case "string":
			v = rdb.Get(ctx, k).Val()
		case "zset":
			v = fmt.Sprint(rdb.ZRangeWithScores(ctx, k, 0, -1).Val())
		case "set":
			m := rdb.SMembers(ctx, k).Val()
			sort.Strings(m)
			v = fmt.Sprint(m)
		default:
			v = rdb.Type(ctx, k).Val()
		}
		out = append(out, strings.TrimPrefix(k, keyspace)+"="+v)
	}
	sort.Strings(out)
	return out
}
