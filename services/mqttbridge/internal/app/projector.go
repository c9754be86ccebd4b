package app

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/services/mqttbridge/mqttapi"
)

// KitchenTelemetryProjector builds the "kitchen-telemetry" read model from
// TELEMETRY: each kitchen's last reading per oven and its recent alerts.
type KitchenTelemetryProjector struct{}

// Name is the read model's name.
func (KitchenTelemetryProjector) Name() string { return mqttapi.ReadModel }

// Stream is TELEMETRY.
func (KitchenTelemetryProjector) Stream() string { return events.Telemetry.Stream }

// Filter selects oven readings and kitchen alerts.
func (KitchenTelemetryProjector) Filter() []string {
	return []string{mqttapi.OvenReadingSubject(">"), mqttapi.KitchenAlertSubject(">")}
}

// Apply folds one reading or alert into the kitchen's view.
func (KitchenTelemetryProjector) Apply(ctx context.Context, tx *projection.Tx, rec eventstore.Record) error {
	var kitchenID string
	switch ev := rec.Event.(type) {
	case mqttapi.OvenReadingReported:
		kitchenID = ev.KitchenID
	case mqttapi.KitchenAlertRaised:
		kitchenID = ev.KitchenID
	default:
		return nil
	}
	if kitchenID == "" {
		kitchenID = rec.Envelope.AggregateID
	}
	key := tx.Key("kitchen", kitchenID)
	view := mqttapi.KitchenTelemetryView{KitchenID: kitchenID, Ovens: []mqttapi.OvenView{}, RecentAlerts: []mqttapi.AlertView{}}
	if raw, ok, err := tx.Get(ctx, key); err != nil {
		return err
	} else if ok {
		if err := json.Unmarshal([]byte(raw), &view); err != nil {
			return fmt.Errorf("%s is corrupt: %w", key, err)
		}
	}
	switch ev := rec.Event.(type) {
	case mqttapi.OvenReadingReported:
		oven := mqttapi.OvenView{OvenID: ev.OvenID, TemperatureC: ev.TemperatureC, TimerSeconds: ev.TimerSeconds, Status: ev.Status, At: ev.RecordedAt, Seq: rec.Seq}
		replaced := false
		for i := range view.Ovens {
			if view.Ovens[i].OvenID == ev.OvenID {
				if view.Ovens[i].At.After(ev.RecordedAt) {
					return nil // an older reading stored late: keep the newer one
				}
				view.Ovens[i], replaced = oven, true
			}
		}
		if !replaced {
			view.Ovens = append(view.Ovens, oven)
			sort.Slice(view.Ovens, func(i, j int) bool { return view.Ovens[i].OvenID < view.Ovens[j].OvenID })
		}
	case mqttapi.KitchenAlertRaised:
		alert := mqttapi.AlertView{Alert: ev.Alert, Severity: ev.Severity, Details: ev.Details, At: ev.RaisedAt, Seq: rec.Seq}
		view.RecentAlerts = append([]mqttapi.AlertView{alert}, view.RecentAlerts...)
		if len(view.RecentAlerts) > mqttapi.MaxRecentAlerts {
			view.RecentAlerts = view.RecentAlerts[:mqttapi.MaxRecentAlerts]
		}
	}
	view.Version, view.LastUpdated = rec.Seq, rec.Envelope.OccurredAt
	b, err := json.Marshal(view)
	if err != nil {
		return err
	}
	tx.Set(key, string(b))
	note, err := json.Marshal(mqttapi.Notification{Seq: rec.Seq, Kitchen: view})
	if err != nil {
		return err
	}
	tx.Notify(string(note))
	return nil
}
