package gateway

import (
	"testing"
	"time"
)

// TestFrameThrottleSendsTheLastChangeOfABurst: within an interval the
// first change goes out at once, the others arm one pending frame, and
// the frame goes out when the interval ends; with no interval every change
// goes out.
func TestFrameThrottleSendsTheLastChangeOfABurst(t *testing.T) {
	t0 := time.Now()
	th := frameThrottle{every: time.Second}
	defer th.stop()
	th.sent(t0.Add(-2 * time.Second))
	if !th.due(t0) {
		t.Fatal("the first change after a quiet interval waits")
	}
	for i := 1; i <= 10; i++ {
		if th.due(t0.Add(time.Duration(i) * time.Millisecond)) {
			t.Fatalf("change %d of the burst went out at once", i)
		}
	}
	if th.C() == nil {
		t.Fatal("no frame pending after the burst")
	}
	select {
	case <-th.C():
		th.fired(time.Now())
	case <-time.After(5 * time.Second):
		t.Fatal("the pending frame never fired")
	}
	if th.C() != nil {
		t.Fatal("still armed after firing")
	}

	none := frameThrottle{}
	for i := range 3 {
		if !none.due(t0.Add(time.Duration(i) * time.Microsecond)) {
			t.Fatalf("change %d held back without an interval", i)
		}
	}
}
