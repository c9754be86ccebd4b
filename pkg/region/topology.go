// Package region describes Awesome Pizza as several regions joined into one
// NATS supercluster, and builds what that needs: the nats-server
// configuration of every region's servers (a JetStream cluster per region,
// gateways between regions, one account per region plus GLOBAL and SYS with
// the exports and imports that route commands and feed the global view),
// the router that tells a gateway where a restaurant's commands go, the
// provisioning of the chain-wide stream sourced from every region, and the
// global dashboard projected from it.
//
// A region's services run unchanged: they connect with their region's
// credentials and see their own ORDERS, KITCHEN, DRIVERS and INVENTORY
// streams, because each region is its own NATS account.
package region

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Account names that do not belong to a region.
const (
	// GlobalAccount holds the chain-wide streams sourced from every region.
	GlobalAccount = "GLOBAL"
	// SystemAccount is the nats-server system account (monitoring, server events).
	SystemAccount = "SYS"
)

// ServerTagPrefix prefixes the region tag every server carries
// ("region:<name>"); stream placement selects servers by it.
const ServerTagPrefix = "region:"

// Region is one deployment region: a JetStream cluster serving its own
// restaurants.
type Region struct {
	// Name is the region's name, e.g. "us-west": lower-case letters,
	// digits and '-'. It names the cluster, the gateway, the account
	// (REGION_US_WEST) and the subject prefix of its imported commands.
	Name string `json:"name"`
	// Servers is the size of the region's cluster (1 to 3 in process; 3
	// in production so streams can be replicated).
	Servers int `json:"servers"`
	// Restaurants lists the restaurants whose home is this region.
	Restaurants []string `json:"restaurants"`
}

// Topology is the chain's regions and where each restaurant lives.
type Topology struct {
	Regions []Region `json:"regions"`
	// GlobalHome is the region whose cluster holds the GLOBAL account's
	// streams (the chain-wide view). Default: the first region.
	GlobalHome string `json:"globalHome,omitempty"`
}

// Validate checks names, sizes and that every restaurant has exactly one home.
func (t Topology) Validate() error {
	if len(t.Regions) == 0 {
		return errors.New("region: no regions")
	}
	seenRegion := map[string]bool{}
	home := map[string]string{}
	for _, r := range t.Regions {
		if err := validateName(r.Name); err != nil {
			return err
		}
		if seenRegion[r.Name] {
			return fmt.Errorf("region: %q listed twice", r.Name)
		}
		seenRegion[r.Name] = true
		if r.Servers < 1 {
			return fmt.Errorf("region %q: needs at least one server", r.Name)
		}
		for _, id := range r.Restaurants {
			if id == "" {
				return fmt.Errorf("region %q: empty restaurant id", r.Name)
			}
			if other, ok := home[id]; ok {
				return fmt.Errorf("region: restaurant %q has two homes, %q and %q", id, other, r.Name)
			}
			home[id] = r.Name
		}
	}
	if t.GlobalHome != "" && !seenRegion[t.GlobalHome] {
		return fmt.Errorf("region: global home %q is not a region", t.GlobalHome)
	}
	return nil
}

func validateName(name string) error {
	if name == "" {
		return errors.New("region: empty region name")
	}
	if len(name) > 32 {
		return fmt.Errorf("region %q: name longer than 32 characters", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0) {
			return fmt.Errorf("region %q: names use lower-case letters, digits and '-' (not first)", name)
		}
	}
	return nil
}

// Region returns a region by name.
func (t Topology) Region(name string) (Region, bool) {
	i := slices.IndexFunc(t.Regions, func(r Region) bool { return r.Name == name })
	if i < 0 {
		return Region{}, false
	}
	return t.Regions[i], true
}

// Names lists the regions in declaration order.
func (t Topology) Names() []string {
	out := make([]string, len(t.Regions))
	for i, r := range t.Regions {
		out[i] = r.Name
	}
	return out
}

// HomeOf returns the home region of a restaurant.
func (t Topology) HomeOf(restaurantID string) (string, bool) {
	for _, r := range t.Regions {
		if slices.Contains(r.Restaurants, restaurantID) {
			return r.Name, true
		}
	}
	return "", false
}

// Global returns the region holding the GLOBAL streams.
func (t Topology) Global() string {
	if t.GlobalHome != "" {
		return t.GlobalHome
	}
	if len(t.Regions) == 0 {
		return ""
	}
	return t.Regions[0].Name
}

// Spread assigns restaurants to regions round-robin, in the given order:
// a default topology for demos (`pizza dev --regions N`) when no explicit
// map is configured. Region i is named names[i].
func Spread(names []string, serversPerRegion int, restaurants []string) Topology {
	t := Topology{}
	for _, n := range names {
		t.Regions = append(t.Regions, Region{Name: n, Servers: serversPerRegion})
	}
	for i, id := range restaurants {
		r := &t.Regions[i%len(t.Regions)]
		r.Restaurants = append(r.Restaurants, id)
	}
	return t
}

// AccountName is the NATS account of a region: "REGION_" and the name in
// upper case with '-' as '_' ("us-west" → "REGION_US_WEST").
func AccountName(region string) string {
	return "REGION_" + strings.ToUpper(strings.ReplaceAll(region, "-", "_"))
}

// ServerTag is the placement tag of a region's servers.
func ServerTag(region string) string { return ServerTagPrefix + region }

// CommandPrefix is the subject prefix under which every other region's
// account imports this region's command subjects: a request to
// CommandPrefix(r)+"svc.orders.place" in region A is served by region r's
// orders service.
func CommandPrefix(region string) string { return "region." + region + "." }

// CommandSubjects are the subjects a region exports to the others: the
// services' command and query endpoints (nats.go/micro, "svc.<service>.<verb>").
const CommandSubjects = "svc.>"

// LoadTopology reads a topology from a JSON file (the ConfigMap
// `topology` of the region overlays, k8s/overlays/region) and validates it.
func LoadTopology(path string) (Topology, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Topology{}, fmt.Errorf("region: topology: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var t Topology
	if err := dec.Decode(&t); err != nil {
		return Topology{}, fmt.Errorf("region: topology %s: %w", path, err)
	}
	if err := t.Validate(); err != nil {
		return Topology{}, fmt.Errorf("region: topology %s: %w", path, err)
	}
	return t, nil
}
