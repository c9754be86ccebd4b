package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
)

// Listing limits.
const (
	defaultListLimit = 20
	maxListLimit     = 100
)

type orderPage struct {
	Orders     []json.RawMessage `json:"orders"`
	NextCursor string            `json:"nextCursor,omitempty"`
}

// listRestaurantOrders pages through a restaurant's orders, newest first,
// optionally those in one status. The cursor is opaque to clients: it is
// the position of the last order returned.
func (g *Gateway) listRestaurantOrders(c echo.Context) error {
	rid := c.Param("restaurantId")
	if _, ok := g.deps.Catalog.Restaurant(rid); !ok {
		return notFound("Restaurant")
	}
	status := c.QueryParam("status")
	if status != "" && !slices.Contains(ordersapi.Statuses, status) {
		return problem.Validation(problem.FieldError{Field: "status", Detail: "must be one of " + strings.Join(ordersapi.Statuses, ", ")})
	}
	limit := defaultListLimit
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxListLimit {
			return problem.Validation(problem.FieldError{Field: "limit", Detail: "must be an integer from 1 to " + strconv.Itoa(maxListLimit)})
		}
		limit = n
	}
	max := "+"
	if cur := c.QueryParam("cursor"); cur != "" {
		if !validCursor(cur) {
			return problem.Validation(problem.FieldError{Field: "cursor", Detail: "is not a cursor returned by this API"})
		}
		max = "(" + cur
	}
	ctx := c.Request().Context()
	members, err := g.deps.Redis.ZRevRangeByLex(ctx, ordersapi.RestaurantOrdersKey(g.cfg.Keyspace, rid, status), &redis.ZRangeBy{
		Max: max, Min: "-", Count: int64(limit),
	}).Result()
	if err != nil {
		return err
	}
	page := orderPage{Orders: []json.RawMessage{}}
	if len(members) == 0 {
		return c.JSON(http.StatusOK, page)
	}
	keys := make([]string, len(members))
	for i, m := range members {
		_, id, _ := strings.Cut(m, ":")
		keys[i] = ordersapi.OrderKey(g.cfg.Keyspace, id)
	}
	vals, err := g.deps.Redis.MGet(ctx, keys...).Result()
	if err != nil {
		return err
	}
	for _, v := range vals {
		if s, ok := v.(string); ok {
			page.Orders = append(page.Orders, json.RawMessage(s))
		}
	}
	if len(members) == limit {
		page.NextCursor = members[len(members)-1]
	}
	return c.JSON(http.StatusOK, page)
}

// validCursor accepts "<13 digits>:<order id>".
func validCursor(cur string) bool {
	ms, id, ok := strings.Cut(cur, ":")
	if !ok || len(ms) != 13 {
		return false
	}
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil {
		return false
	}
	return events.ValidateID(id) == nil
}

type statusChangeRequest struct {
	Status string `json:"status"`
	Reason string `json:"reason"`
}

// overrideStatus lets staff force a valid transition by hand.
func (g *Gateway) overrideStatus(c echo.Context) error {
	id := c.Param("orderId")
	if events.ValidateID(id) != nil {
		return notFound("Order")
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	var req statusChangeRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if req.Status == "" {
		return problem.Validation(problem.FieldError{Field: "status", Detail: "is required"})
	}
	if len(req.Reason) > ordersapi.MaxReasonLength {
		return problem.Validation(problem.FieldError{Field: "reason", Detail: "is too long"})
	}
	cmd := ordersapi.TransitionCommand{OrderID: id, Status: req.Status, Reason: req.Reason, By: "staff", Override: true,
		IdempotencyKey: c.Request().Header.Get(HeaderIdempotencyKey), CorrelationID: c.Get("request_id").(string), TraceParent: c.Request().Header.Get("traceparent")}
	mark := g.hub.Mark()
	reply, err := g.command(c.Request().Context(), ordersapi.SubjectTransition, cmd)
	if err != nil {
		return err
	}
	g.awaitProjection(c, mark, reply)
	if reply.Replayed {
		c.Response().Header().Set(HeaderReplayed, "true")
	}
	return c.JSON(http.StatusOK, reply.Order)
}

// decodeJSON decodes a small JSON body strictly (one object, no unknown
// fields) into dst, answering 400 problems that name the field.
func decodeJSON(body []byte, dst any) error {
	err := problem.DecodeStrict(body, dst)
	var p *problem.Problem
	if errors.As(err, &p) {
		return p
	}
	return err
}
