package mqttbridge_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/mqttbridge"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
)

// BenchmarkIngest measures GPS fixes per second from MQTT 3.1.1 clients
// (one per catalogue driver) into TELEMETRY, appended by the bridge,
// at QoS 0 and QoS 1; RawJetStream is the same number of synchronous
// publishers straight to JetStream, for the ratio.
func BenchmarkIngest(b *testing.B) {
	h := newHarness(b, mqttbridge.Config{RatePerSecond: -1})
	var ids []string
	for _, r := range catalog.Default().Restaurants {
		for _, d := range r.Drivers {
			ids = append(ids, d.ID)
		}
	}
	clients := make([]*v3Client, len(ids))
	for i, id := range ids {
		c, err := h.connectV3("bench-"+id, id, h.secrets[id])
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	base := time.Now().UTC().Add(-time.Hour)
	seq := 0
	run := func(b *testing.B, qos byte) {
		ctx := context.Background()
		st, err := h.js.Stream(ctx, events.Telemetry.Stream)
		if err != nil {
			b.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		start := info.State.LastSeq
		b.ResetTimer()
		t0 := time.Now()
		var wg sync.WaitGroup
		for ci, c := range clients {
			n := b.N / len(clients)
			if ci < b.N%len(clients) {
				n++
			}
			first := seq
			seq += n
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					k := first + i
					fix := map[string]any{"lat": 45 + float64(k%100_000)/1e6, "lon": -122.6, "timestamp": base.Add(time.Duration(k) * time.Microsecond)}
					tok := c.Publish(mqttapi.TopicLocation(ids[ci]), qos, false, body(fix))
					if qos > 0 {
						tok.Wait()
					}
				}
			}()
		}
		wg.Wait()
		testkit.Eventually(b, time.Minute, func() error {
			info, err := st.Info(ctx)
			if err != nil {
				return err
			}
			if got := info.State.LastSeq - start; got < uint64(b.N) {
				return fmt.Errorf("%d of %d stored", got, b.N)
			}
			return nil
		})
		b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "msgs/s")
	}
	b.Run("QoS0", func(b *testing.B) { run(b, 0) })
	b.Run("QoS1", func(b *testing.B) { run(b, 1) })
	b.Run("RawJetStream", func(b *testing.B) {
		ctx := context.Background()
		t0 := time.Now()
		var wg sync.WaitGroup
		for ci := range ids {
			n := b.N / len(ids)
			if ci < b.N%len(ids) {
				n++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					if _, err := h.js.Publish(ctx, events.DriverLocationSubject("raw-"+ids[ci]), []byte(`{"lat":45.5,"lon":-122.6}`)); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "msgs/s")
	})
}
