package gateway

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// The web UI: plain HTML, CSS and JavaScript modules embedded in the
// binary (no build step, nothing fetched from outside the gateway, so it
// works offline). Pages are served at fixed paths and their assets under
// /ui/; every route is explicit (no wildcard), so the router lists them.
//
// The pages talk to the API like any client: REST under /api and the SSE
// streams (order tracking with the driver's position, kitchen display,
// dashboard with its drivers' positions, the driver's own stream), read
// with fetch so that they can send an `Authorization: Bearer` header from
// a token kept in localStorage ("pizza.token"). Login itself is not part of the UI: a page the API
// refuses offers a box to paste a token.
//
// What every page repeats (the head's metadata and styles, the top bar)
// lives once under web/partials/: a page names it with a comment such as
// <!--#include topbar-->, expanded when the gateway starts (partials are
// not served on their own).

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
	if path.Ext(name) == ".html" {
		if b, err = expandIncludes(name, b); err != nil {
			return uiFile{}, err
		}
	}
	ctype, ok := uiContentTypes[path.Ext(name)]
	if !ok {
		return uiFile{}, fmt.Errorf("ui: no content type for %s", name)
	}
	sum := sha256.Sum256(b)
	return uiFile{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}, nil
}

// uiInclude is a page's reference to a partial, with the line's end.
var uiInclude = regexp.MustCompile(`<!--#include ([a-z0-9-]+)-->\n?`)

// expandIncludes replaces every <!--#include NAME--> of a page with
// web/partials/NAME.html. An unknown partial is an error: the page would
// be broken.
func expandIncludes(page string, b []byte) ([]byte, error) {
	var missing error
	out := uiInclude.ReplaceAllFunc(b, func(m []byte) []byte {
		name := string(uiInclude.FindSubmatch(m)[1])
		part, err := webFiles.ReadFile("web/partials/" + name + ".html")
		if err != nil {
			missing = fmt.Errorf("ui: %s includes %q: %w", page, name, err)
			return m
		}
		return part
	})
	return out, missing
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
