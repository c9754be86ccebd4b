package region

import (
	"strings"
	"testing"
)

var testTopo = Topology{Regions: []Region{
	{Name: "us-west", Servers: 1, Restaurants: []string{"downtown", "pearl"}},
	{Name: "eu-west", Servers: 3, Restaurants: []string{"soho"}},
}}

func TestTopologyValidate(t *testing.T) {
	for name, tc := range map[string]Topology{
		"no regions":     {},
		"bad name":       {Regions: []Region{{Name: "US", Servers: 1}}},
		"no servers":     {Regions: []Region{{Name: "a", Servers: 0}}},
		"two homes":      {Regions: []Region{{Name: "a", Servers: 1, Restaurants: []string{"x"}}, {Name: "b", Servers: 1, Restaurants: []string{"x"}}}},
		"unknown global": {Regions: []Region{{Name: "a", Servers: 1}}, GlobalHome: "b"},
	} {
		if err := tc.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := testTopo.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestRouter(t *testing.T) {
	r, err := NewRouter(testTopo, "us-west")
	if err != nil {
		t.Fatal(err)
	}
	for restaurant, want := range map[string]string{
		"downtown": "svc.orders.place",
		"soho":     "region.eu-west.svc.orders.place",
	} {
		got, err := r.Subject(restaurant, "svc.orders.place")
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", restaurant, got, err, want)
		}
	}
	if _, err := r.Subject("nowhere", "svc.orders.place"); err == nil {
		t.Error("unknown restaurant routed")
	}
	if AccountName("us-west") != "REGION_US_WEST" || SourceConsumer("us-west") != "GLOBAL_US_WEST" {
		t.Error("names")
	}
}

func TestPlanOptions(t *testing.T) {
	p, err := NewPlan(testTopo, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Options("us-west", 0); err == nil {
		t.Fatal("options without addresses")
	}
	if err := p.FreeAddrs("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	o, err := p.Options("eu-west", 2)
	if err != nil {
		t.Fatal(err)
	}
	if o.ServerName != "eu-west-3" || o.Cluster.Name != "eu-west" || o.Gateway.Name != "eu-west" || !o.JetStream {
		t.Fatalf("options: %+v", o)
	}
	if len(o.Routes) != 3 || len(o.Gateway.Gateways) != 1 || o.Gateway.Gateways[0].Name != "us-west" {
		t.Fatalf("routes %v gateways %+v", o.Routes, o.Gateway.Gateways)
	}
	if len(o.Tags) != 1 || o.Tags[0] != "region:eu-west" {
		t.Fatalf("tags %v", o.Tags)
	}
	cfg, _ := p.Config("us-west", 0)
	if !strings.Contains(cfg, `to: "region.eu-west.svc.>"`) {
		t.Fatalf("us-west does not import eu-west's commands:\n%s", cfg)
	}
	gcfg := GlobalStreamConfig(testTopo, GlobalOptions{})
	if len(gcfg.Sources) != 2 || gcfg.Sources[1].SubjectTransforms[0].Destination != "eu-west.orders.>" || gcfg.Placement.Tags[0] != "region:us-west" {
		t.Fatalf("global stream: %+v", gcfg)
	}
}
