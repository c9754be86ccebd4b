package gateway

import (
	"bytes"
	"context"
	"time"

	"github.com/awesome-pizza/pizza/services/gateway/internal/hub"
	"github.com/labstack/echo/v4"
)

// telemetryInterval is the least time between two telemetry frames of one
// stream (driver positions). Devices may report several fixes a second;
// a map needs no more than two frames a second, and the newest fix always
// goes out (the last frame of a burst is sent when the interval ends).
const telemetryInterval = 500 * time.Millisecond

// restaurantSnapshotInterval is the least time between two snapshots of a
// restaurant-wide stream (kitchen display, dashboard). A busy restaurant
// changes many times a second and its snapshot grows with its tickets; a
// screen needs no more than four frames a second, and the newest snapshot
// always goes out when the interval ends.
const restaurantSnapshotInterval = 250 * time.Millisecond

// liveFeed describes a Server-Sent Events stream made of complete,
// versioned snapshots (each sent with its version as `id:`, so a client
// resuming with Last-Event-ID gets the snapshot only if it changed) and,
// optionally, telemetry frames without `id` (positions: not history, never
// replayed), throttled to telemetryInterval.
type liveFeed struct {
	// event names the snapshot frames.
	event string
	// watch registers the feed's change watchers before the first read, so
	// no change slips between the read and the watch. snapshots wakes a
	// snapshot reload; telemetry (may be nil) wakes a telemetry reload.
	// The same watcher may not be returned twice; set telemetryOnSnapshot
	// instead.
	watch func() (snapshots, telemetry *hub.Watcher, stop func())
	// snapshot reads the current snapshot and its version.
	snapshot func(ctx context.Context) (id string, data []byte, err error)
	// snapshotEvery is the least time between two snapshot reloads (the
	// last change of a burst is always sent); 0: every change at once.
	snapshotEvery time.Duration
	// telemetryEvent names the telemetry frames; empty: the feed has none.
	telemetryEvent string
	// loadTelemetry reads the current telemetry; nil data means nothing
	// to show. A frame equal to the previous one is not sent again.
	loadTelemetry func(ctx context.Context) ([]byte, error)
	// telemetryOnSnapshot makes every snapshot wake-up a telemetry one too
	// (when one watcher signals both kinds of change).
	telemetryOnSnapshot bool
}

// serveLive runs a liveFeed until the client leaves or the gateway shuts
// its streams down. Errors before the stream starts (the first snapshot
// could not be read, too many streams) are answered as problems.
func (g *Gateway) serveLive(c echo.Context, f liveFeed) error {
	release, err := g.streamSlot(c)
	if err != nil {
		return err
	}
	snapW, teleW, stop := f.watch()
	done := func() {
		stop()
		release()
	}
	id, data, err := f.snapshot(c.Request().Context())
	if err != nil {
		done()
		return err
	}
	sent := lastEventID(c)
	return g.serveSSE(c, done, func(ctx context.Context, out *sseOut) {
		sendSnapshot := func(id string, data []byte) error {
			if id == sent {
				return nil
			}
			if err := out.frame("id: %s\nevent: %s\ndata: %s\n\n", id, f.event, data); err != nil {
				return err
			}
			sent = id
			return nil
		}
		if err := sendSnapshot(id, data); err != nil {
			return
		}

		reload := func() error {
			id, data, err := f.snapshot(ctx)
			if err != nil {
				if ctx.Err() == nil {
					g.deps.Log.Warn("reading a stream's snapshot failed", "event", f.event, "err", err)
				}
				return nil // the next change tries again
			}
			return sendSnapshot(id, data)
		}
		st := frameThrottle{every: f.snapshotEvery}
		defer st.stop()
		st.sent(time.Now())

		t := frameThrottle{every: telemetryInterval}
		defer t.stop()
		var lastTelemetry []byte
		sendTelemetry := func() error {
			if f.telemetryEvent == "" {
				return nil
			}
			data, err := f.loadTelemetry(ctx)
			if err != nil {
				if ctx.Err() == nil {
					g.deps.Log.Warn("reading a stream's telemetry failed", "event", f.telemetryEvent, "err", err)
				}
				return nil // the next change tries again
			}
			if data == nil || bytes.Equal(data, lastTelemetry) {
				return nil
			}
			if err := out.frame("event: %s\ndata: %s\n\n", f.telemetryEvent, data); err != nil {
				return err
			}
			lastTelemetry = data
			return nil
		}
		// Telemetry follows the first snapshot at once, resumed or not: it
		// is not part of what Last-Event-ID covers.
		t.sent(time.Now())
		if err := sendTelemetry(); err != nil {
			return
		}
		telemetryChanged := func() error {
			if f.telemetryEvent == "" || !t.due(time.Now()) {
				return nil
			}
			return sendTelemetry()
		}

		for {
			select {
			case <-ctx.Done():
				return
			case <-watcherC(snapW):
				snapW.Latest() // a resync or a change: either way, read again
				if st.due(time.Now()) {
					if err := reload(); err != nil {
						return
					}
				}
				if f.telemetryOnSnapshot {
					if err := telemetryChanged(); err != nil {
						return
					}
				}
			case <-watcherC(teleW):
				teleW.Latest()
				if err := telemetryChanged(); err != nil {
					return
				}
			case <-st.C():
				st.fired(time.Now())
				if err := reload(); err != nil {
					return
				}
			case <-t.C():
				t.fired(time.Now())
				if err := sendTelemetry(); err != nil {
					return
				}
			}
		}
	})
}

// watcherC is the watcher's channel, or nil (never ready) without one.
func watcherC(w *hub.Watcher) <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.C()
}

// frameThrottle lets one frame out per interval: a change
// within the interval arms a timer, and the frame goes out when it fires
// (the newest state then), so the last change of a burst is never lost.
type frameThrottle struct {
	every time.Duration
	last  time.Time
	timer *time.Timer
	armed bool
}

// due says whether a frame may go out now; if not, it arms the timer (once).
func (t *frameThrottle) due(now time.Time) bool {
	if t.armed {
		return false // the pending frame will carry this change too
	}
	wait := t.every - now.Sub(t.last)
	if wait <= 0 {
		t.last = now
		return true
	}
	if t.timer == nil {
		t.timer = time.NewTimer(wait)
	} else {
		t.timer.Reset(wait)
	}
	t.armed = true
	return false
}

// C fires when an armed frame is due (nil while none is).
func (t *frameThrottle) C() <-chan time.Time {
	if !t.armed {
		return nil
	}
	return t.timer.C
}

// fired records that the armed frame goes out now.
func (t *frameThrottle) fired(now time.Time) {
	t.armed = false
	t.last = now
}

// sent records a frame sent outside the throttle (the first one).
func (t *frameThrottle) sent(now time.Time) { t.last = now }

func (t *frameThrottle) stop() {
	if t.timer != nil {
		t.timer.Stop()
	}
}
