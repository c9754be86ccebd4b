package gateway

import (
	"encoding/json"
	"log/slog"
	"strconv"
	"time"

	"github.com/awesome-pizza/pizza/pkg/region"
	"github.com/awesome-pizza/pizza/pkg/tracing"
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

// The chain-wide view's sources, as its source watch last saw them (only
// the gateway writing the view reports; ADR 0020).
var (
	globalSourceBehind = prometheus.NewDesc("pizza_global_source_behind_events",
		"Order events of a region not yet in ORDERS_GLOBAL (region's last sequence minus the last one sourced), while the region answers.", []string{"region"}, nil)
	globalSourceStalled = prometheus.NewDesc("pizza_global_source_stalled_seconds",
		"How long ORDERS_GLOBAL has stayed behind a reachable region without progress.", []string{"region"}, nil)
	globalSourceReachable = prometheus.NewDesc("pizza_global_source_reachable",
		"1 when the region answered the last source check, 0 when it did not (a cut link, a region down).", []string{"region"}, nil)
	globalSourceReseeds = prometheus.NewDesc("pizza_global_source_reseeds_total",
		"Sources of ORDERS_GLOBAL repaired: re-seeded after a lost acknowledgement or a long stall, or rewound to a hole.", nil, nil)
	globalSourceHoles = prometheus.NewDesc("pizza_global_source_holes_total",
		"Holes found in ORDERS_GLOBAL (a region's event missing while later ones are held) and rewound.", nil, nil)
)

type globalSourceCollector struct{ view *region.GlobalViewService }

func (c globalSourceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- globalSourceBehind
	ch <- globalSourceStalled
	ch <- globalSourceReachable
	ch <- globalSourceReseeds
	ch <- globalSourceHoles
}

func (c globalSourceCollector) Collect(ch chan<- prometheus.Metric) {
	statuses, reseeds, holes := c.view.Sources()
	if statuses == nil {
		return // this gateway does not write the view
	}
	ch <- prometheus.MustNewConstMetric(globalSourceReseeds, prometheus.CounterValue, float64(reseeds))
	ch <- prometheus.MustNewConstMetric(globalSourceHoles, prometheus.CounterValue, float64(holes))
	for _, s := range statuses {
		reachable := 0.0
		if s.Reachable {
			reachable = 1
			ch <- prometheus.MustNewConstMetric(globalSourceBehind, prometheus.GaugeValue, float64(s.RegionSeq-min(s.Stored, s.RegionSeq)), s.Region)
			ch <- prometheus.MustNewConstMetric(globalSourceStalled, prometheus.GaugeValue, s.StalledFor.Seconds(), s.Region)
		}
		ch <- prometheus.MustNewConstMetric(globalSourceReachable, prometheus.GaugeValue, reachable, s.Region)
	}
}

// observe records every request's route, status and (for non-streams)
// latency, names the order of /orders/:orderId routes in the request's
// context (its span and log lines carry order_id), and logs the request
// with its trace: at debug level, or as a warning when it was answered
// with a 5xx (the cause is logged where it happened).
func (g *Gateway) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		r := c.Request()
		ctx := r.Context()
		if id := c.Param("orderId"); id != "" {
			ctx = tracing.WithOrderID(ctx, id)
			tracing.Annotate(ctx, tracing.LogOrderID, id)
			c.SetRequest(r.WithContext(ctx))
		}
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		method := r.Method
		status := c.Response().Status
		elapsed := time.Since(start)
		g.m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
		if c.Response().Header().Get(echo.HeaderContentType) != "text/event-stream" {
			g.m.latency.WithLabelValues(route, method).Observe(elapsed.Seconds())
		}
		tracing.HTTPStatus(ctx, status)
		level, msg := slog.LevelDebug, "request served"
		if status >= 500 {
			level, msg = slog.LevelWarn, "request answered with a server error"
		}
		if g.deps.Log.Enabled(ctx, level) {
			attrs := []any{"method", method, "route", route, "path", r.URL.Path, "status", status, "duration_ms", float64(elapsed.Microseconds()) / 1000,
				"request_id", c.Response().Header().Get(HeaderRequestID)}
			if err != nil {
				attrs = append(attrs, "err", err)
			}
			g.deps.Log.Log(ctx, level, msg, attrs...)
		}
		return nil
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
