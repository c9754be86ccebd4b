package region

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/redis/go-redis/v9"
)

// GlobalDashboardModel names the chain-wide dashboard read model.
const GlobalDashboardModel = "global-dashboard"

// OrderStatuses are the states an order can be counted in, happy path first.
var OrderStatuses = []string{"Created", "Validated", "Queued", "Preparing", "Baking", "QualityCheck", "ReadyForPickup",
	"DriverAssigned", "PickedUp", "OutForDelivery", "Delivered", "Cancelled", "Failed"}

// statusAfter maps an order event type to the status the order is in
// after it. Events that do not change the status are absent.
var statusAfter = map[string]string{
	"order_placed":                "Created", // or Validated (OrderPlaced.Status)
	"order_validated":             "Validated",
	"order_queued":                "Queued",
	"order_preparation_started":   "Preparing",
	"order_baking_started":        "Baking",
	"order_quality_check_started": "QualityCheck",
	"order_ready_for_pickup":      "ReadyForPickup",
	"order_driver_assigned":       "DriverAssigned",
	"order_picked_up":             "PickedUp",
	"order_out_for_delivery":      "OutForDelivery",
	"order_delivered":             "Delivered",
	"order_cancelled":             "Cancelled",
	"order_failed":                "Failed",
}

// GlobalDashboard projects ORDERS_GLOBAL into counts of orders per region
// and status. It keeps each order's last status so a status change moves
// the order from one count to another; rebuilding from sequence 1 yields
// the same counts.
//
// Keys (under the read model's base): "status:<region>:<orderId>" the
// order's status, "count:<region>:<status>" the number of orders.
type GlobalDashboard struct{}

func (GlobalDashboard) Name() string     { return GlobalDashboardModel }
func (GlobalDashboard) Stream() string   { return GlobalOrdersStream }
func (GlobalDashboard) Filter() []string { return nil }

// Apply counts one event.
func (GlobalDashboard) Apply(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
	region, orderID, ok := splitGlobalSubject(rec.Subject)
	if !ok {
		return fmt.Errorf("global dashboard: subject %q is not <region>.orders.<id>", rec.Subject)
	}
	status, ok := statusAfter[rec.Envelope.Type]
	if !ok {
		return nil
	}
	if placed, isPlaced := rec.Event.(events.OrderPlaced); isPlaced {
		status = placed.Status() // Validated since order_placed.v3
	}
	statusKey := tx.Key("status", region, orderID)
	prev, _, err := tx.Get(ctx, statusKey)
	if err != nil {
		return err
	}
	if prev == status {
		return nil
	}
	if prev != "" {
		if err := addCount(ctx, tx, tx.Key("count", region, prev), -1); err != nil {
			return err
		}
	}
	if err := addCount(ctx, tx, tx.Key("count", region, status), 1); err != nil {
		return err
	}
	tx.Set(statusKey, status)
	tx.Notify(region)
	return nil
}

func addCount(ctx context.Context, tx *projection.Tx, key string, delta int64) error {
	v, _, err := tx.Get(ctx, key)
	if err != nil {
		return err
	}
	var n int64
	if v != "" {
		if n, err = strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Errorf("global dashboard: count %s: %w", key, err)
		}
	}
	tx.Set(key, strconv.FormatInt(n+delta, 10))
	return nil
}

// splitGlobalSubject splits "<region>.orders.<id>".
func splitGlobalSubject(subject string) (region, orderID string, ok bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] != "orders" || parts[2] == "" {
		return "", "", false
	}
	return parts[0], parts[2], true
}

// GlobalView is the chain-wide dashboard: orders per region and status.
type GlobalView struct {
	// ByRegion maps region → status → orders; statuses with no orders are omitted.
	ByRegion map[string]map[string]int64 `json:"byRegion"`
	// Totals maps region → orders in any status.
	Totals map[string]int64 `json:"totals"`
	// Checkpoint is the last ORDERS_GLOBAL sequence the counts include.
	Checkpoint uint64 `json:"checkpoint"`
}

// Total is the number of orders of every region.
func (v GlobalView) Total() int64 {
	var n int64
	for _, c := range v.Totals {
		n += c
	}
	return n
}

// ReadGlobalView reads the dashboard of the given regions from Redis in
// one round trip (keys and checkpoint read together).
func ReadGlobalView(ctx context.Context, rdb *redis.Client, keyspace string, regions []string) (GlobalView, error) {
	base := projection.KeyBase(keyspace, GlobalDashboardModel)
	keys := []string{projection.CheckpointKey(keyspace, GlobalDashboardModel)}
	for _, r := range regions {
		for _, s := range OrderStatuses {
			keys = append(keys, base+"count:"+r+":"+s)
		}
	}
	vals, err := rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return GlobalView{}, fmt.Errorf("global dashboard: %w", err)
	}
	v := GlobalView{ByRegion: map[string]map[string]int64{}, Totals: map[string]int64{}}
	if s, ok := vals[0].(string); ok {
		if v.Checkpoint, err = strconv.ParseUint(s, 10, 64); err != nil {
			return GlobalView{}, fmt.Errorf("global dashboard: checkpoint: %w", err)
		}
	}
	i := 1
	for _, r := range regions {
		v.ByRegion[r] = map[string]int64{}
		v.Totals[r] = 0
		for _, s := range OrderStatuses {
			raw, ok := vals[i].(string)
			i++
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(raw, 10, 64)
			if err != nil {
				return GlobalView{}, errors.Join(fmt.Errorf("global dashboard: count %s/%s", r, s), err)
			}
			if n != 0 {
				v.ByRegion[r][s] = n
				v.Totals[r] += n
			}
		}
	}
	return v, nil
}
