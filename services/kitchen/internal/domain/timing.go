package domain

import (
	"encoding/binary"
	"hash/fnv"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
)

// Stage durations at real speed. Preparation depends on the largest pizza
// of the order plus a minute for every further pizza; baking on the largest
// pizza (the oven takes the whole order at once); the check is fixed.
var (
	preparationBySize = map[string]time.Duration{"Small": 4 * time.Minute, "Medium": 5 * time.Minute, "Large": 6 * time.Minute, "ExtraLarge": 7 * time.Minute}
	bakingBySize      = map[string]time.Duration{"Small": 6 * time.Minute, "Medium": 7 * time.Minute, "Large": 8 * time.Minute, "ExtraLarge": 9 * time.Minute}
)

// Durations of the fixed parts.
const (
	PerExtraPizza    = time.Minute
	QualityCheckTime = time.Minute
)

// largest returns the duration of the largest line in table. A size the
// table does not know counts as the longest one: a timer must never cut a
// bake short.
func largest(table map[string]time.Duration, lines []events.OrderLine) time.Duration {
	var longest, d time.Duration
	for _, v := range table {
		longest = max(longest, v)
	}
	for _, l := range lines {
		v, ok := table[l.Size]
		if !ok {
			v = longest
		}
		d = max(d, v)
	}
	if d == 0 {
		d = longest
	}
	return d
}

// PreparationTime is how long a chef needs for the order's pizzas.
func PreparationTime(lines []events.OrderLine) time.Duration {
	pizzas := 0
	for _, l := range lines {
		pizzas += max(l.Quantity, 0)
	}
	return largest(preparationBySize, lines) + time.Duration(max(pizzas-1, 0))*PerExtraPizza
}

// BakingTime is how long the order stays in the oven.
func BakingTime(lines []events.OrderLine) time.Duration { return largest(bakingBySize, lines) }

// Policy holds the kitchen's tunables: the time scale of demos and tests
// and the quality-check failure rate with its seed.
type Policy struct {
	// TimeScale divides every duration (1 = real time; 60 = a minute per second).
	TimeScale float64
	// QCFailureRate is the share of checks that fail, in [0, 1).
	QCFailureRate float64
	// Seed makes the checks' outcomes reproducible.
	Seed int64
}

// Scale returns d at the policy's speed.
func (p Policy) Scale(d time.Duration) time.Duration {
	if p.TimeScale <= 0 || p.TimeScale == 1 {
		return d
	}
	return time.Duration(float64(d) / p.TimeScale)
}

// Passes reports whether attempt `attempt` of an order passes the quality
// check. It is a pure function of (seed, order, attempt), so a replay, a
// restart or a second look at the same check always gives the same answer.
func (p Policy) Passes(orderID string, attempt int) bool {
	return QualityScore(p.Seed, orderID, attempt) >= p.QCFailureRate
}

// QualityScore maps (seed, order, attempt) uniformly to [0, 1): an FNV-1a
// hash, finished with the MurmurHash3 64-bit mixer so that the high bits
// (which become the score) depend on every input byte.
func QualityScore(seed int64, orderID string, attempt int) float64 {
	h := fnv.New64a()
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(seed))
	h.Write(buf[:])
	h.Write([]byte(orderID))
	binary.BigEndian.PutUint64(buf[:], uint64(attempt))
	h.Write(buf[:])
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return float64(x>>11) / (1 << 53)
}
