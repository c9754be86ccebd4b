package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/awesome-pizza/pizza/pkg/problem"

	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/labstack/echo/v4"
)

// ProblemContentType is the media type of every error response (RFC 9457).
const ProblemContentType = "application/problem+json"

func writeProblem(c echo.Context, p *ordersapi.Problem) error {
	if p.Instance == "" {
		p.Instance = c.Request().URL.Path
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return c.Blob(p.Status, ProblemContentType, b)
}

func notFound(what string) *ordersapi.Problem {
	return &ordersapi.Problem{Type: ordersapi.TypeNotFound, Title: what + " not found", Status: http.StatusNotFound}
}

// errorHandler turns every unhandled error into a problem document.
func (g *Gateway) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var (
		p  *ordersapi.Problem
		he *echo.HTTPError
		mb *http.MaxBytesError
	)
	switch {
	case errors.As(err, &p):
	case errors.As(err, &mb):
		p = tooLarge(mb.Limit)
	case errors.As(err, &he):
		p = &ordersapi.Problem{Type: problem.ProblemBase + "http-" + strconv.Itoa(he.Code), Title: http.StatusText(he.Code), Status: he.Code}
		switch he.Code {
		case http.StatusNotFound:
			p.Type = ordersapi.TypeNotFound
			p.Title = "No such resource"
		case http.StatusMethodNotAllowed:
			p.Type = problem.TypeMethodNotAllowed
		case http.StatusRequestEntityTooLarge:
			p = tooLarge(g.cfg.MaxBodyBytes)
		}
	default:
		g.deps.Log.ErrorContext(c.Request().Context(), "request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
		p = &ordersapi.Problem{Type: ordersapi.TypeInternal, Title: "Internal error", Status: http.StatusInternalServerError}
	}
	if err := writeProblem(c, p); err != nil {
		g.deps.Log.WarnContext(c.Request().Context(), "writing problem failed", "err", err)
	}
}

func tooLarge(limit int64) *ordersapi.Problem {
	return &ordersapi.Problem{Type: ordersapi.TypeBodyTooLarge, Title: "Request body too large", Status: http.StatusRequestEntityTooLarge,
		Detail: "the body exceeds " + itoa(limit) + " bytes"}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
