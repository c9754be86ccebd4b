package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/services/drivers/driversapi"
	"github.com/awesome-pizza/pizza/services/gateway/internal/hub"
	"github.com/awesome-pizza/pizza/services/inventory/inventoryapi"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
)

// DashboardView is a restaurant manager's live overview, assembled from
// the read models of every context (orders, kitchen, drivers, stock).
type DashboardView struct {
	RestaurantID string                    `json:"restaurantId"`
	Orders       ordersapi.DashboardOrders `json:"orders"`
	Kitchen      DashboardKitchen          `json:"kitchen"`
	Drivers      DashboardDrivers          `json:"drivers"`
	LowStock     []string                  `json:"lowStock"`
	StockAlerts  []inventoryapi.AlertView  `json:"stockAlerts"`
	StuckOrders  []string                  `json:"stuckOrders"`
	// Version combines the versions of the parts; it changes whenever any
	// part does (the SSE id of the dashboard stream).
	Version     string    `json:"version"`
	GeneratedAt time.Time `json:"generatedAt"`
}

// DashboardKitchen summarises chefs and tickets.
type DashboardKitchen struct {
	ChefsTotal     int                    `json:"chefsTotal"`
	ChefsAvailable int                    `json:"chefsAvailable"` // not on break, with free capacity
	ChefsOnBreak   int                    `json:"chefsOnBreak"`
	Tickets        kitchenapi.StageCounts `json:"tickets"`
}

// DashboardDrivers summarises the fleet and the dispatch queue.
type DashboardDrivers struct {
	Total         int            `json:"total"`
	ByStatus      map[string]int `json:"byStatus"`
	Available     int            `json:"available"`
	WaitingOrders int            `json:"waitingOrders"`
}

func (g *Gateway) registerDashboard(api *echo.Group) {
	api.GET("/dashboard/:restaurantId", g.getDashboard)
	api.GET("/dashboard/:restaurantId/stream", g.dashboardStream)
	api.GET("/global/dashboard", g.getGlobalDashboard)
}

func (g *Gateway) dashboard(ctx context.Context, rid string) (DashboardView, error) {
	r, ok := g.deps.Catalog.Restaurant(rid)
	if !ok {
		return DashboardView{}, notFound("Restaurant")
	}
	ks := g.cfg.Keyspace
	d := DashboardView{RestaurantID: rid, LowStock: []string{}, StockAlerts: []inventoryapi.AlertView{}, GeneratedAt: time.Now().UTC()}
	d.Orders = ordersapi.DashboardOrders{RestaurantID: rid, OrdersByStatus: map[string]int{}, StuckOrders: []string{}}
	vals, err := g.deps.Redis.MGet(ctx, ordersapi.DashboardKey(ks, rid), kitchenapi.HeadKey(ks, rid),
		inventoryapi.StockKey(ks, rid), driversapi.QueueKey(ks, rid)).Result()
	if err != nil {
		return d, err
	}
	// The kitchen's head (chefs, counts, version) is all the dashboard
	// needs of the display (kitchenapi.HeadKey).
	head := kitchenapi.StoredHead{Display: kitchenapi.EmptyDisplay(r)}
	var stock inventoryapi.StockView
	var queue driversapi.QueueView
	for i, dst := range []any{&d.Orders, &head, &stock, &queue} {
		if s, ok := vals[i].(string); ok {
			if err := json.Unmarshal([]byte(s), dst); err != nil {
				return d, fmt.Errorf("dashboard part %d: %w", i, err)
			}
		}
	}
	kitchen := head.Display
	d.StuckOrders = d.Orders.StuckOrders
	d.Kitchen = DashboardKitchen{ChefsTotal: len(kitchen.Chefs), Tickets: kitchen.Counts}
	for _, c := range kitchen.Chefs {
		switch {
		case c.OnBreak:
			d.Kitchen.ChefsOnBreak++
		case c.ActiveTickets < c.Capacity:
			d.Kitchen.ChefsAvailable++
		}
	}
	if stock.LowStock != nil {
		d.LowStock = stock.LowStock
	}
	if stock.RecentAlerts != nil {
		d.StockAlerts = stock.RecentAlerts
	}
	drivers, err := g.driverViews(ctx, driversapi.RestaurantDriversKey(ks, rid))
	if err != nil && !errors.Is(err, redis.Nil) {
		return d, err
	}
	d.Drivers = DashboardDrivers{Total: len(drivers), ByStatus: map[string]int{}, WaitingOrders: len(queue.Waiting)}
	var driversVersion uint64
	for _, v := range drivers {
		d.Drivers.ByStatus[v.Status]++
		driversVersion = max(driversVersion, v.Version)
	}
	d.Drivers.Available = d.Drivers.ByStatus[events.DriverAvailable]
	d.Version = fmt.Sprintf("o%d.k%d.d%d.q%d.i%d", d.Orders.Version, kitchen.Version, driversVersion, queue.Version, stock.Version)
	return d, nil
}

func (g *Gateway) getDashboard(c echo.Context) error {
	d, err := g.dashboard(c.Request().Context(), c.Param("restaurantId"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// DriverPositions is the payload of the dashboard stream's "positions"
// frames: the last fix of each of the restaurant's drivers that reported one.
type DriverPositions struct {
	RestaurantID string                    `json:"restaurantId"`
	Positions    []driversapi.PositionView `json:"positions"`
}

// dashboardStream pushes the dashboard on connect and after every change
// of any of its parts ("dashboard" frames, id: the dashboard's version),
// and the positions of the restaurant's drivers as they move ("positions"
// frames without id, at most two a second), so the map follows them.
func (g *Gateway) dashboardStream(c echo.Context) error {
	rid := c.Param("restaurantId")
	if _, ok := g.deps.Catalog.Restaurant(rid); !ok {
		return notFound("Restaurant")
	}
	return g.serveLive(c, liveFeed{
		event: "dashboard",
		// Every read model concerning the restaurant signals its
		// watchers, driver positions included.
		watch: func() (*hub.Watcher, *hub.Watcher, func()) {
			w, stop := g.hub.WatchRestaurant(rid)
			return w, nil, stop
		},
		snapshot: func(ctx context.Context) (string, []byte, error) {
			d, err := g.dashboard(ctx, rid)
			if err != nil {
				return "", nil, err
			}
			b, err := json.Marshal(d)
			return d.Version, b, err
		},
		snapshotEvery:       restaurantSnapshotInterval,
		telemetryEvent:      "positions",
		telemetryOnSnapshot: true,
		loadTelemetry: func(ctx context.Context) ([]byte, error) {
			ps, err := g.driverPositions(ctx, driversapi.RestaurantDriversKey(g.cfg.Keyspace, rid))
			if err != nil {
				return nil, err
			}
			return json.Marshal(DriverPositions{RestaurantID: rid, Positions: ps})
		},
	})
}
