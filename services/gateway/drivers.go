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
	api.GET("/drivers/:driverId/stream", g.driverStream)
	api.PUT("/drivers/:driverId/status", driverRoute(g, driversapi.SubjectStatus,
		func(id string, req driversapi.StatusRequest, meta driversapi.CommandMeta) any {
			return driversapi.StatusCommand{DriverID: id, Status: req.Status, CommandMeta: meta}
		}), g.limitBody)
	api.POST("/drivers/:driverId/location", g.reportLocation, g.limitBody)
	api.POST("/drivers/:driverId/pickup", driverRoute(g, driversapi.SubjectPickup,
		func(id string, req driversapi.OrderRequest, meta driversapi.CommandMeta) any {
			return driversapi.PickupCommand{DriverID: id, OrderID: req.OrderID, CommandMeta: meta}
		}), g.limitBody)
	api.POST("/drivers/:driverId/deliver", driverRoute(g, driversapi.SubjectDeliver,
		func(id string, req driversapi.OrderRequest, meta driversapi.CommandMeta) any {
			return driversapi.DeliverCommand{DriverID: id, OrderID: req.OrderID, CommandMeta: meta}
		}), g.limitBody)
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

// driverRoute serves a command on the driver named in the path: it checks
// the id, decodes the body as Req, builds the command and answers with the
// driver as the command left it.
func driverRoute[Req any](g *Gateway, subject string, build func(driverID string, req Req, meta driversapi.CommandMeta) any) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := driverParam(c)
		if err != nil {
			return err
		}
		req, err := decodeBody[Req](c)
		if err != nil {
			return err
		}
		return g.driverCommand(c, subject, build(id, req, g.meta(c)), http.StatusOK)
	}
}

// driverCommand sends a driver command and answers with the driver view
// once the read model shows it.
func (g *Gateway) driverCommand(c echo.Context, subject string, cmd any, status int) error {
	var reply driversapi.CommandReply
	if err := g.call(c.Request().Context(), subject, cmd, &reply); err != nil {
		return err
	}
	g.settle(c, reply.ReadModel, reply.Seq, reply.Replayed)
	view := g.withPosition(c.Request().Context(), reply.Driver)
	if status == http.StatusCreated {
		c.Response().Header().Set(echo.HeaderLocation, "/api/drivers/"+view.DriverID)
	}
	return c.JSON(status, view)
}

// settle waits, bounded, for the read model to reach a driver command's
// sequence (read-your-writes) and marks a replayed command.
func (g *Gateway) settle(c echo.Context, readModel string, seq uint64, replayed bool) {
	g.awaitCheckpoint(c, driversapi.CheckpointKey(g.cfg.Keyspace, readModel), seq)
	if replayed {
		c.Response().Header().Set(HeaderReplayed, "true")
	}
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
	g.settle(c, reply.ReadModel, reply.Seq, reply.Replayed)
	return c.JSON(http.StatusOK, reply.Position)
}

func driverParam(c echo.Context) (string, error) {
	id := c.Param("driverId")
	if events.ValidateID(id) != nil {
		return "", notFound("Driver")
	}
	return id, nil
}

// loadDriver reads a driver's view as stored (without its position);
// an unknown driver is a not-found problem.
func (g *Gateway) loadDriver(ctx context.Context, driverID string) (driversapi.DriverView, error) {
	var v driversapi.DriverView
	if events.ValidateID(driverID) != nil {
		return v, notFound("Driver")
	}
	raw, err := g.deps.Redis.Get(ctx, driversapi.DriverKey(g.cfg.Keyspace, driverID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return v, notFound("Driver")
	}
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, err
	}
	return v, nil
}

// position reads a driver's last fix; redis.Nil when it never reported one.
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

// withPosition merges the driver's last fix, when there is one, into the view.
func (g *Gateway) withPosition(ctx context.Context, v driversapi.DriverView) driversapi.DriverView {
	if pos, err := g.position(ctx, v.DriverID); err == nil {
		return v.WithPosition(pos)
	}
	return v
}

func (g *Gateway) getDriver(c echo.Context) error {
	id, err := driverParam(c)
	if err != nil {
		return err
	}
	v, err := g.loadDriver(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, g.withPosition(c.Request().Context(), v))
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

// driverViews reads the drivers of an index (a sorted set of driver ids)
// with their positions merged in, in the index's order.
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
		var v driversapi.DriverView
		if !decodeValue(vals[i], &v) {
			continue
		}
		var p driversapi.PositionView
		if decodeValue(vals[len(ids)+i], &p) {
			v = v.WithPosition(&p)
		}
		out = append(out, v)
	}
	return out, nil
}

// driverPositions reads the last fixes of the drivers of an index, in the
// index's order; drivers that never reported are left out.
func (g *Gateway) driverPositions(ctx context.Context, indexKey string) ([]driversapi.PositionView, error) {
	ids, err := g.deps.Redis.ZRange(ctx, indexKey, 0, -1).Result()
	if err != nil || len(ids) == 0 {
		return []driversapi.PositionView{}, err
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = driversapi.PositionKey(g.cfg.Keyspace, id)
	}
	vals, err := g.deps.Redis.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]driversapi.PositionView, 0, len(ids))
	for _, val := range vals {
		var p driversapi.PositionView
		if decodeValue(val, &p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// decodeValue decodes a JSON string of an MGET answer; false for a
// missing key or a value that does not decode.
func decodeValue(val any, dst any) bool {
	s, ok := val.(string)
	return ok && json.Unmarshal([]byte(s), dst) == nil
}
