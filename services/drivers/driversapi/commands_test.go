package driversapi

import (
	"errors"
	"testing"

	"github.com/awesome-pizza/pizza/pkg/problem"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		field string // of the 400; "" for none
		ok    bool
	}{
		{"valid", `{"latitude": 45.5, "longitude": -122.6, "speedKmh": 20, "timestamp": "2026-11-26T18:00:00Z"}`, "", true},
		{"empty", ``, "", false},
		{"not JSON", `latitude=1`, "", false},
		{"unknown field", `{"latitude": 1, "longitude": 2, "lat": 1}`, "lat", false},
		{"wrong type", `{"latitude": "north", "longitude": 2}`, "latitude", false},
		{"two objects", `{"latitude": 1} {"latitude": 2}`, "", false},
		{"truncated", `{"latitude": 1`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := Decode[LocationRequest]([]byte(tt.body))
			if tt.ok {
				if err != nil || req.Latitude == nil || *req.Latitude != 45.5 || req.Timestamp == nil {
					t.Fatalf("%+v %v", req, err)
				}
				return
			}
			var p *problem.Problem
			if !errors.As(err, &p) || p.Status != 400 || p.Type != problem.TypeMalformedRequest {
				t.Fatalf("err %v, want a 400 problem", err)
			}
			if tt.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tt.field) {
				t.Fatalf("problem %+v, want field %s", p, tt.field)
			}
		})
	}
}
