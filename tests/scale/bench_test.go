package scale

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// benchClients is the fixed number of concurrent load clients.
const benchClients = 32

// BenchmarkIntake measures order intake through the HTTP API with one and
// with three instances of each service (kitchen once: see world) and as
// many gateways, the load round-robin over the gateways: b.N orders from
// 32 concurrent clients, each order counted when it is placed and visible
// in the read model (the gateway's read-your-writes wait, or a later read).
// It reports orders/s, the p50 and p99 latency from POST to visible, the
// replies that came before the order was visible, and how the place
// commands spread over the orders instances (cmds@orders-<k>, instances in
// the order of their micro ids).
//
//	go test -run '^$' -bench Intake -benchtime 500x ./tests/scale/
//
// Each instance count gets its own platform (nats-server, keyspace),
// started before its sub-benchmark and stopped after it; a sub-benchmark's
// runs share it, each with idempotency keys of its own.
func BenchmarkIntake(b *testing.B) {
	for _, n := range []int{1, 3} {
		w := startWorld(b, n)
		hc := newHTTPClient(benchClients)
		runs := 0
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			runs++
			ctx := context.Background()
			// Warm up: one order per client opens the HTTP connections and
			// the paths through every instance.
			if _, err := w.load(ctx, hc, fmt.Sprintf("warm-%d", runs), benchClients, benchClients); err != nil {
				b.Fatal(err)
			}
			before := w.placeCounts()
			restartsBefore := w.logs.snapshot()[msgProjectorRestart]
			rywBefore, rywCountBefore := w.rywWait()
			b.ResetTimer()
			res, err := w.load(ctx, hc, fmt.Sprintf("bench-%d", runs), b.N, benchClients)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			rywSum, rywCount := w.rywWait()
			rywMean := time.Duration((rywSum - rywBefore) / float64(max(rywCount-rywCountBefore, 1)) * float64(time.Second))
			lat := latencies(res.orders)
			pending := 0
			for _, p := range res.orders {
				if p.pending {
					pending++
				}
			}
			b.ReportMetric(float64(b.N)/res.elapsed.Seconds(), "orders/s")
			b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
			b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
			b.ReportMetric(float64(pending), "ryw-pending")
			b.ReportMetric(ms(rywMean), "ryw-wait-ms")
			per := spread(before, w.placeCounts())
			for k, c := range per {
				b.ReportMetric(float64(c), fmt.Sprintf("cmds@orders-%d", k))
			}
			restarts := w.logs.snapshot()[msgProjectorRestart] - restartsBefore
			b.ReportMetric(float64(restarts), "proj-restarts")
			if b.N > 1 {
				b.Logf("instances=%d N=%d: %.1f orders/s, p50 %.1f ms, p99 %.1f ms, max %.1f ms (of which the read-your-writes wait, mean: %.1f ms); place commands per orders instance %v; %d replies before visible; %d projector restarts; inventory handled %v (partitions %s)",
					n, b.N, float64(b.N)/res.elapsed.Seconds(), ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), ms(lat[len(lat)-1]), ms(rywMean),
					per, pending, restarts, w.inventoryHandled(), w.partitionOwnership())
			}
		})
		w.close()
		if lines := w.logs.firstLines(); len(lines) > 0 && testing.Verbose() {
			for _, l := range lines {
				b.Log(l)
			}
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
