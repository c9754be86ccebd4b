package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/services/gateway/internal/hub"
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
	ctx := c.Request().Context()
	release, err := g.streamSlot(c)
	if err != nil {
		return err
	}
	defer release()
	// Watch before reading, so no change slips between the read and the watch.
	w, stop := g.hub.Watch(id)
	defer stop()
	view, raw, err := g.hub.Load(ctx, id)
	if errors.Is(err, hub.ErrNotFound) {
		return notFound("Order")
	}
	if err != nil {
		return err
	}
	var sent uint64
	if last := c.Request().Header.Get("Last-Event-ID"); last != "" {
		sent, _ = strconv.ParseUint(last, 10, 64)
	} else if last := c.QueryParam("lastEventId"); last != "" {
		sent, _ = strconv.ParseUint(last, 10, 64)
	}

	res := c.Response()
	h := res.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set(echo.HeaderConnection, "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	res.WriteHeader(http.StatusOK)
	// Streams live as long as the client wants: lift any write deadline.
	_ = http.NewResponseController(res.Writer).SetWriteDeadline(time.Time{})
	g.m.sseClients.Inc()
	defer g.m.sseClients.Dec()

	if _, err := fmt.Fprint(res, "retry: 2000\n\n"); err != nil {
		return nil
	}
	send := func(seq uint64, data []byte) error {
		if seq <= sent {
			return nil
		}
		if _, err := fmt.Fprintf(res, "id: %d\nevent: order\ndata: %s\n\n", seq, data); err != nil {
			return err
		}
		res.Flush()
		sent = seq
		return nil
	}
	if err := send(view.Version, raw); err != nil {
		return nil
	}
	res.Flush()
	heartbeat := time.NewTicker(g.cfg.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-g.streams.Done():
			return nil
		case <-heartbeat.C:
			if _, err := fmt.Fprint(res, ": heartbeat\n\n"); err != nil {
				return nil
			}
			res.Flush()
		case <-w.C():
			n, resync := w.Latest()
			if resync {
				v, raw, err := g.hub.Load(ctx, id)
				if err == nil {
					if err := send(v.Version, raw); err != nil {
						return nil
					}
				}
				continue
			}
			if n == nil {
				continue
			}
			data, err := jsonMarshal(n.Order)
			if err != nil {
				return nil
			}
			if err := send(n.Seq, data); err != nil {
				return nil
			}
		}
	}
}
