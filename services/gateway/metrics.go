package gateway

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/awesome-pizza/pizza/services/gateway/internal/hub"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	ordersPlaced prometheus.Counter
	rywWait      prometheus.Histogram
	rywTimeouts  prometheus.Counter
	sseClients   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, h *hub.Hub) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pizza_http_requests_total", Help: "HTTP requests by route, method and status."}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pizza_http_request_duration_seconds", Help: "HTTP request latency by route (streams excluded).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"route", "method"}),
		ordersPlaced: prometheus.NewCounter(prometheus.CounterOpts{Name: "pizza_gateway_orders_placed_total", Help: "Orders accepted through the gateway (replays included)."}),
		rywWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pizza_gateway_read_your_writes_wait_seconds", Help: "Time a command waited for its read model.",
			Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .05, .1, .5, 1, 2}}),
		rywTimeouts: prometheus.NewCounter(prometheus.CounterOpts{Name: "pizza_gateway_read_your_writes_timeouts_total", Help: "Commands answered before their read model caught up."}),
		sseClients:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "pizza_gateway_sse_clients", Help: "Open SSE streams."}),
	}
	reg.MustRegister(m.requests, m.latency, m.ordersPlaced, m.rywWait, m.rywTimeouts, m.sseClients,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pizza_gateway_watchers", Help: "Registered order watchers."}, func() float64 { return float64(h.Watchers()) }))
	return m
}

// observe records every request's route, status and (for non-streams) latency.
func (g *Gateway) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		method := c.Request().Method
		g.m.requests.WithLabelValues(route, method, strconv.Itoa(c.Response().Status)).Inc()
		if c.Response().Header().Get(echo.HeaderContentType) != "text/event-stream" {
			g.m.latency.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		}
		return nil
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
