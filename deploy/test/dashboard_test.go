package deploytest

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// dashboardFile is the Grafana dashboard the base ships as a ConfigMap.
const dashboardFile = "k8s/base/monitoring/awesome-pizza-dashboard.json"

type grafanaDashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaPanel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *grafanaDatasource       `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		RefID      string             `json:"refId"`
		Expr       string             `json:"expr"`
		Datasource *grafanaDatasource `json:"datasource"`
	} `json:"targets"`
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// standardMetrics are the Go runtime and process collectors' names (every
// service registers them: service.NewMetrics) the dashboard may use.
var standardMetrics = map[string]bool{
	"go_goroutines": true, "go_threads": true, "go_memstats_heap_alloc_bytes": true, "go_gc_duration_seconds": true,
	"process_cpu_seconds_total": true, "process_resident_memory_bytes": true, "process_open_fds": true, "process_start_time_seconds": true,
}

// keyMetrics must each appear in the dashboard: the list (request
// rate and latency, events appended and consumed, consumer and projection
// lag, MQTT clients and messages, SSE clients) and the dead letters.
var keyMetrics = []string{
	"pizza_http_requests_total", "pizza_http_request_duration_seconds_bucket",
	"pizza_stream_events_total", "pizza_events_consumed_total", "pizza_projection_events_applied_total",
	"pizza_consumer_pending_messages", "pizza_consumer_ack_pending_messages", "pizza_consumer_redelivered_messages",
	"pizza_projection_lag_events", "pizza_projection_lag_seconds",
	"pizza_mqtt_clients_connected", "pizza_mqtt_messages_total", "pizza_gateway_sse_clients",
	"pizza_projection_dead_letters_total",
}

// registeredMetrics collects every metric name the code can register:
// string literals of the form pizza_... in the non-test Go files of the
// platform's modules (cmd, pkg, services).
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	root := repoRoot(t)
	name := regexp.MustCompile(`^pizza_[a-z0-9_]+$`)
	out := map[string]bool{}
	for _, dir := range []string{"cmd", "pkg", "services"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || d.Name() == "web" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && name.MatchString(s) {
						out[s] = true
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d metric names found in the code: the search is broken", len(out))
	}
	return out
}

// promQL tokens: metric names are identifiers that are not functions (a
// "(" follows), keywords, or label names (inside {...} or by/without (...)).
var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent     = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promFunctions = regexp.MustCompile(`^[a-z_]+$`)
	promKeywords  = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "e": true, "Inf": true, "NaN": true}
)

// metricNames returns the metric names a PromQL expression selects.
func metricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRanges.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		id := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // the exponent of a number such as 1e-9
		}
		rest := strings.TrimLeft(s[loc[1]:], " ")
		if strings.HasPrefix(rest, "(") && promFunctions.MatchString(id) {
			continue
		}
		if promKeywords[id] {
			continue
		}
		out = append(out, id)
	}
	return out
}

func TestMetricNamesOfPromQL(t *testing.T) {
	got := metricNames(`sum by (le, route) (rate(pizza_x_bucket{status=~"5..",a="b c"}[$__rate_interval])) / clamp_min(sum(rate(pizza_y_total[5m])), 1e-9) + on (a) go_goroutines offset 5m`)
	want := []string{"pizza_x_bucket", "pizza_y_total", "go_goroutines"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// The dashboard is valid Grafana JSON on the datasource variable, its
// panels do not overlap, every metric it queries is one the code
// registers, and it covers the key metrics; the base ships it as a
// ConfigMap Grafana's sidecar picks up, in every overlay, unchanged.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	var d grafanaDashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard without uid, title or panels")
	}
	hasDS := false
	for _, v := range d.Templating.List {
		hasDS = hasDS || (v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus")
	}
	if !hasDS {
		t.Error("the dashboard needs a Prometheus datasource variable named datasource")
	}

	registered := registeredMetrics(t)
	known := func(m string) bool {
		if registered[m] || standardMetrics[m] {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(m, suffix); ok && registered[base] {
				return true
			}
		}
		return false
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad position %+v", p.Title, p.GridPos)
		}
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap", other, p.Title)
					goto next
				}
				taken[cell{x, y}] = p.Title
			}
		}
	next:
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: needs targets on the ${datasource} variable", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: target %q needs a unique refId and the ${datasource} variable", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") {
				t.Errorf("panel %q: unbalanced parentheses in %s", p.Title, tg.Expr)
			}
			names := metricNames(tg.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: %q queries no metric", p.Title, tg.Expr)
			}
			for _, m := range names {
				used[m] = true
				if !known(m) {
					t.Errorf("panel %q queries %s, which no code registers", p.Title, m)
				}
			}
		}
	}
	var missing []string
	for _, m := range keyMetrics {
		if !used[m] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard does not show %s", strings.Join(missing, ", "))
	}

	for _, overlay := range append([]string{"dev"}, productionOverlays()...) {
		m := buildOverlay(t, overlay)
		cm := findConfigMap(m, "grafana-dashboard-awesome-pizza")
		if cm == nil {
			t.Errorf("%s: no ConfigMap grafana-dashboard-awesome-pizza", overlay)
			continue
		}
		if cm.Name != "grafana-dashboard-awesome-pizza" {
			t.Errorf("%s: the dashboard's ConfigMap is renamed to %s (a hash suffix leaves old copies behind)", overlay, cm.Name)
		}
		if cm.Labels["grafana_dashboard"] != "1" {
			t.Errorf("%s: the dashboard's ConfigMap lacks the label grafana_dashboard=1", overlay)
		}
		if len(cm.Data) != 1 || cm.Data["awesome-pizza.json"] != string(raw) {
			t.Errorf("%s: the ConfigMap must hold %s unchanged as awesome-pizza.json", overlay, dashboardFile)
		}
	}
}
