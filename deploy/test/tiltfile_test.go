package deploytest

import (
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestTiltfile(t *testing.T) {
	root := repoRoot(t)
	m := loadTilt(t)

	if want := []string{filepath.Join(root, "Tiltfile"), filepath.Join(root, "tilt", "Tiltfile")}; !slices.Equal(m.files, want) {
		t.Errorf("the root Tiltfile includes tilt/Tiltfile: executed %v", m.files)
	}
	if want := []string{filepath.Join(root, "k8s", "overlays", "dev")}; !slices.Equal(m.kustomized, want) {
		t.Errorf("Tilt deploys the dev overlay, got %v", m.kustomized)
	}

	// One image per service module, compiled on the host and live-updated.
	services := serviceModules(t)
	var want []string
	for _, s := range services {
		want = append(want, "awesome-pizza/"+s)
	}
	if got := m.builtImages(); !slices.Equal(got, want) {
		t.Errorf("images built: %v, want one per service module %v", got, want)
	}
	for _, svc := range services {
		checkTiltService(t, m, root, svc)
	}

	// Every workload of the dev overlay is a labelled resource.
	for _, o := range m.k8sObjects {
		if !o.isWorkload {
			continue
		}
		r := m.findResource(o.name)
		if r == nil {
			t.Errorf("workload %s has no k8s_resource (labels, dependencies)", o.name)
			continue
		}
		if len(r.labels) == 0 {
			t.Errorf("resource %s has no label", o.name)
		}
	}
	for _, infra := range []string{"nats", "redis"} {
		if r := m.findResource(infra); r == nil || !slices.Equal(r.labels, []string{"infra"}) {
			t.Errorf("%s is labelled infra", infra)
		}
	}
	for _, r := range m.localResources {
		if len(r.labels) == 0 {
			t.Errorf("local resource %s has no label", r.name)
		}
	}

	// Port forwards: the gateway, MQTT and the NATS monitor, to ports the pods expose.
	forwards := map[int]string{}
	for _, r := range m.k8sResources {
		w, _ := m.findWorkload(r.resourceName())
		for _, pf := range r.portForwards {
			if other, dup := forwards[pf.local]; dup {
				t.Errorf("local port %d forwarded twice (%s, %s)", pf.local, other, r.resourceName())
			}
			forwards[pf.local] = r.resourceName()
			if !slices.Contains(w.containerPorts, pf.container) {
				t.Errorf("%s forwards to port %d, which its pods do not expose (%v)", r.resourceName(), pf.container, w.containerPorts)
			}
		}
	}
	for _, f := range []struct {
		resource         string
		local, container int
	}{{"gateway", 8080, 8080}, {"mqttbridge", 1883, 1883}, {"nats", 8222, 8222}} {
		if !hasForward(m, f.resource, f.local, f.container) {
			t.Errorf("%s: want a port forward %d -> %d", f.resource, f.local, f.container)
		}
	}

	checkSimulator(t, m, root)
}

func checkTiltService(t *testing.T, m *tiltModel, root, svc string) {
	t.Helper()
	binary := filepath.Join(root, "bin", "linux", svc)

	// Host build: static, for Linux, from the workspace.
	c := m.findLocalResource(svc + "-compile")
	if c == nil {
		t.Errorf("%s: no local_resource %s-compile", svc, svc)
		return
	}
	if c.env["CGO_ENABLED"] != "0" || c.env["GOOS"] != "linux" {
		t.Errorf("%s: compile with CGO_ENABLED=0 GOOS=linux, got env %v", svc, c.env)
	}
	args := strings.Fields(c.cmd)
	if len(args) < 2 || args[0] != "go" || args[1] != "build" || !slices.Contains(args, "./services/"+svc+"/cmd/"+svc) {
		t.Errorf("%s: compile command %q must go build ./services/%s/cmd/%s", svc, c.cmd, svc, svc)
	}
	out := ""
	if i := slices.Index(args, "-o"); i >= 0 && i+1 < len(args) {
		out = filepath.Join(c.dir, args[i+1])
	}
	if out != binary {
		t.Errorf("%s: compile writes %q, want %s", svc, out, binary)
	}
	wantDeps := []string{filepath.Join(root, "services", svc), filepath.Join(root, "pkg")}
	for _, other := range importedServices(t, root, svc) {
		wantDeps = append(wantDeps, filepath.Join(root, "services", other))
	}
	for _, d := range wantDeps {
		if !slices.Contains(c.deps, d) {
			t.Errorf("%s: recompile when %s changes (it compiles it in)", svc, d)
		}
	}
	for _, d := range c.deps {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s: dependency %s does not exist", svc, d)
		}
	}

	// Image: the binary on the dev base, live-updated and restarted.
	var b *dockerBuildCall
	for _, x := range m.dockerBuilds {
		if x.ref == "awesome-pizza/"+svc {
			b = x
		}
	}
	if b == nil {
		t.Errorf("%s: no docker_build", svc)
		return
	}
	if b.dockerfile != filepath.Join(root, "deploy", "docker", "Dockerfile.dev") || b.context != root || b.buildArgs["SERVICE"] != svc {
		t.Errorf("%s: build deploy/docker/Dockerfile.dev from the root with SERVICE=%s; got %s, %s, %v", svc, svc, b.dockerfile, b.context, b.buildArgs)
	}
	for _, o := range []string{"bin/linux/" + svc, "deploy/docker/pizza-dev-run"} {
		if !slices.Contains(b.only, o) {
			t.Errorf("%s: the build context needs %s (only=%v)", svc, o, b.only)
		}
	}
	if want := []syncStep{{local: binary, remote: "/live/" + svc}}; !slices.Equal(b.syncs, want) {
		t.Errorf("%s: live_update must sync the binary into /live: %v", svc, b.syncs)
	}
	if !slices.Equal(b.runs, []string{"kill -HUP 1"}) {
		t.Errorf("%s: live_update must restart the service (kill -HUP 1 to pizza-dev-run), got %v", svc, b.runs)
	}

	// Deploy order: after NATS, Redis and its own compile.
	r := m.findResource(svc)
	if r == nil {
		t.Errorf("%s: no k8s_resource", svc)
		return
	}
	for _, d := range []string{"nats", "redis", svc + "-compile"} {
		if !slices.Contains(r.resourceDeps, d) {
			t.Errorf("%s: resource_deps %v lacks %s", svc, r.resourceDeps, d)
		}
	}
}

var serviceImport = regexp.MustCompile(`"github.com/awesome-pizza/pizza/services/([a-z0-9]+)[/"]`)

// importedServices lists the other service modules whose packages svc's
// non-test code imports.
func importedServices(t *testing.T, root, svc string) []string {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(filepath.Join(root, "services", svc), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range serviceImport.FindAllStringSubmatch(string(src), -1) {
			if m[1] != svc {
				seen[m[1]] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys(seen)
}

// checkSimulator: a button (manual, not started with `tilt up`) that runs
// the simulator against the cluster's NATS with the dev credentials.
func checkSimulator(t *testing.T, m *tiltModel, root string) {
	sim := m.findLocalResource("simulator")
	if sim == nil {
		t.Fatal("no simulator button (local_resource simulator)")
	}
	if sim.autoInit || !sim.manual {
		t.Error("the simulator starts only when its button is pressed (auto_init=False, TRIGGER_MODE_MANUAL)")
	}
	// The simulator talks to the gateway through its port forward and signs
	// its tokens with the dev overlay's JWT secret.
	const prefix = "go run ./cmd/pizza sim --gateway-url "
	if !strings.HasPrefix(sim.serveCmd, prefix) || sim.serveDir != root {
		t.Fatalf("simulator: want %q... run from the root, got %q in %s", prefix, sim.serveCmd, sim.serveDir)
	}
	fields := strings.Fields(strings.TrimPrefix(sim.serveCmd, prefix))
	u, err := url.Parse(fields[0])
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	if !hasForward(m, "gateway", port, 8080) {
		t.Errorf("simulator: %s must reach the gateway through a port forward", u.Redacted())
	}
	dev := buildOverlay(t, "dev")
	secret := findSecret(dev, "gateway-auth")
	if secret == nil {
		t.Fatal("dev: no gateway-auth")
	}
	i := slices.Index(fields, "--jwt-secret")
	if i < 0 || i+1 >= len(fields) || fields[i+1] != string(secret.Data["jwt-secret"]) {
		t.Errorf("simulator: --jwt-secret differs from the dev Secret gateway-auth")
	}
	if !slices.Contains(sim.resourceDeps, "gateway") {
		t.Error("simulator: depends on the gateway")
	}
}

func hasForward(m *tiltModel, resource string, local, container int) bool {
	r := m.findResource(resource)
	return r != nil && slices.ContainsFunc(r.portForwards, func(pf portForwardValue) bool {
		return pf.local == local && pf.container == container
	})
}

// TestTiltStandInsRejectMistakes shows that the stand-ins fail where Tilt
// fails: a misspelled builtin or keyword, a missing argument, and the
// load-time checks Tilt makes.
func TestTiltStandInsRejectMistakes(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"misspelled builtin", `docker_biuld('x', '.')`, "undefined: docker_biuld"},
		{"misspelled keyword", `docker_build('x', '.', dockerfile_contents='FROM scratch', live_updates=[])`, `unexpected keyword argument "live_updates"`},
		{"keyword of the docs, not of Tilt", `k8s_yaml(kustomize(pathToDir='.'))`, `unexpected keyword argument "pathToDir"`},
		{"k8s_resource keyword", `k8s_resource('x', port_forward=8080)`, `unexpected keyword argument "port_forward"`},
		{"local_resource keyword", `local_resource('x', cmd='true', resource_dep=['y'])`, `unexpected keyword argument "resource_dep"`},
		{"missing argument", `s = sync('a')`, "missing argument for remote_path"},
		{"dir without cmd", `local_resource('x', serve_cmd='true', dir='.')`, "'dir' only affects 'cmd'"},
		{"trigger mode", `local_resource('x', cmd='true', trigger_mode='manual')`, "trigger_mode"},
		{"label with slash", `local_resource('x', cmd='true', labels=['a/b'])`, "Invalid label"},
		{"run before sync", `docker_build('x', '.', dockerfile_contents='FROM scratch', live_update=[run('true'), sync('.', '/a')])`, "all sync steps must precede all run steps"},
		{"sync outside the context", `docker_build('x', '.', dockerfile_contents='FROM scratch', live_update=[sync('..', '/a')])`, "is not a child of any watched filepaths"},
		{"unused step", `s = sync('.', '/a')`, "not used by any docker_build"},
		{"restart_container on k8s", `docker_build('x', '.', dockerfile_contents='FROM scratch', live_update=[restart_container()])`, "deprecated"},
		{"unknown workload", `k8s_resource('nope')`, `k8s_resource named "nope" not found`},
		{"unknown dependency", `local_resource('a', cmd='true', resource_deps=['b'])`, "unknown resource b"},
		{"unused image", `docker_build('x', '.', dockerfile_contents='FROM scratch')`, "not used in any deploy config"},
		{"extension without stand-in", `load('ext://uibutton', 'cmd_button')`, "no stand-in"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			sub := filepath.Join(dir, "sub")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			tf := filepath.Join(sub, "Tiltfile")
			if err := os.WriteFile(tf, []byte(c.src+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := evalTiltfile(dir, tf)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an error containing %q, got %v", c.want, err)
			}
		})
	}

	// And a correct one loads.
	dir := t.TempDir()
	tf := filepath.Join(dir, "Tiltfile")
	src := `local_resource('a', cmd='true', labels=['x'])
local_resource('b', serve_cmd='sleep 1', serve_dir='.', resource_deps=['a'], auto_init=False, trigger_mode=TRIGGER_MODE_MANUAL)
`
	if err := os.WriteFile(tf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := evalTiltfile(dir, tf); err != nil {
		t.Fatalf("a valid Tiltfile must load: %v", err)
	}
}
