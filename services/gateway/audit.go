package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/labstack/echo/v4"
)

// orderHistory lists every event of an order's life across contexts, with
// its stream, sequence, times, type, schema version and causal ids.
func (g *Gateway) orderHistory(c echo.Context) error {
	id := c.Param("orderId")
	if events.ValidateID(id) != nil {
		return notFound("Order")
	}
	var reply ordersapi.HistoryReply
	if err := g.call(c.Request().Context(), ordersapi.SubjectHistory, ordersapi.HistoryQuery{OrderID: id}, &reply); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, reply)
}

// orderAsOf answers GET /api/orders/{id}?asOf=<RFC 3339 time or sequence>:
// the order folded from the log up to that point.
func (g *Gateway) orderAsOf(c echo.Context, id, asOf string) error {
	q := ordersapi.AsOfQuery{OrderID: id}
	if seq, err := strconv.ParseUint(asOf, 10, 64); err == nil && seq > 0 {
		q.Seq = seq
	} else if t, err := time.Parse(time.RFC3339Nano, asOf); err == nil {
		q.At = &t
	} else {
		return problem.Validation(problem.FieldError{Field: "asOf", Detail: "must be an RFC 3339 time or a positive event sequence"})
	}
	var reply ordersapi.CommandReply
	if err := g.call(c.Request().Context(), ordersapi.SubjectAsOf, q, &reply); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, reply.Order)
}

// erasePersonalData erases a customer's personal data (a privacy request):
// their orders stay, their addresses go.
func (g *Gateway) erasePersonalData(c echo.Context) error {
	id := c.Param("customerId")
	if events.ValidateID(id) != nil {
		return notFound("Customer")
	}
	var reply ordersapi.EraseReply
	if err := g.call(c.Request().Context(), ordersapi.SubjectErase, ordersapi.EraseCommand{CustomerID: id, By: "staff"}, &reply); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, reply)
}
