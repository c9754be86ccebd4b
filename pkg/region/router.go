package region

import (
	"errors"
	"fmt"
)

// ErrUnknownRestaurant is returned for a restaurant no region is home to.
var ErrUnknownRestaurant = errors.New("region: restaurant has no home region")

// Router tells a region's gateway where a restaurant's commands go: to the
// local services when the restaurant lives in the gateway's own region,
// otherwise to the home region's services through the account import
// "region.<home>.svc.>".
type Router struct {
	topo  Topology
	local string
}

// NewRouter returns the router of the gateways running in region local.
func NewRouter(t Topology, local string) (*Router, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if _, ok := t.Region(local); !ok {
		return nil, fmt.Errorf("region: %q is not a region", local)
	}
	return &Router{topo: t, local: local}, nil
}

// Local is the router's own region.
func (r *Router) Local() string { return r.local }

// Prefix returns the prefix to put before a command subject of the
// restaurant: "" when it is local, "region.<home>." when it is not.
func (r *Router) Prefix(restaurantID string) (string, error) {
	home, ok := r.topo.HomeOf(restaurantID)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownRestaurant, restaurantID)
	}
	if home == r.local {
		return "", nil
	}
	return CommandPrefix(home), nil
}

// Subject returns the subject to send a restaurant's command to, given the
// service's own subject (e.g. ordersapi.SubjectPlace).
func (r *Router) Subject(restaurantID, subject string) (string, error) {
	p, err := r.Prefix(restaurantID)
	if err != nil {
		return "", err
	}
	return p + subject, nil
}

// Remote reports whether the restaurant lives in another region.
func (r *Router) Remote(restaurantID string) bool {
	home, ok := r.topo.HomeOf(restaurantID)
	return ok && home != r.local
}

// Home returns the region the restaurant lives in.
func (r *Router) Home(restaurantID string) (string, bool) { return r.topo.HomeOf(restaurantID) }
