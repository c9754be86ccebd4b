package app

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/events/codec"
	"github.com/awesome-pizza/pizza/services/orders/internal/domain"
	"github.com/awesome-pizza/pizza/services/orders/ordersapi"
	"github.com/redis/go-redis/v9"
)

// StuckThresholds are how long an order may stay in each status, in
// platform time (divided by the time scale), before an alert is raised.
var StuckThresholds = map[domain.Status]time.Duration{
	domain.Created:        2 * time.Minute,
	domain.Validated:      5 * time.Minute,
	domain.Queued:         30 * time.Minute,
	domain.Preparing:      20 * time.Minute,
	domain.Baking:         20 * time.Minute,
	domain.QualityCheck:   5 * time.Minute,
	domain.ReadyForPickup: 20 * time.Minute,
	domain.DriverAssigned: 20 * time.Minute,
	domain.PickedUp:       10 * time.Minute,
	domain.OutForDelivery: 60 * time.Minute,
}

// StuckDetector periodically looks for active orders that made no progress
// beyond their status's threshold and records order_stuck_detected on
// them: an alert the dashboard shows until the order moves again. It reads
// candidates from the read model and decides on the log, so an order that
// moved in between is left alone (its expected sequence no longer holds).
type StuckDetector struct {
	cmds      *Commands
	rdb       *redis.Client
	keyspace  string
	timeScale float64
	clock     func() time.Time
	log       *slog.Logger
}

// NewStuckDetector wires a detector.
func NewStuckDetector(cmds *Commands, rdb *redis.Client, keyspace string, timeScale float64, clock func() time.Time, log *slog.Logger) *StuckDetector {
	if timeScale <= 0 {
		timeScale = 1
	}
	return &StuckDetector{cmds: cmds, rdb: rdb, keyspace: keyspace, timeScale: timeScale, clock: clock, log: log.With("component", "stuck-detector")}
}

func (d *StuckDetector) threshold(s domain.Status) (time.Duration, bool) {
	t, ok := StuckThresholds[s]
	return time.Duration(float64(t) / d.timeScale), ok
}

// Run checks every interval until ctx ends.
func (d *StuckDetector) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := d.Check(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn("stuck-order check failed", "err", err)
			} else if n > 0 {
				d.log.Warn("ALERT: orders stuck", "alert", "stuck_orders", "count", n)
			}
		}
	}
}

// Check raises the alert on every stuck order once and returns how many.
func (d *StuckDetector) Check(ctx context.Context) (int, error) {
	now := d.clock()
	minThreshold := time.Duration(1<<63 - 1)
	for s := range StuckThresholds {
		if t, _ := d.threshold(s); t < minThreshold {
			minThreshold = t
		}
	}
	ids, err := d.rdb.ZRangeByScore(ctx, ordersapi.ActiveOrdersKey(d.keyspace), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.Add(-minThreshold).UnixMilli(), 10),
	}).Result()
	if err != nil {
		return 0, err
	}
	raised := 0
	// The candidates' views, read in chunks of one round trip each (an
	// order already flagged stays a candidate until it moves on).
	const chunk = 256
	views := make([]any, 0, len(ids))
	for i := 0; i < len(ids); i += chunk {
		keys := make([]string, 0, chunk)
		for _, id := range ids[i:min(i+chunk, len(ids))] {
			keys = append(keys, ordersapi.OrderKey(d.keyspace, id))
		}
		vals, err := d.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return 0, err
		}
		views = append(views, vals...)
	}
	for i, id := range ids {
		raw, ok := views[i].(string)
		if !ok {
			continue
		}
		var v ordersapi.OrderView
		if codec.Unmarshal([]byte(raw), &v) != nil || v.Stuck {
			continue
		}
		status, ok := domain.ParseStatus(v.Status)
		limit, known := d.threshold(status)
		if !ok || !known || now.Sub(v.LastUpdated) <= limit {
			continue
		}
		// One alert per stay in a status: the command id names the view's version.
		commandID := "stuck:" + id + ":" + strconv.FormatUint(v.Version, 10)
		_, err = d.cmds.execute(ctx, id, commandID, events.Meta{CorrelationID: id, CausationID: commandID}, func(o *domain.Order) ([]events.Event, error) {
			if o.Status() != status {
				return nil, &domain.TransitionError{From: o.Status(), To: status}
			}
			return []events.Event{events.OrderStuckDetected{Status: string(status), Since: v.LastUpdated, Threshold: limit}}, nil
		})
		var te *domain.TransitionError
		if errors.As(err, &te) {
			continue
		}
		if err != nil {
			return raised, err
		}
		raised++
	}
	return raised, nil
}
