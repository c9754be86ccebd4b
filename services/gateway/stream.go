package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/labstack/echo/v4"
)

// streamRestaurant serves a restaurant-level live view over SSE (kitchen
// display, dashboard): the snapshot on connect, then a new snapshot after
// every change of a read model concerning the restaurant. id: is the
// snapshot's version; a client reconnecting with Last-Event-ID gets the
// snapshot only if it changed meanwhile (each snapshot is complete, so
// nothing is missed).
func (g *Gateway) streamRestaurant(c echo.Context, rid, event string, load func(context.Context) (string, []byte, error)) error {
	ctx := c.Request().Context()
	if _, ok := g.deps.Catalog.Restaurant(rid); !ok {
		return notFound("Restaurant")
	}
	release, err := g.streamSlot(c)
	if err != nil {
		return err
	}
	defer release()
	w, stop := g.hub.WatchRestaurant(rid)
	defer stop()
	id, data, err := load(ctx)
	if err != nil {
		return err
	}
	sent := lastEventID(c)
	res := c.Response()
	end, ok := g.startSSE(res)
	defer end()
	if !ok {
		return nil
	}
	send := func(id string, data []byte) error {
		if id == sent {
			return nil
		}
		if _, err := fmt.Fprintf(res, "id: %s\nevent: %s\ndata: %s\n\n", id, event, data); err != nil {
			return err
		}
		res.Flush()
		sent = id
		return nil
	}
	if err := send(id, data); err != nil {
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
			w.Latest()
			id, data, err := load(ctx)
			if err != nil {
				continue
			}
			if err := send(id, data); err != nil {
				return nil
			}
		}
	}
}
