package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/services/gateway/internal/hub"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/labstack/echo/v4"
)

// trackOrder streams the order's snapshots over SSE: the current one first,
// then one per change. Each event's id is the stream sequence of the last
// event applied to the order; a client that reconnects with Last-Event-ID
// gets the current snapshot only if it is newer, so it never misses a
// change (every snapshot holds the whole order).
func (g *Gateway) trackOrder(c echo.Context) error {
	id := c.Param("orderId")
	if events.ValidateID(id) != nil {
		return notFound("Order")
	}
	ctx := c.Request().Context()
	release, err := g.streamSlot(c)
	if err != nil {
		return err
	}
	defer release()
	// Watch before reading, so no change slips between the read and the watch.
	w, stop := g.hub.Watch(id)
	defer stop()
	view, raw, err := g.hub.Load(ctx, id)
	if errors.Is(err, hub.ErrNotFound) {
		return notFound("Order")
	}
	if err != nil {
		return err
	}
	var sent uint64
	if last := c.Request().Header.Get("Last-Event-ID"); last != "" {
		sent, _ = strconv.ParseUint(last, 10, 64)
	} else if last := c.QueryParam("lastEventId"); last != "" {
		sent, _ = strconv.ParseUint(last, 10, 64)
	}

	res := c.Response()
	h := res.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set(echo.HeaderConnection, "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	res.WriteHeader(http.StatusOK)
	// Streams live as long as the client wants: lift any write deadline.
	_ = http.NewResponseController(res.Writer).SetWriteDeadline(time.Time{})
	g.m.sseClients.Inc()
	defer g.m.sseClients.Dec()

	if _, err := fmt.Fprint(res, "retry: 2000\n\n"); err != nil {
		return nil
	}
	send := func(seq uint64, data []byte) error {
		if seq <= sent {
			return nil
		}
		if _, err := fmt.Fprintf(res, "id: %d\nevent: order\ndata: %s\n\n", seq, data); err != nil {
			return err
		}
		res.Flush()
		sent = seq
		return nil
	}
	if err := send(view.Version, raw); err != nil {
		return nil
	}
	res.Flush()
	// While a driver carries the order, its position and a fresh ETA go
	// out as "driver" events (no id: they are telemetry, not order history).
	var (
		driverW    *hub.Watcher
		stopDriver = func() {}
		driverID   string
		current    = view
	)
	defer func() { stopDriver() }()
	follow := func(v ordersapi.OrderView) error {
		current = v
		want := ""
		if v.AssignedDriverID != nil && slices.Contains([]string{"DriverAssigned", "PickedUp", "OutForDelivery"}, v.Status) {
			want = *v.AssignedDriverID
		}
		if want == driverID {
			return nil
		}
		stopDriver()
		driverW, stopDriver, driverID = nil, func() {}, want
		if want == "" {
			return nil
		}
		driverW, stopDriver = g.hub.WatchDriver(want)
		return g.sendDriver(res, current, want)
	}
	if err := follow(view); err != nil {
		return nil
	}
	driverC := func() <-chan struct{} {
		if driverW == nil {
			return nil
		}
		return driverW.C()
	}
	heartbeat := time.NewTicker(g.cfg.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-g.streams.Done():
			return nil
		case <-driverC():
			driverW.Latest()
			if err := g.sendDriver(res, current, driverID); err != nil {
				return nil
			}
		case <-heartbeat.C:
			if _, err := fmt.Fprint(res, ": heartbeat\n\n"); err != nil {
				return nil
			}
			res.Flush()
		case <-w.C():
			n, resync := w.Latest()
			if resync {
				v, raw, err := g.hub.Load(ctx, id)
				if err == nil {
					if err := send(v.Version, raw); err != nil {
						return nil
					}
					if err := follow(v); err != nil {
						return nil
					}
				}
				continue
			}
			if n == nil {
				continue
			}
			data, err := jsonMarshal(n.Order)
			if err != nil {
				return nil
			}
			if err := send(n.Seq, data); err != nil {
				return nil
			}
			if err := follow(n.Order); err != nil {
				return nil
			}
		}
	}
}

// DriverUpdate is the payload of a tracking stream's "driver" event.
type DriverUpdate struct {
	DriverID  string    `json:"driverId"`
	Latitude  float64   `json:"latitude"`
	Longitude float64   `json:"longitude"`
	At        time.Time `json:"at"`
	SpeedKmh  *float64  `json:"speedKmh"`
	// EtaAt is recomputed from the position, the speed (the reported one,
	// or a typical 25 km/h) and the distance left to the delivery address.
	EtaAt *time.Time `json:"etaAt"`
}

// sendDriver writes the driver's last position (if any) with a fresh ETA.
func (g *Gateway) sendDriver(res *echo.Response, order ordersapi.OrderView, driverID string) error {
	pos, err := g.position(context.Background(), driverID)
	if err != nil || pos == nil {
		return nil // no position yet: nothing to show
	}
	u := DriverUpdate{DriverID: driverID, Latitude: pos.Latitude, Longitude: pos.Longitude, At: pos.At, SpeedKmh: pos.SpeedKmh}
	if order.DeliveryLocation != nil {
		speed := 25.0
		if pos.SpeedKmh != nil && *pos.SpeedKmh > 5 {
			speed = *pos.SpeedKmh
		}
		km := haversineKm(pos.Latitude, pos.Longitude, order.DeliveryLocation.Latitude, order.DeliveryLocation.Longitude)
		eta := time.Now().UTC().Add(time.Duration(km / speed * float64(time.Hour) / g.cfg.TimeScale))
		u.EtaAt = &eta
	}
	data, err := jsonMarshal(u)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(res, "event: driver\ndata: %s\n\n", data); err != nil {
		return err
	}
	res.Flush()
	return nil
}

func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dLat, dLon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}
