package deploytest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/netutil"
	"github.com/awesome-pizza/pizza/pkg/region"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The per-region overlays (k8s/overlays/prod-<region>, the component
// k8s/overlays/region): each region's NATS cluster is named after the
// region, tagged region:<name>, joined to the other regions by a gateway,
// and holds the accounts of ADR 0017 (docs/adr/0017-...). TestOverlays and
// TestProdOverlay hold these overlays to every rule of prod; the tests here
// check what makes them regions, and run the three regions' configurations
// on real servers joined into a supercluster.

// The names pkg/region gives (region.AccountName, ServerTag,
// SourceConsumer, DeliverSubject, CommandPrefix).
func accountName(region string) string {
	return "REGION_" + strings.ToUpper(strings.ReplaceAll(region, "-", "_"))
}

func sourceConsumer(region string) string {
	return "GLOBAL_" + strings.TrimPrefix(accountName(region), "REGION_")
}

const gatewayPort = 7222

func otherRegions(region string) []string {
	var out []string
	for _, o := range regions {
		if o != region {
			out = append(out, o)
		}
	}
	return out
}

// TestRegionOverlaysCoverEveryRegion: every prod-<region> overlay is one of
// the regions the tests know, and every region has one.
func TestRegionOverlaysCoverEveryRegion(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(repoRoot(t), "k8s", "overlays", "prod-*"))
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, d := range dirs {
		got = append(got, filepath.Base(d))
	}
	for _, r := range regions {
		want = append(want, regionOverlay(r))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("region overlays %v, want %v (add a new region to regions in kustomize_test.go)", got, want)
	}
}

func TestRegionOverlays(t *testing.T) {
	for _, r := range regions {
		t.Run(r, func(t *testing.T) {
			m := buildOverlay(t, regionOverlay(r))
			id := m.overlay
			ss := statefulSet(t, m, "nats")
			c := ss.Spec.Template.Spec.Containers[0]
			if p := containerPort(c, intstr.FromString("gateway")); p != gatewayPort {
				t.Errorf("%s: the NATS container exposes the gateway port %d as \"gateway\", got %d", id, gatewayPort, p)
			}
			for _, name := range []string{ss.Spec.ServiceName, "nats-gateway"} {
				svc := service(t, m, name)
				if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
					return p.Port == gatewayPort && p.TargetPort == intstr.FromString("gateway")
				}) {
					t.Errorf("%s: Service %s lacks the gateway port %d", id, name, gatewayPort)
				}
			}
			if svc := service(t, m, "nats-gateway"); svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
				t.Errorf("%s: the other regions (other clusters) reach the gateway through a LoadBalancer, got %s", id, svc.Spec.Type)
			}
			addrs := gatewayAddresses(t, m)

			cfg := loadNATSConfig(t, m)
			opts := cfg.opts
			if opts.Cluster.Name != r {
				t.Errorf("%s: cluster named %q, want the region %q", id, opts.Cluster.Name, r)
			}
			if tags := []string(opts.Tags); !slices.Equal(tags, []string{"region:" + r}) {
				t.Errorf("%s: server_tags %v, want [region:%s] (stream placement)", id, tags, r)
			}

			// The gateway: named after the region, on the container's port,
			// advertising the region's address and dialling the others'.
			gw := opts.Gateway
			if gw.Name != r {
				t.Errorf("%s: gateway named %q, want %q", id, gw.Name, r)
			}
			if gw.Port != gatewayPort {
				t.Errorf("%s: gateway port %d, want %d", id, gw.Port, gatewayPort)
			}
			if gw.Advertise != addrs[r] {
				t.Errorf("%s: gateway advertises %q, want this region's address %q (ConfigMap nats-gateways)", id, gw.Advertise, addrs[r])
			}
			if gw.Username == "" || gw.Password != secretValue("link-password") {
				t.Errorf("%s: gateways authenticate with key link-password of nats-supercluster", id)
			}
			if !gw.RejectUnknown {
				t.Errorf("%s: only the listed regions may connect (reject_unknown_cluster)", id)
			}
			var remotes []string
			for _, g := range gw.Gateways {
				remotes = append(remotes, g.Name)
				var hosts []string
				for _, u := range g.URLs {
					hosts = append(hosts, u.Host)
				}
				if !slices.Equal(hosts, []string{addrs[g.Name]}) {
					t.Errorf("%s: gateway %s at %v, want %s (ConfigMap nats-gateways)", id, g.Name, hosts, addrs[g.Name])
				}
			}
			slices.Sort(remotes)
			want := otherRegions(r)
			slices.Sort(want)
			if !slices.Equal(remotes, want) {
				t.Errorf("%s: gateways to %v, want the other regions %v", id, remotes, want)
			}

			checkRegionAccounts(t, id, r, cfg)
			checkRegionServices(t, m, r)
		})
	}
}

// generatedConfigMap returns the ConfigMap a generator made under name
// (with its hash suffix).
func generatedConfigMap(t *testing.T, m *manifests, name string) *corev1.ConfigMap {
	t.Helper()
	for _, c := range m.configMaps {
		if trimHash(c.Name) == name {
			return c
		}
	}
	t.Fatalf("%s: no ConfigMap %s", m.overlay, name)
	return nil
}

// overlayTopology reads the ConfigMap region-topology with the loader the
// gateway uses.
func overlayTopology(t *testing.T, m *manifests) region.Topology {
	t.Helper()
	cm := generatedConfigMap(t, m, "region-topology")
	path := filepath.Join(t.TempDir(), "topology.json")
	if err := os.WriteFile(path, []byte(cm.Data["topology.json"]), 0o600); err != nil {
		t.Fatal(err)
	}
	topo, err := region.LoadTopology(path)
	if err != nil {
		t.Fatalf("%s: %v", m.overlay, err)
	}
	return topo
}

// checkRegionServices: the gateway routes by the chain's topology and
// knows its region; the orders service keeps its region's source consumer;
// the global home region's gateways (only theirs) keep the chain-wide view.
func checkRegionServices(t *testing.T, m *manifests, r string) {
	id := m.overlay
	topo := overlayTopology(t, m)
	if names := topo.Names(); !slices.Equal(names, regions) {
		t.Errorf("%s: topology regions %v, want %v", id, names, regions)
	}
	for _, rest := range catalog.Default().Restaurants {
		if _, ok := topo.HomeOf(rest.ID); !ok {
			t.Errorf("%s: restaurant %s has no home region in the topology", id, rest.ID)
		}
	}
	if got := configValue(t, m, "region-name", "name"); got != r {
		t.Errorf("%s: ConfigMap region-name says %q, want %q", id, got, r)
	}
	regionRef := func(c corev1.Container) bool {
		e := env(c, "PIZZA_REGION")
		return e != nil && e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil &&
			trimHash(e.ValueFrom.ConfigMapKeyRef.Name) == "region-name" && e.ValueFrom.ConfigMapKeyRef.Key == "name"
	}
	for _, name := range []string{"gateway", "orders"} {
		d := findDeployment(m, name)
		if d == nil {
			t.Fatalf("%s: no Deployment %s", id, name)
		}
		if c := d.Spec.Template.Spec.Containers[0]; !regionRef(c) {
			t.Errorf("%s: %s takes PIZZA_REGION from key name of ConfigMap region-name", id, name)
		}
	}
	gw := findDeployment(m, "gateway")
	c := gw.Spec.Template.Spec.Containers[0]
	dir := filepath.Dir(envValue(c, "PIZZA_TOPOLOGY"))
	if cm := findConfigMapByVolume(t, m, gw.Spec.Template.Spec, dir, c); cm == nil || trimHash(cm.Name) != "region-topology" {
		t.Errorf("%s: the gateway reads PIZZA_TOPOLOGY from the mounted ConfigMap region-topology", id)
	}
	url := envValue(c, "PIZZA_GLOBAL_NATS_URL")
	if r != topo.Global() {
		if url != "" {
			t.Errorf("%s: only the global home region's (%s) gateways keep the chain-wide view", id, topo.Global())
		}
		return
	}
	pw := env(c, "NATS_GLOBAL_PASSWORD")
	if url != "nats://global:$(NATS_GLOBAL_PASSWORD)@nats:4222" || pw == nil || pw.ValueFrom == nil || pw.ValueFrom.SecretKeyRef == nil ||
		pw.ValueFrom.SecretKeyRef.Name != "nats-supercluster" || pw.ValueFrom.SecretKeyRef.Key != "global-password" {
		t.Errorf("%s: the global home's gateways connect as GLOBAL's user (key global-password of nats-supercluster), got %q", id, url)
	}
}

// gatewayAddresses reads the ConfigMap nats-gateways: host:port per region.
func gatewayAddresses(t *testing.T, m *manifests) map[string]string {
	t.Helper()
	cm := generatedConfigMap(t, m, "nats-gateways")
	var got []string
	for k, v := range cm.Data {
		got = append(got, k)
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			t.Errorf("%s: nats-gateways: %s=%q is not host:port", m.overlay, k, v)
		}
	}
	slices.Sort(got)
	want := slices.Clone(regions)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: nats-gateways names %v, want every region %v", m.overlay, got, want)
	}
	return cm.Data
}

// checkRegionAccounts: ADR 0017's accounts as nats-server parsed them.
func checkRegionAccounts(t *testing.T, id, region string, cfg *natsConfig) {
	opts := cfg.opts
	accounts := map[string]*natsserver.Account{}
	for _, a := range opts.Accounts {
		accounts[a.Name] = a
	}
	var names, want []string
	for n := range accounts {
		names = append(names, n)
	}
	for _, r := range regions {
		want = append(want, accountName(r))
	}
	want = append(want, "GLOBAL", "SYS")
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("%s: accounts %v, want %v", id, names, want)
	}
	if opts.SystemAccount != "SYS" {
		t.Errorf("%s: system_account %q, want SYS", id, opts.SystemAccount)
	}
	// The services and operators are users of this region's account
	// (checkNATSUsers holds them to the permission rules there).
	if cfg.account != accountName(region) {
		t.Errorf("%s: the services' users are in account %q, want %s", id, cfg.account, accountName(region))
	}
	// Besides them, one user each for GLOBAL and SYS, and nobody else.
	others := map[string]string{}
	for _, u := range opts.Users {
		if userAccount(u) == cfg.account {
			continue
		}
		others[userAccount(u)] = u.Username
		key := map[string]string{"GLOBAL": "global-password", "SYS": "system-password"}[userAccount(u)]
		if key == "" || u.Password != secretValue(key) {
			t.Errorf("%s: user %s of account %q: want only GLOBAL's and SYS's users, with keys global-password and system-password of nats-supercluster", id, u.Username, userAccount(u))
		}
	}
	if len(others) != 2 || others["GLOBAL"] == "" || others["SYS"] == "" {
		t.Errorf("%s: want one user in GLOBAL and one in SYS, got %v", id, others)
	}
	// Exports and imports: commands between regions, the durable source
	// consumer's subjects to GLOBAL, and the consumer info, pause and
	// message read its source watch uses.
	for _, r := range regions {
		acc := accounts[accountName(r)]
		for _, subj := range []string{"svc.>", "$JS.API.CONSUMER.RESET.ORDERS." + sourceConsumer(r), "$JS.API.CONSUMER.INFO.ORDERS." + sourceConsumer(r),
			"$JS.API.CONSUMER.PAUSE.ORDERS." + sourceConsumer(r), "$JS.FC.ORDERS." + sourceConsumer(r) + ".>", "$JS.API.STREAM.MSG.GET.ORDERS"} {
			if !acc.IsExportService(subj) {
				t.Errorf("%s: %s does not export the service %s", id, acc.Name, subj)
			}
		}
		if n := acc.NumServiceImports(); n != len(regions)-1 {
			t.Errorf("%s: %s imports %d services, want the other %d regions' commands", id, acc.Name, n, len(regions)-1)
		}
		if accounts["SYS"].IsExportService("svc.>") || accounts["GLOBAL"].IsExportService("svc.>") {
			t.Errorf("%s: GLOBAL and SYS export nothing", id)
		}
	}
	if n := accounts["GLOBAL"].NumServiceImports(); n != 5*len(regions) {
		t.Errorf("%s: GLOBAL imports %d services, want each region's source consumer reset, info and pause APIs, flow control and last-message read (%d)", id, n, 5*len(regions))
	}
	if !opts.JetStream || accounts["SYS"].JetStreamEnabled() {
		t.Errorf("%s: JetStream for the region accounts and GLOBAL, not for SYS", id)
	}
}

// TestRegionAccountsAgree: a supercluster needs the same accounts, exports
// and imports on every server; the regions' accounts.conf differ only in
// the account that includes users.conf (and in comments).
func TestRegionAccountsAgree(t *testing.T) {
	var first, firstRegion string
	for _, r := range regions {
		m := buildOverlay(t, regionOverlay(r))
		ss := statefulSet(t, m, "nats")
		cm := findConfigMapByVolume(t, m, ss.Spec.Template.Spec, "/etc/nats-config", ss.Spec.Template.Spec.Containers[0])
		conf, ok := cm.Data["accounts.conf"]
		if !ok {
			t.Fatalf("%s: nats-config has no accounts.conf", m.overlay)
		}
		var kept []string
		includes := 0
		for _, line := range strings.Split(conf, "\n") {
			line = strings.TrimSpace(line)
			switch {
			case line == "" || strings.HasPrefix(line, "#"):
			case strings.HasPrefix(line, "include"):
				includes++
			default:
				kept = append(kept, line)
			}
		}
		if includes != 1 {
			t.Errorf("%s: accounts.conf includes %d files, want users.conf once", m.overlay, includes)
		}
		text := strings.Join(kept, "\n")
		if first == "" {
			first, firstRegion = text, r
			continue
		}
		if text != first {
			t.Errorf("accounts.conf of %s and %s differ in more than users.conf's place: every server of a supercluster needs the same accounts", firstRegion, r)
		}
	}
}

// TestRegionsOnRealServers starts one nats-server per region from the
// region overlays' configurations (listen addresses, store and the
// gateways' addresses overridden for localhost, one node per region) and
// shows that they form a supercluster: a region's gateway user reaches
// another region's command endpoints under region.<home>.svc.>, and each
// region's services get their own ORDERS, in their own account, on their
// own region's servers.
func TestRegionsOnRealServers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three JetStream servers")
	}
	clusterPorts, gatewayPorts := map[string]int{}, map[string]int{}
	ports, err := netutil.FreePorts("127.0.0.1", 2*len(regions))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range regions {
		clusterPorts[r], gatewayPorts[r] = ports[2*i], ports[2*i+1]
	}
	// The servers' warnings and errors, shown if the supercluster does not form.
	serverLog := &capturedLog{}
	servers := map[string]*natsserver.Server{}
	for _, r := range regions {
		opts := loadNATSConfig(t, buildOverlay(t, regionOverlay(r))).opts
		opts.ServerName = r + "-0"
		opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
		opts.StoreDir = t.TempDir()
		opts.JetStreamMaxMemory, opts.JetStreamMaxStore = 64<<20, 1<<30
		opts.PidFile = ""
		opts.NoLog, opts.NoSigs = true, true
		// One node per region: it routes to itself, as clustered JetStream
		// requires (the overlay's three routes name pods).
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", clusterPorts[r]
		opts.Routes = []*url.URL{localURL(clusterPorts[r])}
		opts.Gateway.Host, opts.Gateway.Port = "127.0.0.1", gatewayPorts[r]
		opts.Gateway.Advertise = "127.0.0.1:" + strconv.Itoa(gatewayPorts[r])
		for _, g := range opts.Gateway.Gateways {
			g.URLs = []*url.URL{localURL(gatewayPorts[g.Name])}
		}
		s, err := natsserver.NewServer(opts)
		if err != nil {
			t.Fatalf("%s: nats-server: %v", r, err)
		}
		s.SetLoggerV2(serverLog.named(r), false, false, false)
		go s.Start()
		t.Cleanup(s.Shutdown)
		servers[r] = s
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := superclusterReady(servers)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("supercluster not ready: %v\nthe servers' log:\n%s", err, serverLog)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	home, away := regions[0], regions[1]
	// The orders service of each region answers its own commands.
	for _, r := range []string{home, away} {
		orders := connectAs(t, servers[r], "orders")
		reply := r
		sub, err := orders.nc.QueueSubscribe("svc.orders.place", "orders", func(m *nats.Msg) { _ = m.Respond([]byte(reply)) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
		if err := orders.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	gateway := connectAs(t, servers[home], "gateway")
	for subject, want := range map[string]string{
		"svc.orders.place":                           home,
		"region." + away + ".svc.orders.place":       away,
		"region." + regions[2] + ".svc.orders.place": "", // nobody listens in the third region
	} {
		var reply *nats.Msg
		var err error
		// Interest crosses the gateways asynchronously: retry until it has.
		for attempt := 0; attempt < 50; attempt++ {
			if reply, err = gateway.nc.Request(subject, []byte(`{}`), 2*time.Second); err == nil || want == "" {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		switch {
		case want == "" && !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout):
			t.Errorf("%s: %s: want no answer, got %v %v", home, subject, reply, err)
		case want != "" && (err != nil || string(reply.Data) != want):
			t.Errorf("%s: %s: want the answer of %s, got %v (%v)", home, subject, want, reply, err)
		}
	}
	gateway.expectNoViolation(t)

	// Each region's orders service provisions ORDERS: two streams of the
	// same name and subjects, one per account, each in its region's cluster
	// (no placement given: the cluster of the server the request reached).
	for _, r := range []string{home, away} {
		orders := connectAs(t, servers[r], "orders")
		var st jetstream.Stream
		var err error
		for attempt := 0; attempt < 100; attempt++ {
			st, err = orders.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Storage: jetstream.FileStorage})
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s: orders provisions ORDERS: %v", r, err)
		}
		if _, err := orders.js.Publish(ctx, "orders.o-"+r, []byte(`{}`)); err != nil {
			t.Fatalf("%s: append: %v", r, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Cluster == nil || info.Cluster.Name != r {
			t.Errorf("%s: ORDERS is in cluster %+v, want %s", r, info.Cluster, r)
		}
		if info.State.Msgs != 1 {
			t.Errorf("%s: ORDERS holds %d events, want its own region's one", r, info.State.Msgs)
		}
		orders.expectNoViolation(t)
		// The orders service keeps the region's source consumer (--region).
		if err := region.ExportOrders(ctx, orders.js, r); err != nil {
			t.Fatalf("%s: orders exports ORDERS to GLOBAL: %v", r, err)
		}
		orders.expectNoViolation(t)
	}

	// The global home's gateways, as GLOBAL's user, provision the
	// chain-wide stream from the overlay's topology: it sources both
	// regions' orders (the third region has no ORDERS yet; its source
	// waits).
	topo := overlayTopology(t, buildOverlay(t, regionOverlay(home)))
	global := connectAs(t, servers[topo.Global()], "global")
	if err := region.ProvisionGlobal(ctx, global.js, topo, region.GlobalOptions{Replicas: 1, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("GLOBAL provisions %s: %v", region.GlobalOrdersStream, err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		st, err := global.js.Stream(ctx, region.GlobalOrdersStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]uint64{home + ".orders.o-" + home: 1, away + ".orders.o-" + away: 1}
		if maps.Equal(info.State.Subjects, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %v, want %v", region.GlobalOrdersStream, info.State.Subjects, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	global.expectNoViolation(t)
}

func superclusterReady(servers map[string]*natsserver.Server) error {
	leader := false
	for r, s := range servers {
		if !s.ReadyForConnections(10 * time.Millisecond) {
			return fmt.Errorf("%s not accepting connections", r)
		}
		if n := s.NumOutboundGateways(); n != len(servers)-1 {
			return fmt.Errorf("%s has %d of %d gateways", r, n, len(servers)-1)
		}
		leader = leader || s.JetStreamIsLeader()
	}
	if !leader {
		return errors.New("no JetStream meta leader")
	}
	return nil
}

// capturedLog keeps the embedded servers' notices, warnings and errors.
type capturedLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *capturedLog) named(server string) natsserver.Logger { return serverLogger{l, server} }

func (l *capturedLog) add(server, level, format string, v []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, time.Now().Format("15:04:05.000")+" "+server+" "+level+" "+fmt.Sprintf(format, v...))
}

func (l *capturedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

type serverLogger struct {
	log    *capturedLog
	server string
}

func (s serverLogger) Noticef(format string, v ...any) { s.log.add(s.server, "NTC", format, v) }
func (s serverLogger) Warnf(format string, v ...any)   { s.log.add(s.server, "WRN", format, v) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.log.add(s.server, "FTL", format, v) }
func (s serverLogger) Errorf(format string, v ...any)  { s.log.add(s.server, "ERR", format, v) }
func (s serverLogger) Debugf(string, ...any)           {}
func (s serverLogger) Tracef(string, ...any)           {}

func localURL(port int) *url.URL {
	return &url.URL{Scheme: "nats", Host: "127.0.0.1:" + strconv.Itoa(port)}
}
