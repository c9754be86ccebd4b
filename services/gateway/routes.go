package gateway

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/pkg/tracing"
	"github.com/awesome-pizza/pizza/services/gateway/auth"
	"github.com/awesome-pizza/pizza/services/gateway/internal/hub"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
)

// Headers of the API.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderReplayed       = "Idempotent-Replayed"
	HeaderRequestID      = "X-Request-Id"
	HeaderConsistency    = "Pizza-Read-Your-Writes"
)

func (g *Gateway) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = g.errorHandler
	e.IPExtractor = ipExtractor(g.cfg.TrustedProxies)
	e.Use(g.recoverer, g.requestID, g.traced, securityHeaders, g.observe)
	if len(g.cfg.CORSOrigins) > 0 {
		e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins:  g.cfg.CORSOrigins,
			AllowMethods:  []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete},
			AllowHeaders:  []string{echo.HeaderAuthorization, echo.HeaderContentType, HeaderIdempotencyKey, "Last-Event-ID", HeaderRequestID},
			ExposeHeaders: []string{echo.HeaderLocation, HeaderReplayed, HeaderConsistency, HeaderRequestID, regionHeader, "Retry-After"},
			MaxAge:        600,
		}))
	}

	e.GET("/healthz", g.healthz)
	e.GET("/readyz", g.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(g.deps.Metrics, promhttp.HandlerOpts{Registry: g.deps.Metrics})))
	e.GET("/openapi.yaml", func(c echo.Context) error { return c.Blob(http.StatusOK, "application/yaml", openAPIDocument) })

	api := e.Group("/api", checkIdempotencyKey, g.authenticate, g.rateLimit, g.authorize)
	api.GET("/restaurants", g.listRestaurants)
	api.GET("/menu/:restaurantId", g.getMenu)
	api.POST("/orders", g.placeOrder, g.limitBody)
	api.GET("/orders/:orderId", g.getOrder)
	api.POST("/orders/:orderId/cancel", g.cancelOrder, g.limitBody)
	api.GET("/orders/:orderId/track", g.trackOrder)
	api.GET("/orders/:orderId/events", g.orderHistory)
	api.DELETE("/customers/:customerId/personal-data", g.erasePersonalData)
	api.PUT("/orders/:orderId/status", g.overrideStatus, g.limitBody)
	api.GET("/restaurants/:restaurantId/orders", g.listRestaurantOrders)
	g.registerKitchen(api)
	g.registerInventory(api)
	g.registerDrivers(api)
	g.registerDashboard(api)
	g.registerDevices(api)
	g.registerUI(e)
	return e
}

// --- middleware ---

func (g *Gateway) recoverer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				g.deps.Log.ErrorContext(c.Request().Context(), "handler panic", "path", c.Request().URL.Path, "panic", r)
				err = errors.New("internal error")
			}
		}()
		return next(c)
	}
}

func (g *Gateway) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(HeaderRequestID)
		if id == "" || len(id) > 128 {
			id = uuid.NewString()
		}
		c.Set("request_id", id)
		c.Response().Header().Set(HeaderRequestID, id)
		return next(c)
	}
}

// limitBody rejects bodies over the limit (413) and non-JSON bodies (415).
func (g *Gateway) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength > g.cfg.MaxBodyBytes {
			return tooLarge(g.cfg.MaxBodyBytes)
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || (mt != "application/json" && mt != "application/problem+json") {
				return &ordersapi.Problem{Type: ordersapi.TypeUnsupportedMediaType, Title: "Unsupported media type", Status: http.StatusUnsupportedMediaType, Detail: "send application/json"}
			}
		}
		r.Body = http.MaxBytesReader(c.Response(), r.Body, g.cfg.MaxBodyBytes)
		return next(c)
	}
}

// traced starts the request's span, continuing a caller's traceparent.
func (g *Gateway) traced(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		ctx := tracing.ExtractHTTP(r.Context(), tracing.HTTPCarrier(r.Header))
		route := c.Path()
		if route == "" {
			route = r.URL.Path
		}
		ctx, span := tracing.Start(ctx, r.Method+" "+route, trace.SpanKindServer, "http.method", r.Method, "http.route", route)
		defer span.End()
		c.SetRequest(r.WithContext(ctx))
		return next(c)
	}
}

// checkIdempotencyKey bounds the Idempotency-Key header on every route.
func checkIdempotencyKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if len(c.Request().Header.Get(HeaderIdempotencyKey)) > ordersapi.MaxIdempotencyKey {
			return ordersapi.Validation(ordersapi.FieldError{Field: HeaderIdempotencyKey, Detail: "is longer than " + strconv.Itoa(ordersapi.MaxIdempotencyKey) + " characters"})
		}
		return next(c)
	}
}

func readBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request().Body)
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return nil, tooLarge(mb.Limit)
	}
	return b, err
}

// --- health ---

func (g *Gateway) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (g *Gateway) readyz(c echo.Context) error {
	failures := service.RunChecks(c.Request().Context(), g.readiness())
	status := http.StatusOK
	if len(failures) > 0 {
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, map[string]any{"ready": len(failures) == 0, "failures": failures})
}

// --- restaurants and menu ---

type restaurantView struct {
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	Address  string          `json:"address"`
	Location events.GeoPoint `json:"location"`
}

func (g *Gateway) listRestaurants(c echo.Context) error {
	out := make([]restaurantView, 0, len(g.deps.Catalog.Restaurants))
	for _, r := range g.deps.Catalog.Restaurants {
		out = append(out, restaurantView{ID: r.ID, Name: r.Name, Address: r.Address, Location: r.Location})
	}
	return c.JSON(http.StatusOK, out)
}

type menuView struct {
	RestaurantID string        `json:"restaurantId"`
	Currency     string        `json:"currency"`
	Sizes        []string      `json:"sizes"`
	Pizzas       []menuPizza   `json:"pizzas"`
	Toppings     []menuTopping `json:"toppings"`
}

type menuPizza struct {
	PizzaType   string           `json:"pizzaType"`
	Name        string           `json:"name"`
	Description string           `json:"description"`
	PriceCents  map[string]int64 `json:"priceCents"`
}

type menuTopping struct {
	Name       string           `json:"name"`
	PriceCents map[string]int64 `json:"priceCents"`
}

func (g *Gateway) getMenu(c echo.Context) error {
	id := c.Param("restaurantId")
	pizzas, ok := g.deps.Catalog.MenuFor(id)
	if !ok {
		return notFound("Restaurant")
	}
	mv := menuView{RestaurantID: id, Currency: g.deps.Catalog.Currency, Sizes: catalog.Sizes}
	for _, p := range pizzas {
		mv.Pizzas = append(mv.Pizzas, menuPizza{PizzaType: p.Type, Name: p.Name, Description: p.Description, PriceCents: p.PriceCents})
	}
	for _, t := range g.deps.Catalog.Menu.Toppings {
		mv.Toppings = append(mv.Toppings, menuTopping{Name: t.Name, PriceCents: t.PriceCents})
	}
	return c.JSON(http.StatusOK, mv)
}

// --- orders ---

func (g *Gateway) placeOrder(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	req, err := ordersapi.DecodePlaceOrder(body)
	if err != nil {
		return err
	}
	// Reject what is certainly invalid here; the orders service checks again
	// (and checks the menu) before anything is appended.
	if errs := req.Validate(); len(errs) > 0 {
		return ordersapi.Validation(errs...)
	}
	if p := principal(c); p != nil && p.Role == auth.RoleCustomer && req.CustomerID != p.Subject {
		return forbidden("customers place orders for themselves: customerId must be your own id")
	}
	key := c.Request().Header.Get(HeaderIdempotencyKey)
	if len(key) > ordersapi.MaxIdempotencyKey {
		return ordersapi.Validation(ordersapi.FieldError{Field: HeaderIdempotencyKey, Detail: "is longer than " + strconv.Itoa(ordersapi.MaxIdempotencyKey) + " characters"})
	}
	cmd := ordersapi.PlaceCommand{Request: req, IdempotencyKey: key, CorrelationID: c.Get("request_id").(string), TraceParent: c.Request().Header.Get("traceparent")}
	subject, err := g.subjectFor(req.RestaurantID, ordersapi.SubjectPlace)
	if err != nil {
		return err
	}
	mark := g.hub.Mark()
	reply, err := g.command(c.Request().Context(), subject, cmd)
	if err != nil {
		return err
	}
	g.m.ordersPlaced.Inc()
	g.markRegion(c.Response().Header(), req.RestaurantID)
	if g.remote(req.RestaurantID) {
		// The order lives in its restaurant's region: this gateway's read
		// models will never show it, so there is nothing to wait for.
		c.Response().Header().Set(HeaderConsistency, "remote")
	} else {
		g.awaitProjection(c, mark, reply)
	}
	if reply.Replayed {
		c.Response().Header().Set(HeaderReplayed, "true")
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/orders/"+reply.Order.OrderID)
	return c.JSON(http.StatusCreated, reply.Order)
}

func (g *Gateway) getOrder(c echo.Context) error {
	id := c.Param("orderId")
	if events.ValidateID(id) != nil {
		return notFound("Order")
	}
	if asOf := c.QueryParam("asOf"); asOf != "" {
		return g.orderAsOf(c, id, asOf)
	}
	_, raw, err := g.hub.Load(c.Request().Context(), id)
	if errors.Is(err, hub.ErrNotFound) {
		return notFound("Order")
	}
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, raw)
}

func (g *Gateway) cancelOrder(c echo.Context) error {
	id := c.Param("orderId")
	if events.ValidateID(id) != nil {
		return notFound("Order")
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	reason, err := ordersapi.DecodeCancel(body)
	if err != nil {
		return err
	}
	cmd := ordersapi.CancelCommand{OrderID: id, Reason: reason, CancelledBy: "customer", IdempotencyKey: c.Request().Header.Get(HeaderIdempotencyKey), CorrelationID: c.Get("request_id").(string), TraceParent: c.Request().Header.Get("traceparent")}
	mark := g.hub.Mark()
	reply, err := g.command(c.Request().Context(), ordersapi.SubjectCancel, cmd)
	if err != nil {
		return err
	}
	g.awaitProjection(c, mark, reply)
	if reply.Replayed {
		c.Response().Header().Set(HeaderReplayed, "true")
	}
	return c.JSON(http.StatusOK, reply.Order)
}

// awaitProjection waits, bounded, until the order read model shows the
// command's result, so the client's next read sees its own write. mark is
// the hub's mark taken before the command was sent.
func (g *Gateway) awaitProjection(c echo.Context, mark hub.Mark, reply ordersapi.CommandReply) {
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.cfg.ReadYourWritesTimeout)
	defer cancel()
	if reply.Replayed {
		// The result was stored by the first attempt, perhaps long
		// before mark: the hub's memory cannot vouch for it.
		mark = hub.Mark{}
	}
	start := time.Now()
	err := g.hub.WaitFor(ctx, mark, reply.Order.OrderID, reply.Seq)
	g.m.rywWait.Observe(time.Since(start).Seconds())
	if err != nil {
		g.m.rywTimeouts.Inc()
		g.deps.Log.WarnContext(c.Request().Context(), "read model did not reach the command's result in time", "order_id", reply.Order.OrderID, "seq", reply.Seq, "err", err)
		c.Response().Header().Set(HeaderConsistency, "pending")
		return
	}
	c.Response().Header().Set(HeaderConsistency, "ok")
}

// command sends an order command and decodes the reply.
func (g *Gateway) command(ctx context.Context, subject string, cmd any) (ordersapi.CommandReply, error) {
	var reply ordersapi.CommandReply
	err := g.call(ctx, subject, cmd, &reply)
	return reply, err
}

// call sends a command to its service over NATS request/reply and decodes
// the reply into reply; a typed error reply becomes the problem it carries.
func (g *Gateway) call(ctx context.Context, subject string, cmd, reply any) error {
	data, err := codec.Marshal(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.CommandTimeout)
	defer cancel()
	ctx, span := tracing.Start(ctx, "request "+subject, trace.SpanKindClient)
	defer span.End()
	req := nats.NewMsg(subject)
	req.Data = data
	tracing.InjectNATS(ctx, req.Header)
	msg, err := g.deps.NC.RequestMsgWithContext(ctx, req)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return &ordersapi.Problem{Type: ordersapi.TypeUnavailable, Title: "The service is unavailable", Status: http.StatusServiceUnavailable, Detail: "no instance is serving " + subject}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return &ordersapi.Problem{Type: ordersapi.TypeUnavailable, Title: "The service did not answer in time", Status: http.StatusServiceUnavailable, Detail: "the command may or may not have been applied; retry with the same Idempotency-Key"}
	case err != nil:
		return err
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		var p ordersapi.Problem
		if codec.Unmarshal(msg.Data, &p) != nil || p.Status == 0 {
			status, _ := strconv.Atoi(code)
			if status < 400 || status > 599 {
				status = http.StatusBadGateway
			}
			p = ordersapi.Problem{Type: ordersapi.TypeInternal, Title: msg.Header.Get("Nats-Service-Error"), Status: status}
		}
		return &p
	}
	return codec.Unmarshal(msg.Data, reply)
}

// awaitCheckpoint waits, bounded, until a read model's checkpoint reaches
// seq (read-your-writes for commands whose reply names no single document).
func (g *Gateway) awaitCheckpoint(c echo.Context, key string, seq uint64) {
	ctx, cancel := context.WithTimeout(c.Request().Context(), g.cfg.ReadYourWritesTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		cp, err := g.deps.Redis.Get(ctx, key).Uint64()
		if err == nil && cp >= seq {
			c.Response().Header().Set(HeaderConsistency, "ok")
			return
		}
		select {
		case <-ctx.Done():
			g.m.rywTimeouts.Inc()
			c.Response().Header().Set(HeaderConsistency, "pending")
			return
		case <-tick.C:
		}
	}
}
