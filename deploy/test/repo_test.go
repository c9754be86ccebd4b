package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// repoRoot is the repository root: this module lives in deploy/test.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root not found from %s: %v", root, err)
	}
	return root
}

var (
	tiltOnce   sync.Once
	tiltLoaded *tiltModel
	tiltErr    error
)

// loadTilt evaluates the root Tiltfile once for all tests.
func loadTilt(t testing.TB) *tiltModel {
	t.Helper()
	root := repoRoot(t)
	tiltOnce.Do(func() { tiltLoaded, tiltErr = evalTiltfile(root, filepath.Join(root, "Tiltfile")) })
	if tiltErr != nil {
		t.Fatalf("the Tiltfile does not load: %v", tiltErr)
	}
	return tiltLoaded
}

// serviceModules lists the services: every module under services/.
func serviceModules(t testing.TB) []string {
	t.Helper()
	mods, err := filepath.Glob(filepath.Join(repoRoot(t), "services", "*", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range mods {
		out = append(out, filepath.Base(filepath.Dir(m)))
	}
	sort.Strings(out)
	return out
}

// mainSource reads services/<svc>/cmd/<svc>/main.go.
func mainSource(t testing.TB, service string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "services", service, "cmd", service, "main.go"))
	if err != nil {
		t.Fatalf("%s: %v", service, err)
	}
	return string(src)
}

// The port of /healthz, /readyz and /metrics of each service, as its main
// defines it: --health-addr (directly or through service.Common's Flags), or
// --http-addr for the gateway.
var healthAddrFlag = regexp.MustCompile(`(?:"(?:health|http)-addr",\s*|\.Flags\(fs,\s*)":(\d+)"`)

func healthPort(t testing.TB, service string) int {
	t.Helper()
	m := healthAddrFlag.FindStringSubmatch(mainSource(t, service))
	if m == nil {
		t.Fatalf("%s: no default port of --health-addr or --http-addr in its main", service)
	}
	p, _ := strconv.Atoi(m[1])
	return p
}

// A flag definition of pkg/service: StringFlag(fs, &x, "name", ...).
var flagDef = regexp.MustCompile(`Flag\(fs,\s*&[\w.]+,\s*"([a-z0-9-]+)"`)

// serviceFlags lists the flags a service's main defines, with the shared
// ones of service.Common when it uses them.
func serviceFlags(t testing.TB, service string) map[string]bool {
	t.Helper()
	src := mainSource(t, service)
	flags := map[string]bool{}
	for _, m := range flagDef.FindAllStringSubmatch(src, -1) {
		flags[m[1]] = true
	}
	if strings.Contains(src, ".Flags(fs,") {
		common, err := os.ReadFile(filepath.Join(repoRoot(t), "pkg", "service", "process.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range flagDef.FindAllStringSubmatch(string(common), -1) {
			flags[m[1]] = true
		}
	}
	if len(flags) == 0 {
		t.Fatalf("%s: found no flags in its main", service)
	}
	return flags
}

// envName is pkg/service.EnvName: --stream-replicas reads PIZZA_STREAM_REPLICAS.
func envName(flag string) string {
	return "PIZZA_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}
