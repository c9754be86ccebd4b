package app

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/problem"
	"github.com/awesome-pizza/pizza/pkg/testkit"
	"github.com/awesome-pizza/pizza/services/drivers/internal/domain"
	"github.com/redis/go-redis/v9"
)

// The projector computes GEO scores itself (it can only stage ZADDs); they
// must be exactly what Redis's GEOADD stores.
func TestGeoScoreMatchesRedis(t *testing.T) {
	rdb, prefix := testkit.Redis(t)
	ctx := context.Background()
	key := prefix + "geo"
	points := [][2]float64{ // latitude, longitude
		{45.5189, -122.679}, {45.5266, -122.6838}, {0, 0}, {-33.8688, 151.2093},
		{85.05112878, 180}, {-85.05112878, -180}, {51.4779, -0.0015}, {-0.000001, 0.000001},
	}
	for i, p := range points {
		member := fmt.Sprint(i)
		if err := rdb.GeoAdd(ctx, key, &redis.GeoLocation{Name: member, Latitude: p[0], Longitude: p[1]}).Err(); err != nil {
			t.Fatalf("GEOADD %v: %v", p, err)
		}
		want, err := rdb.ZScore(ctx, key, member).Result()
		if err != nil {
			t.Fatal(err)
		}
		got, ok := GeoScore(p[0], p[1])
		if !ok || got != want {
			t.Errorf("GeoScore(%v, %v) = %v %v, Redis stores %v", p[0], p[1], got, ok, want)
		}
	}
	for _, p := range [][2]float64{{85.1, 0}, {-89, 0}, {0, 180.5}} {
		if _, ok := GeoScore(p[0], p[1]); ok {
			t.Errorf("GeoScore(%v, %v) accepted a point Redis cannot index", p[0], p[1])
		}
	}
}

func TestToProblem(t *testing.T) {
	tests := []struct {
		err    error
		status int
		typ    string
	}{
		{&domain.ValidationError{Fields: []domain.FieldError{{Field: "status", Detail: "bad"}}}, 422, problem.TypeValidation},
		{ErrDriverNotFound, 404, problem.TypeNotFound},
		{ErrOrderNotFound, 404, problem.TypeNotFound},
		{domain.ErrAlreadyRegistered, 409, problem.TypeConflict},
		{domain.ErrHoldingOrder, 409, problem.TypeInvalidTransition},
		{domain.ErrNotAvailable, 409, problem.TypeInvalidTransition},
		{domain.ErrNotHolding, 409, problem.TypeInvalidTransition},
		{domain.ErrAlreadyPickedUp, 409, problem.TypeInvalidTransition},
		{domain.ErrNotPickedUp, 409, problem.TypeInvalidTransition},
		{fmt.Errorf("assign: %w", domain.ErrNotWaiting), 409, problem.TypeInvalidTransition},
		{ErrConcurrentUpdate, 409, problem.TypeConcurrentUpdate},
		{fmt.Errorf("append: %w", eventstore.ErrUnavailable), 503, problem.TypeUnavailable},
		{context.DeadlineExceeded, 503, problem.TypeUnavailable},
		{problem.Malformed("x", "bad"), 400, problem.TypeMalformedRequest},
		{errors.New("boom"), 500, problem.TypeInternal},
	}
	for _, tt := range tests {
		p := ToProblem(tt.err, "Busy")
		if p.Status != tt.status || p.Type != tt.typ {
			t.Errorf("%v: %d %s, want %d %s", tt.err, p.Status, p.Type, tt.status, tt.typ)
		}
		if tt.typ == problem.TypeInvalidTransition && p.CurrentStatus != "Busy" {
			t.Errorf("%v: current status %q", tt.err, p.CurrentStatus)
		}
	}
	if p := ToProblem(&domain.ValidationError{Fields: []domain.FieldError{{Field: "latitude", Detail: "is required"}}}, ""); p.Errors[0].Field != "latitude" {
		t.Errorf("field errors %+v", p.Errors)
	}
}
