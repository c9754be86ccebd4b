package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
	"github.com/labstack/echo/v4"
)

func (g *Gateway) registerKitchen(api *echo.Group) {
	api.GET("/kitchen/:restaurantId/queue", g.kitchenQueue)
	api.GET("/kitchen/:restaurantId/stream", g.kitchenStream)
	api.POST("/kitchen/:restaurantId/chefs/:chefId/break", g.chefBreak, g.limitBody)
}

// loadKitchen returns the kitchen display of a restaurant (an empty one
// before the first ticket) and its version.
func (g *Gateway) loadKitchen(ctx context.Context, rid string) ([]byte, uint64, error) {
	r, ok := g.deps.Catalog.Restaurant(rid)
	if !ok {
		return nil, 0, notFound("Restaurant")
	}
	d, err := kitchenapi.LoadDisplay(ctx, g.deps.Redis, g.cfg.Keyspace, rid)
	if errors.Is(err, kitchenapi.ErrNoDisplay) {
		d = kitchenapi.EmptyDisplay(r)
	} else if err != nil {
		return nil, 0, err
	}
	raw, err := d.AppendJSON(nil)
	return raw, d.Version, err
}

func (g *Gateway) kitchenQueue(c echo.Context) error {
	raw, _, err := g.loadKitchen(c.Request().Context(), c.Param("restaurantId"))
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, raw)
}

// kitchenStream is the live kitchen display: the display on connect, then
// after every change; id: is the display's version.
func (g *Gateway) kitchenStream(c echo.Context) error {
	rid := c.Param("restaurantId")
	return g.streamRestaurant(c, rid, "kitchen", func(ctx context.Context) (string, []byte, error) {
		raw, v, err := g.loadKitchen(ctx, rid)
		return strconv.FormatUint(v, 10), raw, err
	})
}

func (g *Gateway) chefBreak(c echo.Context) error {
	rid, chef := c.Param("restaurantId"), c.Param("chefId")
	if _, ok := g.deps.Catalog.Restaurant(rid); !ok || events.ValidateID(chef) != nil {
		return notFound("Chef")
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	req, err := kitchenapi.DecodeChefBreakRequest(body)
	if err != nil {
		return err
	}
	cmd := kitchenapi.ChefBreakCommand{ChefID: chef, RestaurantID: rid, OnBreak: req.OnBreak, By: "staff",
		IdempotencyKey: c.Request().Header.Get(HeaderIdempotencyKey), CorrelationID: c.Get("request_id").(string), TraceParent: c.Request().Header.Get("traceparent")}
	var reply kitchenapi.ChefBreakReply
	if err := g.call(c.Request().Context(), kitchenapi.SubjectChefBreak, cmd, &reply); err != nil {
		return err
	}
	g.awaitCheckpoint(c, kitchenapi.CheckpointKey(g.cfg.Keyspace), reply.Seq)
	if reply.Replayed {
		c.Response().Header().Set(HeaderReplayed, "true")
	}
	return c.JSON(http.StatusOK, reply)
}
