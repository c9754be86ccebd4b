package gateway

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/awesome-pizza/pizza/pkg/region"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
)

// subjectFor returns where a restaurant's command goes: the service's own
// subject when the restaurant lives in this gateway's region (or there is
// one region), else the home region's services through the account import
// of its command subjects.
func (g *Gateway) subjectFor(restaurantID, subject string) (string, error) {
	if g.deps.Router == nil {
		return subject, nil
	}
	s, err := g.deps.Router.Subject(restaurantID, subject)
	if errors.Is(err, region.ErrUnknownRestaurant) {
		return "", ordersapi.Validation(ordersapi.FieldError{Field: "restaurantId", Detail: "is not a restaurant of the chain"})
	}
	return s, err
}

// remote reports whether the restaurant's read models live in another
// region: this gateway's Redis will never show its orders.
func (g *Gateway) remote(restaurantID string) bool {
	return g.deps.Router != nil && g.deps.Router.Remote(restaurantID)
}

// regionHeader names the region that owns an order in a response about it.
const regionHeader = "Pizza-Region"

func (g *Gateway) markRegion(h http.Header, restaurantID string) {
	if g.deps.Router == nil {
		return
	}
	home := g.deps.Router.Local()
	if h, ok := g.deps.Router.Home(restaurantID); ok {
		home = h
	}
	h.Set(regionHeader, home)
}

// getGlobalDashboard serves the chain-wide dashboard: orders per region and
// status, from ORDERS_GLOBAL (operators only). Only the gateways of the
// region that keeps the view serve it.
func (g *Gateway) getGlobalDashboard(c echo.Context) error {
	if g.deps.Global == nil {
		return notFound("Chain-wide dashboard (kept by the global home region's gateways)")
	}
	v, err := g.deps.Global.View(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}
