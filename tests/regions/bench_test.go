package regions

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkPlaceOrder measures placing an order through west's connection:
// for a west restaurant (local: west's orders service), and for an east
// restaurant (the command crosses the gateway to east's orders service and
// the reply comes back), with no added latency and with 20 ms added in
// each direction of the link between the regions.
//
//	go test -race=false -run '^$' -bench PlaceOrder -benchtime 100x ./tests/regions
func BenchmarkPlaceOrder(b *testing.B) {
	w := startWorld(b, true)
	cases := []struct {
		name       string
		restaurant string
		delay      time.Duration
	}{
		{"local", "downtown", 0},
		{"cross-region", "hawthorne", 0},
		{"cross-region-20ms", "hawthorne", 20 * time.Millisecond},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for _, p := range w.proxies {
				p.SetDelay(c.delay)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := w.place(west, c.restaurant, fmt.Sprintf("bench-%s-%d-%d", c.name, b.N, i), 10*time.Second); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/order")
		})
	}
}
