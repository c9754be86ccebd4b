package domain

import (
	"math"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
)

// EarthRadiusKm is the mean Earth radius used for great-circle distances.
const EarthRadiusKm = 6371.0088

// MovingSpeedKmh is the speed above which a driver's reported speed is
// trusted for estimates; below it the driver is taken to be standing.
const MovingSpeedKmh = 5

// DistanceKm is the great-circle (haversine) distance between two points.
func DistanceKm(a, b events.GeoPoint) float64 {
	lat1, lat2 := radians(a.Latitude), radians(b.Latitude)
	dLat := lat2 - lat1
	dLon := radians(b.Longitude - a.Longitude)
	h := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1)*math.Cos(lat2)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * EarthRadiusKm * math.Asin(math.Min(1, math.Sqrt(h)))
}

func radians(deg float64) float64 { return deg * math.Pi / 180 }

// EstimateArrival is when a trip from one point to another at speedKmh,
// started now, ends. Demo time runs timeScale times faster than real time.
func EstimateArrival(from, to events.GeoPoint, speedKmh float64, now time.Time, timeScale float64) time.Time {
	if speedKmh <= 0 {
		speedKmh = Scooter.TypicalSpeedKmh()
	}
	if timeScale <= 0 {
		timeScale = 1
	}
	hours := DistanceKm(from, to) / speedKmh / timeScale
	return now.Add(time.Duration(hours * float64(time.Hour))).UTC()
}

// Candidate is an Available driver and where it is.
type Candidate struct {
	DriverID string
	Position events.GeoPoint
}

// Nearest returns the candidate closest to the point; ties go to the
// smaller driver id so the choice is deterministic.
func Nearest(cands []Candidate, to events.GeoPoint) (Candidate, bool) {
	best, bestKm := Candidate{}, math.Inf(1)
	for _, c := range cands {
		km := DistanceKm(c.Position, to)
		if km < bestKm || (km == bestKm && c.DriverID < best.DriverID) {
			best, bestKm = c, km
		}
	}
	return best, !math.IsInf(bestKm, 1)
}
