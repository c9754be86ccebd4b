package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/awesome-pizza/pizza/services/gateway/internal/hub"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
)

// driverStream follows one driver over Server-Sent Events: the driver's
// view (as GET /api/drivers/{id} serves it) on connect and after every
// change of it (an assignment, a pickup, a delivery, a status), with the
// view's version as `id:`; and the driver's position as "position" frames
// without id, at most two a second. It is what a driver's phone listens to
// for new assignments.
func (g *Gateway) driverStream(c echo.Context) error {
	id, err := driverParam(c)
	if err != nil {
		return err
	}
	first, err := g.loadDriver(c.Request().Context(), id)
	if err != nil {
		return err
	}
	// A driver's restaurant is fixed at registration. Changes of the
	// driver's view are announced to its restaurant's watchers (the hub
	// indexes driver views by restaurant, positions by driver); the
	// version filters out the restaurant's other changes.
	rid := first.RestaurantID
	return g.serveLive(c, liveFeed{
		event: "driver",
		watch: func() (*hub.Watcher, *hub.Watcher, func()) {
			rw, stopR := g.hub.WatchRestaurant(rid)
			dw, stopD := g.hub.WatchDriver(id)
			return rw, dw, func() { stopR(); stopD() }
		},
		snapshot: func(ctx context.Context) (string, []byte, error) {
			v, err := g.loadDriver(ctx, id)
			if err != nil {
				return "", nil, err
			}
			b, err := json.Marshal(g.withPosition(ctx, v))
			return strconv.FormatUint(v.Version, 10), b, err
		},
		telemetryEvent: "position",
		loadTelemetry: func(ctx context.Context) ([]byte, error) {
			pos, err := g.position(ctx, id)
			if errors.Is(err, redis.Nil) {
				return nil, nil // never reported: nothing to show
			}
			if err != nil {
				return nil, err
			}
			return json.Marshal(pos)
		},
	})
}
