package deploytest

import (
	"bufio"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct{ cmd, args string }

func readDockerfile(t *testing.T, name string) []instruction {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "deploy", "docker", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// stages splits the instructions at each FROM.
func stages(ins []instruction) [][]instruction {
	var out [][]instruction
	for _, i := range ins {
		if i.cmd == "FROM" {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], i)
		}
	}
	return out
}

func last(ins []instruction, cmd string) string {
	v := ""
	for _, i := range ins {
		if i.cmd == cmd {
			v = i.args
		}
	}
	return v
}

var numericUser = regexp.MustCompile(`^([1-9][0-9]*)(:[0-9]+)?$`)

// TestDockerfile reads the production Dockerfile: a static build from the
// workspace, a distroless non-root runtime.
func TestDockerfile(t *testing.T) {
	st := stages(readDockerfile(t, "Dockerfile"))
	if len(st) < 2 {
		t.Fatalf("want a multi-stage build, got %d stages", len(st))
	}
	build, runtime := st[0], st[len(st)-1]
	if !strings.Contains(build[0].args, "golang:") {
		t.Errorf("build stage: want a golang image, got %q", build[0].args)
	}
	var run string
	for _, i := range build {
		if i.cmd == "RUN" && strings.Contains(i.args, "go build") {
			run = i.args
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "./services/${SERVICE}/cmd/${SERVICE}", "-trimpath"} {
		if !strings.Contains(run, want) {
			t.Errorf("build: the go build step lacks %q: %s", want, run)
		}
	}
	if strings.Contains(run, "GOWORK=off") {
		t.Error("build: build from the go.work workspace")
	}
	if from := runtime[0].args; !strings.HasPrefix(from, "gcr.io/distroless/static") || !strings.HasSuffix(from, ":nonroot") {
		t.Errorf("runtime: want distroless static :nonroot, got %q", from)
	}
	if u := last(runtime, "USER"); !numericUser.MatchString(u) {
		t.Errorf("runtime: USER must be a numeric non-root uid (runAsNonRoot verifies it), got %q", u)
	}
	if e := last(runtime, "ENTRYPOINT"); !strings.HasPrefix(e, "[") {
		t.Errorf("runtime: ENTRYPOINT in exec form (signals reach the service), got %q", e)
	}
	if cmd := last(runtime, "CMD"); cmd != "" {
		t.Errorf("runtime: no CMD; configuration comes from Kubernetes args and the environment")
	}

	// The toolchain of the image matches the workspace's go line.
	work, err := os.ReadFile(filepath.Join(repoRoot(t), "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(work)
	argLine := ""
	for _, i := range readDockerfile(t, "Dockerfile") {
		if i.cmd == "ARG" && strings.HasPrefix(i.args, "GO_VERSION=") {
			argLine = strings.TrimPrefix(i.args, "GO_VERSION=")
		}
	}
	if goLine == nil || argLine != string(goLine[1]) {
		t.Errorf("GO_VERSION %q must be the workspace's Go version %s", argLine, goLine)
	}
}

// TestDockerignore: the production build context keeps the whole workspace
// (deploy/test included, for when go.work lists it).
func TestDockerignore(t *testing.T) {
	root := repoRoot(t)
	ignore, err := os.ReadFile(filepath.Join(root, "deploy", "docker", "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	included := map[string]bool{}
	for _, l := range strings.Split(string(ignore), "\n") {
		if strings.HasPrefix(l, "!") {
			included[strings.TrimSuffix(strings.TrimPrefix(l, "!"), "/")] = true
		}
	}
	for _, f := range []string{"go.work", "go.work.sum"} {
		if !included[f] {
			t.Errorf("the build context needs %s", f)
		}
	}
	for _, mod := range append(workspaceModules(t), "deploy/test") {
		in := false
		for p := range included {
			in = in || mod == p || strings.HasPrefix(mod, p+"/")
		}
		if !in {
			t.Errorf("module %s is outside the build context (Dockerfile.dockerignore)", mod)
		}
	}
}

// TestWorkspaceListsEveryService: images are built from the workspace, so
// every service module must be listed in go.work (`go work use services/<name>`).
func TestWorkspaceListsEveryService(t *testing.T) {
	mods := workspaceModules(t)
	for _, svc := range serviceModules(t) {
		if !slices.Contains(mods, "services/"+svc) {
			t.Errorf("go.work does not list services/%s: its image and Tilt's host build fail (go work use ./services/%s)", svc, svc)
		}
	}
}

func workspaceModules(t *testing.T) []string {
	t.Helper()
	work, err := os.ReadFile(filepath.Join(repoRoot(t), "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	var mods []string
	for _, m := range regexp.MustCompile(`(?m)^\s*(?:use\s+)?\./(\S+)\s*$`).FindAllSubmatch(work, -1) {
		mods = append(mods, string(m[1]))
	}
	return mods
}

// TestDockerfileDev reads the development image Tilt builds.
func TestDockerfileDev(t *testing.T) {
	st := stages(readDockerfile(t, "Dockerfile.dev"))
	img := st[len(st)-1]
	if u := last(img, "USER"); !numericUser.MatchString(u) {
		t.Errorf("USER must be a numeric non-root uid, got %q", u)
	}
	if e := last(img, "ENTRYPOINT"); !strings.Contains(e, "pizza-dev-run") {
		t.Errorf("ENTRYPOINT must be the launcher that restarts on live update, got %q", e)
	}
	copies := ""
	for _, i := range img {
		if i.cmd == "COPY" {
			copies += i.args + "\n"
		}
	}
	for _, want := range []string{"bin/linux/${SERVICE}", "deploy/docker/pizza-dev-run"} {
		if !strings.Contains(copies, want) {
			t.Errorf("the image must copy %s", want)
		}
	}
}

// TestDevLauncher runs deploy/docker/pizza-dev-run with a stand-in service:
// it starts the image's binary, restarts on SIGHUP with the binary synced
// into the live directory, and passes SIGTERM on and exits.
func TestDevLauncher(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	app, live, log := filepath.Join(dir, "app"), filepath.Join(dir, "live"), filepath.Join(dir, "log")
	for _, d := range []string{app, live} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A service that logs its start and a graceful stop on SIGTERM. The
	// trap is set before the start is logged: the test signals as soon as
	// it reads the start, and a TERM before the trap would kill the stand-in
	// without its stop line.
	service := func(id string) string {
		return "#!/bin/sh\ntrap 'echo \"stop " + id + "\" >> " + log + "; exit 0' TERM\n" +
			"echo \"start " + id + " $*\" >> " + log + "\n" +
			"while :; do sleep 0.05; done\n"
	}
	if err := os.WriteFile(filepath.Join(app, "svc"), []byte(service("image")), 0o755); err != nil {
		t.Fatal(err)
	}
	// A test run under nohup (or any parent that ignores SIGHUP) would
	// pass the ignored disposition on, and a shell cannot trap a signal
	// ignored at its start. While this process handles SIGHUP itself, the
	// launcher starts with the default disposition, as PID 1 of a
	// container does.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cmd := exec.Command(sh, filepath.Join(repoRoot(t), "deploy", "docker", "pizza-dev-run"), "--health-addr=:1")
	cmd.Env = append(os.Environ(), "PIZZA_SERVICE=svc", "PIZZA_DEV_APP_DIR="+app, "PIZZA_DEV_LIVE_DIR="+live)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			b, _ := os.ReadFile(log)
			if strings.Contains(string(b), want) {
				return
			}
			time.Sleep(20 * time.Millisecond) // polling a file the child writes, with a deadline
		}
		b, _ := os.ReadFile(log)
		t.Fatalf("timed out waiting for %q; log:\n%s", want, b)
	}
	waitFor("start image --health-addr=:1")

	// Tilt syncs a new binary into /live and sends SIGHUP.
	if err := os.WriteFile(filepath.Join(live, "svc"), []byte(service("live")), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("stop image")
	waitFor("start live --health-addr=:1")

	// Kubernetes stops the pod.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the launcher must exit with the service's status (0), got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the launcher did not exit on SIGTERM")
	}
	waitFor("stop live")
}
