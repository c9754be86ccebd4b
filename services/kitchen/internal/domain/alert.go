package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
)

// How far an alert's own timestamp may be from the kitchen's clock.
const (
	MaxAlertAge   = 24 * time.Hour
	MaxAlertAhead = 5 * time.Minute
)

// AlertInput is a device alert to record.
type AlertInput struct {
	RestaurantID string
	DeviceID     string
	Alert        string
	Severity     string
	Details      json.RawMessage
	RaisedAt     *time.Time
}

// RaiseAlert validates a device alert and returns the event that records
// it. Every invalid field is reported at once. An alert is a fact about
// the restaurant's equipment: it changes no ticket and no chef.
func RaiseAlert(in AlertInput, now time.Time) (events.KitchenDeviceAlertRaised, error) {
	var errs []FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	alert := strings.TrimSpace(in.Alert)
	switch n := utf8.RuneCountInString(alert); {
	case n == 0:
		add("alert", "is required")
	case n > kitchenapi.MaxAlertLength:
		add("alert", "is longer than %d characters", kitchenapi.MaxAlertLength)
	case !utf8.ValidString(alert):
		add("alert", "is not valid UTF-8")
	}
	if !slices.Contains(kitchenapi.AlertSeverities, in.Severity) {
		add("severity", "must be one of %s", strings.Join(kitchenapi.AlertSeverities, ", "))
	}
	device := in.DeviceID
	if device == "" {
		device = in.RestaurantID
	}
	if len(device) > kitchenapi.MaxAlertDeviceIDBytes {
		add("deviceId", "is longer than %d bytes", kitchenapi.MaxAlertDeviceIDBytes)
	}
	var details json.RawMessage
	if d := bytes.TrimSpace(in.Details); len(d) > 0 && !bytes.Equal(d, []byte("null")) {
		var buf bytes.Buffer
		switch {
		case len(d) > kitchenapi.MaxAlertDetailsBytes:
			add("details", "is larger than %d bytes", kitchenapi.MaxAlertDetailsBytes)
		case json.Compact(&buf, d) != nil:
			add("details", "must be JSON")
		default:
			details = buf.Bytes()
		}
	}
	at := now.UTC()
	if in.RaisedAt != nil {
		switch t := in.RaisedAt.UTC(); {
		case t.Before(now.Add(-MaxAlertAge)):
			add("raisedAt", "is more than %v old", MaxAlertAge)
		case t.After(now.Add(MaxAlertAhead)):
			add("raisedAt", "is more than %v ahead of the kitchen's clock", MaxAlertAhead)
		default:
			at = t
		}
	}
	if len(errs) > 0 {
		return events.KitchenDeviceAlertRaised{}, &ValidationError{Fields: errs}
	}
	return events.KitchenDeviceAlertRaised{RestaurantID: in.RestaurantID, DeviceID: device, Alert: alert, Severity: in.Severity, Details: details, RaisedAt: at}, nil
}
