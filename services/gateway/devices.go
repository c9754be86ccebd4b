package gateway

import (
	"errors"
	"net/http"

	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
)

// Devices: MQTT credentials for drivers' phones and kitchens' devices, and
// the kitchens' telemetry (oven readings, alerts) reported over MQTT.
func (g *Gateway) registerDevices(api *echo.Group) {
	api.POST("/drivers/:driverId/credentials", g.driverCredentials)
	api.POST("/kitchens/:restaurantId/credentials", g.kitchenCredentials)
	api.GET("/kitchens/:restaurantId/telemetry", g.kitchenTelemetry)
}

func (g *Gateway) issueCredentials(c echo.Context, deviceID, kind string) error {
	var reply mqttapi.CredentialsReply
	cmd := mqttapi.CredentialsCommand{DeviceID: deviceID, Kind: kind, CorrelationID: c.Get("request_id").(string)}
	if err := g.call(c.Request().Context(), mqttapi.SubjectCredentials, cmd, &reply); err != nil {
		return err
	}
	// The secret is shown once: keep it out of caches.
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, reply)
}

// driverCredentials issues a new MQTT secret for a driver's phone and
// revokes the previous one.
func (g *Gateway) driverCredentials(c echo.Context) error {
	id, err := driverParam(c)
	if err != nil {
		return err
	}
	return g.issueCredentials(c, id, mqttapi.KindDriver)
}

// kitchenCredentials does the same for a restaurant's kitchen devices.
func (g *Gateway) kitchenCredentials(c echo.Context) error {
	rid := c.Param("restaurantId")
	if _, ok := g.deps.Catalog.Restaurant(rid); !ok {
		return notFound("Kitchen")
	}
	return g.issueCredentials(c, rid, mqttapi.KindKitchen)
}

// kitchenTelemetry serves the kitchen's last oven readings and alerts.
func (g *Gateway) kitchenTelemetry(c echo.Context) error {
	rid := c.Param("restaurantId")
	if _, ok := g.deps.Catalog.Restaurant(rid); !ok {
		return notFound("Kitchen")
	}
	raw, err := g.deps.Redis.Get(c.Request().Context(), mqttapi.KitchenTelemetryKey(g.cfg.Keyspace, rid)).Bytes()
	if errors.Is(err, redis.Nil) {
		return c.JSON(http.StatusOK, mqttapi.KitchenTelemetryView{KitchenID: rid, Ovens: []mqttapi.OvenView{}, RecentAlerts: []mqttapi.AlertView{}})
	}
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, raw)
}
