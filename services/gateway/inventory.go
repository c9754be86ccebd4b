package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
)

func (g *Gateway) registerInventory(api *echo.Group) {
	api.GET("/inventory/:restaurantId", g.getInventory)
	api.PUT("/inventory/:restaurantId/stock", g.updateStock, g.limitBody)
}

func (g *Gateway) loadInventory(ctx context.Context, rid string) ([]byte, error) {
	if events.ValidateID(rid) != nil {
		return nil, notFound("Restaurant")
	}
	raw, err := g.deps.Redis.Get(ctx, inventoryapi.StockKey(g.cfg.Keyspace, rid)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, notFound("Restaurant stock")
	}
	return raw, err
}

func (g *Gateway) getInventory(c echo.Context) error {
	raw, err := g.loadInventory(c.Request().Context(), c.Param("restaurantId"))
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, raw)
}

// updateStock restocks (adds quantities) or adjusts (sets on-hand counts
// after a stock take, with a reason).
func (g *Gateway) updateStock(c echo.Context) error {
	rid := c.Param("restaurantId")
	if events.ValidateID(rid) != nil {
		return notFound("Restaurant")
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	req, err := inventoryapi.DecodeStockUpdate(body)
	if err != nil {
		return err
	}
	if errs := req.Validate(); len(errs) > 0 {
		return inventoryapi.Validation(errs...)
	}
	key, corr := c.Request().Header.Get(HeaderIdempotencyKey), c.Get("request_id").(string)
	var cmd any = req.Restock(rid, "staff", key, corr)
	if req.Subject() == inventoryapi.SubjectAdjust {
		cmd = req.Adjust(rid, "staff", key, corr)
	}
	var reply inventoryapi.CommandReply
	if err := g.call(c.Request().Context(), req.Subject(), cmd, &reply); err != nil {
		return err
	}
	g.awaitCheckpoint(c, inventoryCheckpoint(g.cfg.Keyspace), reply.Seq)
	if reply.Replayed {
		c.Response().Header().Set(HeaderReplayed, "true")
	}
	return c.JSON(http.StatusOK, reply.Stock)
}

func inventoryCheckpoint(keyspace string) string {
	return projection.CheckpointKey(keyspace, inventoryapi.ReadModel)
}
