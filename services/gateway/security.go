package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/services/gateway/auth"
	"github.com/awesome-pizza/pizza/services/gateway/internal/hub"
	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// Problem types of the edge.
const (
	TypeUnauthorized = problem.ProblemBase + "unauthorized"
	TypeForbidden    = problem.ProblemBase + "forbidden"
)

func unauthorized(detail string) *problem.Problem {
	return &problem.Problem{Type: TypeUnauthorized, Title: "Authentication required", Status: http.StatusUnauthorized, Detail: detail}
}

func forbidden(detail string) *problem.Problem {
	return &problem.Problem{Type: TypeForbidden, Title: "Not allowed for your role", Status: http.StatusForbidden, Detail: detail}
}

// policy decides whether the principal (nil: anonymous) may use a route on
// the objects it names. Objects the principal may not see answer 404, like
// objects that do not exist, so ids cannot be probed.
type policy func(g *Gateway, c echo.Context, p *auth.Principal) error

const principalKey = "principal"

// principal returns the caller, if authenticated.
func principal(c echo.Context) *auth.Principal {
	p, _ := c.Get(principalKey).(*auth.Principal)
	return p
}

// authenticate reads the bearer token (or, for event streams, which
// browsers open without headers, the access_token query parameter) and,
// when valid, records the principal. Without keys configured, every caller
// is the platform operator (development only; announced at start).
func (g *Gateway) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if g.deps.Auth == nil {
			c.Set(principalKey, &auth.Principal{Subject: "dev-operator", Role: auth.RoleOperator})
			return next(c)
		}
		token := auth.BearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
		if token == "" && c.Request().Method == http.MethodGet {
			token = c.QueryParam("access_token")
		}
		if token != "" {
			p, err := g.deps.Auth.Verify(token)
			if err != nil {
				return unauthorized("the bearer token is not valid")
			}
			c.Set(principalKey, &p)
		}
		return next(c)
	}
}

// authorize applies the route's policy. A route without a policy is
// refused: access is granted on purpose, never by omission.
func (g *Gateway) authorize(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Path() == "/api" || c.Path() == "/api/*" {
			return next(c) // no such route: the not-found handler answers 404
		}
		pol, ok := g.policies[c.Request().Method+" "+c.Path()]
		if !ok {
			g.deps.Log.ErrorContext(c.Request().Context(), "route has no access policy", "method", c.Request().Method, "route", c.Path())
			return forbidden("this route has no access policy")
		}
		if err := pol(g, c, principal(c)); err != nil {
			return err
		}
		return next(c)
	}
}

// --- policies ---

func public(*Gateway, echo.Context, *auth.Principal) error { return nil }

// roles admits the listed roles (and the operator) without object checks.
func roles(allowed ...string) policy {
	return func(_ *Gateway, _ echo.Context, p *auth.Principal) error {
		if p == nil {
			return unauthorized("send a bearer token")
		}
		if p.Role == auth.RoleOperator || slices.Contains(allowed, p.Role) {
			return nil
		}
		return forbidden("the route is not open to role " + p.Role)
	}
}

// restaurantStaff admits staff of the restaurant in the path.
func restaurantStaff(allowed ...string) policy {
	return func(g *Gateway, c echo.Context, p *auth.Principal) error {
		if err := roles(allowed...)(g, c, p); err != nil {
			return err
		}
		if !p.WorksAt(c.Param("restaurantId")) {
			return notFound("Restaurant")
		}
		return nil
	}
}

// orderAccess admits the order's customer, its assigned driver, and staff
// of its restaurant in the listed roles.
func orderAccess(customer, driver bool, staff ...string) policy {
	return func(g *Gateway, c echo.Context, p *auth.Principal) error {
		if p == nil {
			return unauthorized("send a bearer token")
		}
		id := c.Param("orderId")
		if events.ValidateID(id) != nil {
			return notFound("Order")
		}
		view, _, err := g.hub.Load(c.Request().Context(), id)
		if errors.Is(err, hub.ErrNotFound) {
			return notFound("Order")
		}
		if err != nil {
			return err
		}
		switch {
		case p.Role == auth.RoleOperator,
			customer && p.Role == auth.RoleCustomer && view.CustomerID == p.Subject,
			driver && p.Role == auth.RoleDriver && view.AssignedDriverID != nil && *view.AssignedDriverID == p.Subject,
			slices.Contains(staff, p.Role) && p.WorksAt(view.RestaurantID):
			return nil
		}
		if !slices.Contains(staff, p.Role) && !(customer && p.Role == auth.RoleCustomer) && !(driver && p.Role == auth.RoleDriver) {
			return forbidden("the route is not open to role " + p.Role)
		}
		return notFound("Order")
	}
}

// driverAccess admits the driver themself (when self is set) and managers
// of the driver's restaurant.
func driverAccess(self bool) policy {
	return func(g *Gateway, c echo.Context, p *auth.Principal) error {
		if p == nil {
			return unauthorized("send a bearer token")
		}
		id := c.Param("driverId")
		if p.Role == auth.RoleOperator || (self && p.Role == auth.RoleDriver && p.Subject == id) {
			return nil
		}
		switch p.Role {
		case auth.RoleManager:
			rid, err := g.driverRestaurant(c.Request().Context(), id)
			if err != nil || !p.WorksAt(rid) {
				return notFound("Driver")
			}
			return nil
		case auth.RoleDriver:
			return notFound("Driver")
		}
		return forbidden("the route is not open to role " + p.Role)
	}
}

// driverRestaurant returns the restaurant of a registered driver.
func (g *Gateway) driverRestaurant(ctx context.Context, driverID string) (string, error) {
	v, err := g.loadDriver(ctx, driverID)
	return v.RestaurantID, err
}

// customerSelf admits a customer acting on their own data.
func customerSelf(_ *Gateway, c echo.Context, p *auth.Principal) error {
	if p == nil {
		return unauthorized("send a bearer token")
	}
	if p.Role == auth.RoleOperator || (p.Role == auth.RoleCustomer && p.Subject == c.Param("customerId")) {
		return nil
	}
	if p.Role == auth.RoleCustomer {
		return notFound("Customer")
	}
	return forbidden("the route is not open to role " + p.Role)
}

// policies maps every route ("METHOD /path" as registered) to its policy.
func (g *Gateway) accessPolicies() map[string]policy {
	staff := []string{auth.RoleManager}
	kitchenStaff := []string{auth.RoleKitchen, auth.RoleManager}
	return map[string]policy{
		"GET /api/restaurants":                                public,
		"GET /api/menu/:restaurantId":                         public,
		"POST /api/orders":                                    roles(auth.RoleCustomer),
		"GET /api/orders/:orderId":                            orderAccess(true, true, staff...),
		"POST /api/orders/:orderId/cancel":                    orderAccess(true, false, staff...),
		"GET /api/orders/:orderId/track":                      orderAccess(true, true, staff...),
		"GET /api/orders/:orderId/events":                     orderAccess(true, false, staff...),
		"PUT /api/orders/:orderId/status":                     orderAccess(false, false, staff...),
		"POST /api/orders/:orderId/assign-driver":             orderAccess(false, false, staff...),
		"DELETE /api/customers/:customerId/personal-data":     customerSelf,
		"GET /api/restaurants/:restaurantId/orders":           restaurantStaff(staff...),
		"GET /api/kitchen/:restaurantId/queue":                restaurantStaff(kitchenStaff...),
		"GET /api/kitchen/:restaurantId/stream":               restaurantStaff(kitchenStaff...),
		"POST /api/kitchen/:restaurantId/chefs/:chefId/break": restaurantStaff(kitchenStaff...),
		"GET /api/inventory/:restaurantId":                    restaurantStaff(kitchenStaff...),
		"PUT /api/inventory/:restaurantId/stock":              restaurantStaff(staff...),
		"POST /api/drivers":                                   roles(auth.RoleManager),
		"GET /api/drivers":                                    roles(auth.RoleManager),
		"GET /api/drivers/:driverId":                          driverAccess(true),
		"GET /api/drivers/:driverId/stream":                   driverAccess(true),
		"PUT /api/drivers/:driverId/status":                   driverAccess(true),
		"POST /api/drivers/:driverId/location":                driverAccess(true),
		"POST /api/drivers/:driverId/pickup":                  driverAccess(true),
		"POST /api/drivers/:driverId/deliver":                 driverAccess(true),
		"POST /api/drivers/:driverId/credentials":             driverAccess(false),
		"POST /api/kitchens/:restaurantId/credentials":        restaurantStaff(staff...),
		"GET /api/kitchens/:restaurantId/telemetry":           restaurantStaff(kitchenStaff...),
		"GET /api/dashboard/:restaurantId":                    restaurantStaff(staff...),
		"GET /api/dashboard/:restaurantId/stream":             restaurantStaff(staff...),
		"GET /api/global/dashboard":                           roles(), // operators only
	}
}

// --- limits ---

// limiter keeps one token bucket per key (a user or a client address),
// forgetting keys idle for a while.
type limiter struct {
	mu      sync.Mutex
	perSec  rate.Limit
	burst   int
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(perSec float64, burst int) *limiter {
	return &limiter{perSec: rate.Limit(perSec), burst: burst, buckets: map[string]*bucket{}, swept: time.Now()}
}

// allow takes a token for key, or says how long to wait for one.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > 5*time.Minute {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.perSec, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// rateLimit limits requests per client address and per authenticated user.
func (g *Gateway) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		now := time.Now()
		keys := []string{"ip:" + c.RealIP()}
		if p := principal(c); p != nil && p.Role != auth.RoleOperator {
			keys = append(keys, "user:"+p.Role+":"+p.Subject)
		}
		for _, k := range keys {
			if ok, wait := g.limits.allow(k, now); !ok {
				secs := int(math.Ceil(wait.Seconds()))
				c.Response().Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
				return &problem.Problem{Type: problem.TypeRateLimited, Title: "Too many requests", Status: http.StatusTooManyRequests,
					Detail: fmt.Sprintf("slow down; retry in %d s", max(secs, 1))}
			}
		}
		return next(c)
	}
}

// streamSlot takes one of the caller's concurrent SSE streams, or refuses.
func (g *Gateway) streamSlot(c echo.Context) (release func(), err error) {
	key := "ip:" + c.RealIP()
	if p := principal(c); p != nil && p.Role != auth.RoleOperator {
		key = "user:" + p.Role + ":" + p.Subject
	}
	g.streamMu.Lock()
	defer g.streamMu.Unlock()
	if g.streamCount[key] >= g.cfg.MaxStreamsPerUser {
		c.Response().Header().Set("Retry-After", "5")
		return nil, &problem.Problem{Type: problem.TypeRateLimited, Title: "Too many open streams", Status: http.StatusTooManyRequests,
			Detail: fmt.Sprintf("at most %d concurrent streams per user", g.cfg.MaxStreamsPerUser)}
	}
	g.streamCount[key]++
	return func() {
		g.streamMu.Lock()
		defer g.streamMu.Unlock()
		if g.streamCount[key]--; g.streamCount[key] <= 0 {
			delete(g.streamCount, key)
		}
	}, nil
}

// ipExtractor takes the client address from X-Forwarded-For only when the
// connection comes from a configured trusted proxy; otherwise the header
// is ignored and the peer address is used.
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		opts = append(opts, echo.TrustIPRange(prefixNet(p)))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// securityHeaders sets the headers every response carries.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		return next(c)
	}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}
