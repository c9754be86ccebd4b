package gateway

import (
	"context"

	"github.com/awesome-pizza/pizza/services/gateway/internal/hub"
	"github.com/labstack/echo/v4"
)

// streamRestaurant serves a restaurant-level live view over SSE (the
// kitchen display): the snapshot on connect, then a new snapshot after
// changes of a read model concerning the restaurant, at most four a second
// (restaurantSnapshotInterval; the newest always goes out). id: is the
// snapshot's version; a client reconnecting with Last-Event-ID gets the
// snapshot only if it changed meanwhile (each snapshot is complete, so
// nothing is missed). It is a liveFeed without telemetry (serveLive).
func (g *Gateway) streamRestaurant(c echo.Context, rid, event string, load func(context.Context) (string, []byte, error)) error {
	if _, ok := g.deps.Catalog.Restaurant(rid); !ok {
		return notFound("Restaurant")
	}
	return g.serveLive(c, liveFeed{
		event: event,
		watch: func() (*hub.Watcher, *hub.Watcher, func()) {
			w, stop := g.hub.WatchRestaurant(rid)
			return w, nil, stop
		},
		snapshot:      load,
		snapshotEvery: restaurantSnapshotInterval,
	})
}
