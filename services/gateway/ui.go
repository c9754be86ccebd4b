package gateway

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
)

// The web UI: plain HTML, CSS and JavaScript modules embedded in the
// binary (no build step, nothing fetched from outside the gateway, so it
// works offline). Pages are served at fixed paths and their assets under
// /ui/; every route is explicit (no wildcard), so the router lists them.
//
// The pages talk to the API like any client: REST under /api and the SSE
// streams (order tracking, kitchen display, dashboard). They send an
// `Authorization: Bearer` header when a token is kept in localStorage
// ("pizza.token"); login itself is not part of the UI yet.

//go:embed web
var webFiles embed.FS

// uiPages maps the UI's page routes to their files under web/.
var uiPages = map[string]string{
	"/":          "index.html",
	"/order":     "order.html",
	"/kitchen":   "kitchen.html",
	"/dashboard": "dashboard.html",
	"/driver":    "driver.html",
}

// UIAssetPrefix is the path prefix of the UI's scripts, styles and images.
const UIAssetPrefix = "/ui/"

// uiContentSecurityPolicy keeps every page on its own origin: scripts,
// styles, images and connections (fetch, SSE) may only come from the
// gateway; no inline script, no framing, no plugins.
const uiContentSecurityPolicy = "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; form-action 'self'"

var uiContentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".json": "application/json",
}

type uiFile struct {
	body  []byte
	ctype string
	etag  string
}

func loadUIFile(name string) (uiFile, error) {
	b, err := webFiles.ReadFile("web/" + name)
	if err != nil {
		return uiFile{}, err
	}
	ctype, ok := uiContentTypes[path.Ext(name)]
	if !ok {
		return uiFile{}, fmt.Errorf("ui: no content type for %s", name)
	}
	sum := sha256.Sum256(b)
	return uiFile{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}, nil
}

// uiRoutes lists every UI route with the embedded file it serves.
func uiRoutes() (map[string]string, error) {
	routes := map[string]string{}
	for route, name := range uiPages {
		routes[route] = name
	}
	err := fs.WalkDir(webFiles, "web/ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel := strings.TrimPrefix(p, "web/")
		routes["/"+rel] = rel
		return nil
	})
	return routes, err
}

// UIRoutes returns the paths of the web UI (pages and assets), sorted.
// They are GET routes outside /api that serve HTML, JavaScript, CSS and
// images rather than the API, so the OpenAPI document does not describe
// them.
func UIRoutes() []string {
	routes, err := uiRoutes()
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	out := make([]string, 0, len(routes))
	for r := range routes {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// registerUI serves the web UI: the index at "/", the customer page at
// "/order", the kitchen display at "/kitchen?restaurant=ID", the manager
// dashboard at "/dashboard?restaurant=ID", the driver view at
// "/driver?driver=ID", and their assets under /ui/.
func (g *Gateway) registerUI(e *echo.Echo) {
	routes, err := uiRoutes()
	if err != nil {
		panic(err)
	}
	for route, name := range routes {
		f, err := loadUIFile(name)
		if err != nil {
			panic(err)
		}
		e.GET(route, serveUIFile(f))
	}
}

func serveUIFile(f uiFile) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		setUISecurityHeaders(h)
		h.Set(echo.HeaderContentType, f.ctype)
		// Revalidate every time: a new binary serves new files at once.
		h.Set(echo.HeaderCacheControl, "no-cache")
		h.Set("ETag", f.etag)
		if match := c.Request().Header.Get("If-None-Match"); match != "" && etagMatches(match, f.etag) {
			return c.NoContent(http.StatusNotModified)
		}
		return c.Blob(http.StatusOK, f.ctype, f.body)
	}
}

func setUISecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", uiContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

func etagMatches(header, etag string) bool {
	for _, candidate := range strings.Split(header, ",") {
		candidate = strings.TrimSpace(candidate)
		if candidate == "*" || strings.TrimPrefix(candidate, "W/") == etag {
			return true
		}
	}
	return false
}

// --- live driver positions ---
//
// No documented stream carries a driver's position: the order's stream
// changes with the order's events only, and the dashboard's version does
// not include positions. The stream below fills that gap for the tracking
// map and the driver view. It is not registered by registerUI: it is an API
// route, so it needs its entry in openapi.yaml first (see
// registerDriverStream). Until then the pages fall back to reading
// GET /api/drivers/{id} whenever one of their streams brings a change.

// registerDriverStream serves GET /api/drivers/{driverId}/stream: the
// driver (as GET /api/drivers/{driverId}, position included) over SSE, on
// connect and after every change of the driver or of its position. Frames
// are `id: d<driver version>.p<telemetry sequence>`, `event: driver`,
// `data: <Driver>`; resuming with Last-Event-ID skips an unchanged driver.
func (g *Gateway) registerDriverStream(api *echo.Group) {
	api.GET("/drivers/:driverId/stream", g.driverStream)
}

func (g *Gateway) driverStream(c echo.Context) error {
	id, err := driverParam(c)
	if err != nil {
		return err
	}
	first, _, err := g.loadDriverFrame(c.Request().Context(), id)
	if err != nil {
		return err
	}
	// A driver's restaurant never changes; its changes and its position
	// fixes are announced to the restaurant's watchers.
	return g.streamRestaurant(c, first.RestaurantID, "driver", func(ctx context.Context) (string, []byte, error) {
		v, seq, err := g.loadDriverFrame(ctx, id)
		if err != nil {
			return "", nil, err
		}
		b, err := json.Marshal(v)
		return fmt.Sprintf("d%d.p%d", v.Version, seq), b, err
	})
}

// loadDriverFrame reads a driver with its last position, and the position's
// telemetry sequence (0 before the first fix).
func (g *Gateway) loadDriverFrame(ctx context.Context, id string) (driversapi.DriverView, uint64, error) {
	vals, err := g.deps.Redis.MGet(ctx, driversapi.DriverKey(g.cfg.Keyspace, id), driversapi.PositionKey(g.cfg.Keyspace, id)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return driversapi.DriverView{}, 0, err
	}
	raw, ok := vals[0].(string)
	if !ok {
		return driversapi.DriverView{}, 0, notFound("Driver")
	}
	var v driversapi.DriverView
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return v, 0, err
	}
	var seq uint64
	if ps, ok := vals[1].(string); ok {
		var p driversapi.PositionView
		if json.Unmarshal([]byte(ps), &p) == nil {
			v = v.WithPosition(&p)
			seq = p.Seq
		}
	}
	return v, seq, nil
}
