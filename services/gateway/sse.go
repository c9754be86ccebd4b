package gateway

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/services/gateway/internal/hub"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/labstack/echo/v4"
)

// trackOrder streams the order's snapshots over SSE: the current one first,
// then one per change. Each event's id is the stream sequence of the last
// event applied to the order; a client that reconnects with Last-Event-ID
// gets the current snapshot only if it is newer, so it never misses a
// change (every snapshot holds the whole order).
func (g *Gateway) trackOrder(c echo.Context) error {
	id := c.Param("orderId")
	if events.ValidateID(id) != nil {
		return notFound("Order")
	}
	release, err := g.streamSlot(c)
	if err != nil {
		return err
	}
	// Watch before reading, so no change slips between the read and the watch.
	w, stop := g.hub.Watch(id)
	done := func() {
		stop()
		release()
	}
	view, raw, err := g.hub.Load(c.Request().Context(), id)
	if err != nil {
		done()
		if errors.Is(err, hub.ErrNotFound) {
			return notFound("Order")
		}
		return err
	}
	var sent uint64
	if last := lastEventID(c); last != "" {
		sent, _ = strconv.ParseUint(last, 10, 64)
	}
	return g.serveSSE(c, done, func(ctx context.Context, out *sseOut) {
		send := func(seq uint64, data []byte) error {
			if seq <= sent {
				return nil
			}
			if err := out.frame("id: %d\nevent: order\ndata: %s\n\n", seq, data); err != nil {
				return err
			}
			sent = seq
			return nil
		}
		if err := send(view.Version, raw); err != nil {
			return
		}
		// While the order is with its driver, the order read model
		// carries the driver's last position and a live ETA
		// (driverTracking, folded in by the orders service without a new
		// version). Each newer fix goes out as a "driver" event with no
		// id: it is telemetry, not order history, and Last-Event-ID keeps
		// naming the order's version.
		var driverSeq uint64
		follow := func(v ordersapi.OrderView) error {
			tr := v.DriverTracking
			if tr == nil || !slices.Contains(ordersapi.TrackedStatuses, v.Status) || tr.Seq <= driverSeq {
				return nil
			}
			driverSeq = tr.Seq
			return sendDriver(out, tr)
		}
		if err := follow(view); err != nil {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.C():
				n, resync := w.Latest()
				if resync || (n != nil && n.Seq <= sent) {
					// A missed notification, or a change without a new
					// version (the driver's position): the hub keeps one
					// snapshot per version, so read the newest from the
					// read model.
					v, raw, err := g.hub.Load(ctx, id)
					if err == nil {
						if err := send(v.Version, raw); err != nil {
							return
						}
						if err := follow(v); err != nil {
							return
						}
					}
					continue
				}
				if n == nil {
					continue
				}
				// The order as the projector encoded it (compact JSON: one
				// data line); re-encoded only if it is missing or spans
				// lines.
				data := []byte(n.OrderJSON)
				if len(data) == 0 || bytes.ContainsAny(data, "\r\n") {
					var err error
					if data, err = jsonMarshal(n.Order); err != nil {
						return
					}
				}
				if err := send(n.Seq, data); err != nil {
					return
				}
				if err := follow(n.Order); err != nil {
					return
				}
			}
		}
	})
}

// DriverUpdate is the payload of a tracking stream's "driver" event.
type DriverUpdate struct {
	DriverID  string    `json:"driverId"`
	Latitude  float64   `json:"latitude"`
	Longitude float64   `json:"longitude"`
	At        time.Time `json:"at"`
	SpeedKmh  *float64  `json:"speedKmh"`
	// EtaAt is the orders service's ETA, recomputed from the position,
	// the speed and the distance left to the delivery address.
	EtaAt *time.Time `json:"etaAt"`
	// DistanceKm is the straight-line distance left.
	DistanceKm float64 `json:"distanceKm"`
	// Seq is the TELEMETRY sequence of the fix (it only grows).
	Seq uint64 `json:"seq"`
}

// sendDriver writes the driver's position from the order's view.
func sendDriver(out *sseOut, tr *ordersapi.DriverTracking) error {
	eta := tr.EtaAt
	u := DriverUpdate{DriverID: tr.DriverID, Latitude: tr.Latitude, Longitude: tr.Longitude, At: tr.At, SpeedKmh: tr.SpeedKmh, EtaAt: &eta, DistanceKm: tr.DistanceKm, Seq: tr.Seq}
	data, err := jsonMarshal(u)
	if err != nil {
		return err
	}
	return out.frame("event: driver\ndata: %s\n\n", data)
}

// lastEventID is where a client resumes a stream: the Last-Event-ID
// header, or the lastEventId query parameter (a browser's EventSource
// cannot set headers on its first connection).
func lastEventID(c echo.Context) string {
	if id := c.Request().Header.Get("Last-Event-ID"); id != "" {
		return id
	}
	return c.QueryParam("lastEventId")
}

// sseHeartbeat keeps idle streams (and the proxies in between) alive;
// sseOut sends it after every Config.Heartbeat without a frame.
const sseHeartbeat = ": heartbeat\n\n"
