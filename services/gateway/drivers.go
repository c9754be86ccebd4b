package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/gateway/auth"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
)

var driverStatuses = []string{events.DriverOffline, events.DriverAvailable, events.DriverBusy, events.DriverOnBreak, events.DriverEndOfShift}

func (g *Gateway) registerDrivers(api *echo.Group) {
	api.POST("/drivers", g.registerDriver, g.limitBody)
	api.GET("/drivers", g.listDrivers)
	api.GET("/drivers/:driverId", g.getDriver)
	api.PUT("/drivers/:driverId/status", g.setDriverStatus, g.limitBody)
	api.POST("/drivers/:driverId/location", g.reportLocation, g.limitBody)
	api.POST("/drivers/:driverId/pickup", g.pickup, g.limitBody)
	api.POST("/drivers/:driverId/deliver", g.deliver, g.limitBody)
	api.POST("/orders/:orderId/assign-driver", g.assignDriver, g.limitBody)
}

func (g *Gateway) meta(c echo.Context) driversapi.CommandMeta {
	return driversapi.CommandMeta{IdempotencyKey: c.Request().Header.Get(HeaderIdempotencyKey), CorrelationID: c.Get("request_id").(string), TraceParent: c.Request().Header.Get("traceparent")}
}

// decodeBody reads and strictly decodes a driver request body.
func decodeBody[T any](c echo.Context) (T, error) {
	var zero T
	body, err := readBody(c)
	if err != nil {
		return zero, err
	}
	return driversapi.Decode[T](body)
}

// driverCommand sends a driver command and answers with the driver view
// once the read model shows it.
func (g *Gateway) driverCommand(c echo.Context, subject string, cmd any, status int) error {
	var reply driversapi.CommandReply
	if err := g.call(c.Request().Context(), subject, cmd, &reply); err != nil {
		return err
	}
	g.awaitCheckpoint(c, driversapi.CheckpointKey(g.cfg.Keyspace, reply.ReadModel), reply.Seq)
	if reply.Replayed {
		c.Response().Header().Set(HeaderReplayed, "true")
	}
	view := reply.Driver
	if pos, err := g.position(c.Request().Context(), view.DriverID); err == nil {
		view = view.WithPosition(pos)
	}
	if status == http.StatusCreated {
		c.Response().Header().Set(echo.HeaderLocation, "/api/drivers/"+view.DriverID)
	}
	return c.JSON(status, view)
}

func (g *Gateway) registerDriver(c echo.Context) error {
	req, err := decodeBody[driversapi.RegisterDriverRequest](c)
	if err != nil {
		return err
	}
	if p := principal(c); p != nil && !p.WorksAt(req.RestaurantID) {
		return notFound("Restaurant")
	}
	return g.driverCommand(c, driversapi.SubjectRegister, driversapi.RegisterCommand{DriverID: req.DriverID, Name: req.Name, RestaurantID: req.RestaurantID, Vehicle: req.Vehicle, CommandMeta: g.meta(c)}, http.StatusCreated)
}

func (g *Gateway) setDriverStatus(c echo.Context) error {
	id, err := driverParam(c)
	if err != nil {
		return err
	}
	req, err := decodeBody[driversapi.StatusRequest](c)
	if err != nil {
		return err
	}
	return g.driverCommand(c, driversapi.SubjectStatus, driversapi.StatusCommand{DriverID: id, Status: req.Status, CommandMeta: g.meta(c)}, http.StatusOK)
}

func (g *Gateway) pickup(c echo.Context) error {
	id, err := driverParam(c)
	if err != nil {
		return err
	}
	req, err := decodeBody[driversapi.OrderRequest](c)
	if err != nil {
		return err
	}
	return g.driverCommand(c, driversapi.SubjectPickup, driversapi.PickupCommand{DriverID: id, OrderID: req.OrderID, CommandMeta: g.meta(c)}, http.StatusOK)
}

func (g *Gateway) deliver(c echo.Context) error {
	id, err := driverParam(c)
	if err != nil {
		return err
	}
	req, err := decodeBody[driversapi.OrderRequest](c)
	if err != nil {
		return err
	}
	return g.driverCommand(c, driversapi.SubjectDeliver, driversapi.DeliverCommand{DriverID: id, OrderID: req.OrderID, CommandMeta: g.meta(c)}, http.StatusOK)
}

func (g *Gateway) assignDriver(c echo.Context) error {
	orderID := c.Param("orderId")
	if events.ValidateID(orderID) != nil {
		return notFound("Order")
	}
	req, err := decodeBody[driversapi.AssignDriverRequest](c)
	if err != nil {
		return err
	}
	return g.driverCommand(c, driversapi.SubjectAssign, driversapi.AssignCommand{OrderID: orderID, DriverID: req.DriverID, By: "manager", CommandMeta: g.meta(c)}, http.StatusOK)
}

func (g *Gateway) reportLocation(c echo.Context) error {
	id, err := driverParam(c)
	if err != nil {
		return err
	}
	req, err := decodeBody[driversapi.LocationRequest](c)
	if err != nil {
		return err
	}
	cmd := driversapi.LocationCommand{DriverID: id, Latitude: req.Latitude, Longitude: req.Longitude, SpeedKmh: req.SpeedKmh, Heading: req.Heading, AccuracyM: req.AccuracyM, Timestamp: req.Timestamp, CommandMeta: g.meta(c)}
	var reply driversapi.LocationReply
	if err := g.call(c.Request().Context(), driversapi.SubjectLocation, cmd, &reply); err != nil {
		return err
	}
	g.awaitCheckpoint(c, driversapi.CheckpointKey(g.cfg.Keyspace, reply.ReadModel), reply.Seq)
	if reply.Replayed {
		c.Response().Header().Set(HeaderReplayed, "true")
	}
	return c.JSON(http.StatusOK, reply.Position)
}

func driverParam(c echo.Context) (string, error) {
	id := c.Param("driverId")
	if events.ValidateID(id) != nil {
		return "", notFound("Driver")
	}
	return id, nil
}

func (g *Gateway) position(ctx context.Context, driverID string) (*driversapi.PositionView, error) {
	raw, err := g.deps.Redis.Get(ctx, driversapi.PositionKey(g.cfg.Keyspace, driverID)).Bytes()
	if err != nil {
		return nil, err
	}
	var p driversapi.PositionView
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func (g *Gateway) getDriver(c echo.Context) error {
	id, err := driverParam(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	raw, err := g.deps.Redis.Get(ctx, driversapi.DriverKey(g.cfg.Keyspace, id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return notFound("Driver")
	}
	if err != nil {
		return err
	}
	var v driversapi.DriverView
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	if pos, err := g.position(ctx, id); err == nil {
		v = v.WithPosition(pos)
	}
	return c.JSON(http.StatusOK, v)
}

// listDrivers lists drivers, of one restaurant and in one status if asked.
func (g *Gateway) listDrivers(c echo.Context) error {
	ctx := c.Request().Context()
	rid, status := c.QueryParam("restaurantId"), c.QueryParam("status")
	if status != "" && !slices.Contains(driverStatuses, status) {
		return problem.Validation(problem.FieldError{Field: "status", Detail: "must be one of " + strings.Join(driverStatuses, ", ")})
	}
	key := driversapi.AllDriversKey(g.cfg.Keyspace)
	if p := principal(c); p != nil && p.Role != auth.RoleOperator {
		if rid == "" {
			return problem.Validation(problem.FieldError{Field: "restaurantId", Detail: "name one of your restaurants"})
		}
		if !p.WorksAt(rid) {
			return notFound("Restaurant")
		}
	}
	if rid != "" {
		if _, ok := g.deps.Catalog.Restaurant(rid); !ok {
			return problem.Validation(problem.FieldError{Field: "restaurantId", Detail: "no such restaurant"})
		}
		key = driversapi.RestaurantDriversKey(g.cfg.Keyspace, rid)
	}
	views, err := g.driverViews(ctx, key)
	if err != nil {
		return err
	}
	out := make([]driversapi.DriverView, 0, len(views))
	for _, v := range views {
		if status == "" || v.Status == status {
			out = append(out, v)
		}
	}
	return c.JSON(http.StatusOK, out)
}

func (g *Gateway) driverViews(ctx context.Context, indexKey string) ([]driversapi.DriverView, error) {
	ids, err := g.deps.Redis.ZRange(ctx, indexKey, 0, -1).Result()
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	keys := make([]string, 0, 2*len(ids))
	for _, id := range ids {
		keys = append(keys, driversapi.DriverKey(g.cfg.Keyspace, id))
	}
	for _, id := range ids {
		keys = append(keys, driversapi.PositionKey(g.cfg.Keyspace, id))
	}
	vals, err := g.deps.Redis.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]driversapi.DriverView, 0, len(ids))
	for i := range ids {
		s, ok := vals[i].(string)
		if !ok {
			continue
		}
		var v driversapi.DriverView
		if json.Unmarshal([]byte(s), &v) != nil {
			continue
		}
		if ps, ok := vals[len(ids)+i].(string); ok {
			var p driversapi.PositionView
			if json.Unmarshal([]byte(ps), &p) == nil {
				v = v.WithPosition(&p)
			}
		}
		out = append(out, v)
	}
	return out, nil
}
