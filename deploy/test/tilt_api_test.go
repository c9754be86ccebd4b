package deploytest

// Stand-ins for the Tilt builtins the project's Tiltfiles use, evaluated
// under go.starlark.net like Tilt does. Each stand-in declares the parameter
// list that Tilt itself unpacks (copied from tilt-dev/tilt at commit
// 2fa1737aa59b, internal/tiltfile/*.go: the names passed to unpackArgs, not
// the documentation stubs, which differ in places: kustomize's first
// parameter is "paths", not "pathToDir"), so a misspelled function or keyword
// argument fails here as it would fail in `tilt up`. Where Tilt checks more
// while loading (live_update step order, sync sources inside the build
// context, local_resource dir/serve_dir, unknown resources and objects,
// unused live_update steps), the stand-ins check it too. They record the
// calls for the tests instead of building or deploying anything.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Tilt's parameter lists (name, "?" optional, "??" optional and None means absent).
var tiltParams = map[string][]string{
	// internal/tiltfile/include/include.go
	"include": {"path"},
	// internal/tiltfile/docker.go (dockerBuild)
	"docker_build": {"ref", "context", "build_args?", "dockerfile??", "dockerfile_contents?", "cache?",
		"live_update?", "match_in_env_vars?", "ignore?", "only?", "entrypoint?", "container_args?", "target?",
		"ssh?", "secret?", "network?", "extra_tag?", "cache_from?", "pull?", "platform?", "extra_hosts?"},
	// internal/tiltfile/live_update.go
	"sync":              {"local_path", "remote_path"},
	"run":               {"cmd", "trigger?", "echo_off?"},
	"restart_container": {},
	"fall_back_on":      {"paths"},
	"initial_sync":      {},
	// internal/tiltfile/local_resource.go
	"local_resource": {"name", "cmd?", "deps?", "trigger_mode?", "resource_deps?", "ignore?", "auto_init?",
		"serve_cmd?", "cmd_bat?", "serve_cmd_bat?", "allow_parallel?", "links?", "labels?", "env?", "serve_env?",
		"readiness_probe?", "dir?", "serve_dir?"},
	// internal/tiltfile/k8s.go
	"k8s_yaml": {"yaml", "allow_duplicates?"},
	"k8s_resource": {"workload?", "new_name?", "port_forwards?", "extra_pod_selectors?", "trigger_mode?",
		"resource_deps?", "objects?", "auto_init?", "pod_readiness?", "links?", "labels?", "discovery_strategy?"},
	"port_forward": {"local_port", "container_port?", "name?", "link_path?", "host?"},
	// internal/tiltfile/files.go
	"kustomize": {"paths", "kustomize_bin?", "flags?"},
	// internal/tiltfile/links/links.go
	"link": {"url", "name?"},
	// internal/tiltfile/tiltfile_state.go (fail)
	"fail": {"msg"},
}

// ---- recorded model ----

type tiltModel struct {
	root  string // repository root
	files []string

	dockerBuilds   []*dockerBuildCall
	localResources []*localResourceCall
	k8sResources   []*k8sResourceCall
	k8sObjects     []k8sObject // from k8s_yaml, in order

	steps      map[*tiltObject]bool // live_update steps not yet passed to docker_build
	loadCache  map[string]*loadEntry
	kustomized []string // overlay directories built by kustomize()
}

type loadEntry struct {
	executing bool
	globals   starlark.StringDict
	err       error
}

type dockerBuildCall struct {
	ref, context, dockerfile string
	buildArgs                map[string]string
	only                     []string
	syncs                    []syncStep
	runs                     []string
	restart                  bool
}

type syncStep struct{ local, remote string }

type localResourceCall struct {
	name, cmd, serveCmd, dir, serveDir string
	env                                map[string]string
	deps, resourceDeps, labels         []string
	autoInit, manual                   bool
}

type k8sResourceCall struct {
	workload, newName    string
	portForwards         []portForwardValue
	resourceDeps, labels []string
	objects              []string
	links                []string
}

type portForwardValue struct {
	local, container int
	name             string
}

// k8sObject is what the Tiltfile test needs of a deployed object.
type k8sObject struct {
	apiVersion, kind, name, namespace string
	images                            []string
	containerPorts                    []int
	isWorkload                        bool
}

// ---- starlark values ----

// tiltObject is the value of a builtin that returns a Tilt object
// (live_update steps, port forwards, links, blobs, trigger modes).
type tiltObject struct {
	typ     string
	payload any
}

func (o *tiltObject) String() string        { return fmt.Sprintf("<%s %v>", o.typ, o.payload) }
func (o *tiltObject) Type() string          { return o.typ }
func (o *tiltObject) Freeze()               {}
func (o *tiltObject) Truth() starlark.Bool  { return starlark.True }
func (o *tiltObject) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: %s", o.typ) }

const (
	typeSyncStep    = "live_update_sync_step"
	typeRunStep     = "live_update_run_step"
	typeRestartStep = "live_update_restart_container_step"
	typeFallBackOn  = "live_update_fall_back_on_step"
	typeInitialSync = "live_update_initial_sync_step"
	typePortForward = "port_forward"
	typeLink        = "link"
	typeBlob        = "blob"
	typeTriggerMode = "TriggerMode"
)

var (
	triggerModeAuto   = &tiltObject{typ: typeTriggerMode, payload: "auto"}
	triggerModeManual = &tiltObject{typ: typeTriggerMode, payload: "manual"}
)

// ---- evaluation ----

const execFileKey = "deploytest.execFile"

// evalTiltfile executes a Tiltfile (and what it includes) with the stand-ins.
// It returns the recorded model, or the first error that Tilt would report
// while loading.
func evalTiltfile(root, path string) (*tiltModel, error) {
	m := &tiltModel{root: root, steps: map[*tiltObject]bool{}, loadCache: map[string]*loadEntry{}}
	thread := &starlark.Thread{Name: "tiltfile", Print: func(*starlark.Thread, string) {}}
	thread.Load = func(t *starlark.Thread, module string) (starlark.StringDict, error) {
		if strings.HasPrefix(module, "ext://") {
			return nil, fmt.Errorf("load(%q): no stand-in for this Tilt extension; add one to deploy/test", module)
		}
		return m.exec(t, m.abs(t, module))
	}
	if _, err := m.exec(thread, path); err != nil {
		return nil, err
	}
	if err := m.assemble(); err != nil {
		return nil, err
	}
	return m, nil
}

// Tilt's dialect (internal/tiltfile/starkit/environment.go).
var tiltFileOptions = &syntax.FileOptions{Set: true, GlobalReassign: true, Recursion: true, TopLevelControl: true, While: true}

func (m *tiltModel) exec(t *starlark.Thread, path string) (starlark.StringDict, error) {
	if e, ok := m.loadCache[path]; ok {
		if e.executing {
			return nil, fmt.Errorf("Circular load: %s", path)
		}
		return e.globals, e.err
	}
	e := &loadEntry{executing: true}
	m.loadCache[path] = e
	src, err := os.ReadFile(path)
	if err != nil {
		e.executing, e.err = false, fmt.Errorf("error reading file %s: %w", path, err)
		return nil, e.err
	}
	m.files = append(m.files, path)
	old := t.Local(execFileKey)
	t.SetLocal(execFileKey, path)
	predeclared := m.builtins()
	predeclared["__file__"] = starlark.String(path)
	e.globals, e.err = starlark.ExecFileOptions(tiltFileOptions, t, path, src, predeclared)
	t.SetLocal(execFileKey, old)
	e.executing = false
	return e.globals, e.err
}

// abs resolves a path relative to the directory of the Tiltfile being executed,
// as Tilt does (starkit.AbsPath).
func (m *tiltModel) abs(t *starlark.Thread, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	cur, _ := t.Local(execFileKey).(string)
	return filepath.Join(filepath.Dir(cur), p)
}

func (m *tiltModel) builtins() starlark.StringDict {
	fns := map[string]func(*starlark.Thread, map[string]starlark.Value) (starlark.Value, error){
		"include":           m.include,
		"docker_build":      m.dockerBuild,
		"sync":              m.sync,
		"run":               m.run,
		"restart_container": m.step(typeRestartStep),
		"fall_back_on":      m.fallBackOn,
		"initial_sync":      m.step(typeInitialSync),
		"local_resource":    m.localResource,
		"k8s_yaml":          m.k8sYAML,
		"k8s_resource":      m.k8sResource,
		"port_forward":      m.portForward,
		"kustomize":         m.kustomize,
		"link":              m.link,
		"fail": func(_ *starlark.Thread, a map[string]starlark.Value) (starlark.Value, error) {
			return nil, fmt.Errorf("fail: %s", str(a["msg"]))
		},
	}
	d := starlark.StringDict{
		"TRIGGER_MODE_AUTO":   triggerModeAuto,
		"TRIGGER_MODE_MANUAL": triggerModeManual,
	}
	for name, fn := range fns {
		params, ok := tiltParams[name]
		if !ok {
			panic("no parameter list for " + name)
		}
		d[name] = starlark.NewBuiltin(name, func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			a, err := unpack(b.Name(), args, kwargs, params)
			if err != nil {
				return nil, err
			}
			v, err := fn(t, a)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
			if v == nil {
				v = starlark.None
			}
			return v, nil
		})
	}
	return d
}

// unpack checks the arguments against Tilt's parameter list with
// starlark.UnpackArgs (unknown or missing arguments fail) and returns the
// arguments given, by name without the "?" suffixes.
func unpack(fn string, args starlark.Tuple, kwargs []starlark.Tuple, params []string) (map[string]starlark.Value, error) {
	vals := make([]starlark.Value, len(params))
	pairs := make([]any, 0, 2*len(params))
	for i, p := range params {
		pairs = append(pairs, p, &vals[i])
	}
	if err := starlark.UnpackArgs(fn, args, kwargs, pairs...); err != nil {
		return nil, err
	}
	out := map[string]starlark.Value{}
	for i, p := range params {
		if vals[i] == nil || (strings.HasSuffix(p, "??") && vals[i] == starlark.None) {
			continue
		}
		out[strings.TrimRight(p, "?")] = vals[i]
	}
	return out, nil
}

func (m *tiltModel) include(t *starlark.Thread, a map[string]starlark.Value) (starlark.Value, error) {
	p, err := asString(a["path"], "path")
	if err != nil {
		return nil, err
	}
	_, err = m.exec(t, m.abs(t, p))
	return nil, err
}

func (m *tiltModel) newStep(typ string, payload any) *tiltObject {
	s := &tiltObject{typ: typ, payload: payload}
	m.steps[s] = true
	return s
}

func (m *tiltModel) step(typ string) func(*starlark.Thread, map[string]starlark.Value) (starlark.Value, error) {
	return func(*starlark.Thread, map[string]starlark.Value) (starlark.Value, error) {
		return m.newStep(typ, nil), nil
	}
}

func (m *tiltModel) sync(t *starlark.Thread, a map[string]starlark.Value) (starlark.Value, error) {
	local, err := asString(a["local_path"], "local_path")
	if err != nil {
		return nil, err
	}
	remote, err := asString(a["remote_path"], "remote_path")
	if err != nil {
		return nil, err
	}
	return m.newStep(typeSyncStep, syncStep{local: m.abs(t, local), remote: remote}), nil
}

func (m *tiltModel) run(_ *starlark.Thread, a map[string]starlark.Value) (starlark.Value, error) {
	cmd, err := cmdString(a["cmd"], "cmd")
	if err != nil {
		return nil, err
	}
	if _, err := stringList(a["trigger"], "trigger"); err != nil {
		return nil, err
	}
	if _, err := asBool(a["echo_off"], "echo_off", false); err != nil {
		return nil, err
	}
	return m.newStep(typeRunStep, cmd), nil
}

func (m *tiltModel) fallBackOn(t *starlark.Thread, a map[string]starlark.Value) (starlark.Value, error) {
	paths, err := stringList(a["paths"], "paths")
	if err != nil {
		return nil, err
	}
	for i := range paths {
		paths[i] = m.abs(t, paths[i])
	}
	return m.newStep(typeFallBackOn, paths), nil
}

func (m *tiltModel) dockerBuild(t *starlark.Thread, a map[string]starlark.Value) (starlark.Value, error) {
	ref, err := asString(a["ref"], "ref")
	if err != nil {
		return nil, err
	}
	if ref == "" || strings.ContainsAny(ref, " \t") || ref != strings.ToLower(ref) {
		return nil, fmt.Errorf("Argument 1 (ref): can't parse %q", ref)
	}
	for _, b := range m.dockerBuilds {
		if b.ref == ref {
			return nil, fmt.Errorf("Image for ref %q has already been defined", ref)
		}
	}
	ctxPath, err := asString(a["context"], "context")
	if err != nil {
		return nil, err
	}
	b := &dockerBuildCall{ref: ref, context: m.abs(t, ctxPath)}
	if st, err := os.Stat(b.context); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("context %s is not a directory", b.context)
	}
	if _, ok := a["dockerfile_contents"]; ok && a["dockerfile"] != nil {
		return nil, errors.New("Cannot specify both dockerfile and dockerfile_contents keyword arguments")
	}
	b.dockerfile = filepath.Join(b.context, "Dockerfile")
	if v, ok := a["dockerfile"]; ok {
		p, err := asString(v, "dockerfile")
		if err != nil {
			return nil, err
		}
		b.dockerfile = m.abs(t, p)
	}
	if _, ok := a["dockerfile_contents"]; !ok {
		if _, err := os.Stat(b.dockerfile); err != nil {
			return nil, fmt.Errorf("error reading dockerfile: %w", err)
		}
	}
	if b.buildArgs, err = stringMap(a["build_args"], "build_args"); err != nil {
		return nil, err
	}
	if b.only, err = stringList(a["only"], "only"); err != nil {
		return nil, err
	}
	for _, o := range b.only {
		if filepath.IsAbs(o) || strings.HasPrefix(filepath.Clean(o), "..") {
			return nil, fmt.Errorf("only: %q must be a path inside the context", o)
		}
	}
	// Live update steps, in Tilt's order rules (live_update.go, liveUpdateFromSteps).
	noMoreFallbacks, noMoreSyncs, noMoreRuns := false, false, false
	for _, v := range sequence(a["live_update"]) {
		s, ok := v.(*tiltObject)
		if !ok || !strings.HasPrefix(s.typ, "live_update_") {
			return nil, fmt.Errorf("'steps' must be a list of live update steps - got value '%v' of type '%s'", v, v.Type())
		}
		switch s.typ {
		case typeFallBackOn:
			if noMoreFallbacks {
				return nil, errors.New("fall_back_on steps must appear at the start of the list")
			}
		case typeSyncStep:
			if noMoreRuns {
				return nil, errors.New("restart container is only valid as the last step")
			}
			if noMoreSyncs {
				return nil, errors.New("all sync steps must precede all run steps")
			}
			noMoreFallbacks = true
			sy := s.payload.(syncStep)
			// Tilt: "sync step source is not a child of any watched filepaths".
			if !isChild(b.context, sy.local) {
				return nil, fmt.Errorf("sync step source '%s' is not a child of any watched filepaths ([%s])", sy.local, b.context)
			}
			b.syncs = append(b.syncs, sy)
		case typeRunStep:
			if noMoreRuns {
				return nil, errors.New("restart container is only valid as the last step")
			}
			noMoreFallbacks, noMoreSyncs = true, true
			b.runs = append(b.runs, s.payload.(string))
		case typeRestartStep:
			noMoreFallbacks, noMoreSyncs, noMoreRuns = true, true, true
			b.restart = true
		}
		delete(m.steps, s)
	}
	m.dockerBuilds = append(m.dockerBuilds, b)
	return nil, nil
}

func (m *tiltModel) localResource(t *starlark.Thread, a map[string]starlark.Value) (starlark.Value, error) {
	r := &localResourceCall{}
	var err error
	if r.name, err = asString(a["name"], "name"); err != nil {
		return nil, err
	}
	if r.cmd, err = cmdString(a["cmd"], "cmd"); err != nil {
		return nil, err
	}
	if r.serveCmd, err = cmdString(a["serve_cmd"], "serve_cmd"); err != nil {
		return nil, err
	}
	// local_resource.go: dir only affects cmd, serve_dir only serve_cmd.
	if v, ok := a["dir"]; ok {
		if r.cmd == "" {
			if r.serveCmd != "" {
				return nil, errors.New("local_resource: 'dir' only affects 'cmd', not 'serve_cmd'. Did you mean to use 'serve_dir' instead?")
			}
			return nil, errors.New("local_resource: 'dir' specified but 'cmd' is empty")
		}
		d, err := asString(v, "dir")
		if err != nil {
			return nil, err
		}
		r.dir = m.abs(t, d)
	}
	if v, ok := a["serve_dir"]; ok {
		if r.serveCmd == "" {
			return nil, errors.New("local_resource: 'serve_dir' specified but 'serve_cmd' is empty")
		}
		d, err := asString(v, "serve_dir")
		if err != nil {
			return nil, err
		}
		r.serveDir = m.abs(t, d)
	}
	if r.cmd == "" && r.serveCmd == "" {
		return nil, errors.New("local_resource must have a cmd and/or a serve_cmd, but both were empty")
	}
	if r.env, err = stringMap(a["env"], "env"); err != nil {
		return nil, err
	}
	if _, err = stringMap(a["serve_env"], "serve_env"); err != nil {
		return nil, err
	}
	if r.deps, err = stringList(a["deps"], "deps"); err != nil {
		return nil, err
	}
	for i := range r.deps {
		r.deps[i] = m.abs(t, r.deps[i])
	}
	if r.resourceDeps, err = stringList(a["resource_deps"], "resource_deps"); err != nil {
		return nil, err
	}
	if r.labels, err = labelList(a["labels"]); err != nil {
		return nil, err
	}
	if r.autoInit, err = asBool(a["auto_init"], "auto_init", true); err != nil {
		return nil, err
	}
	if r.manual, err = triggerMode(a["trigger_mode"]); err != nil {
		return nil, err
	}
	if _, err := links(a["links"]); err != nil {
		return nil, err
	}
	m.localResources = append(m.localResources, r)
	return nil, nil
}

func (m *tiltModel) kustomize(t *starlark.Thread, a map[string]starlark.Value) (starlark.Value, error) {
	p, err := asString(a["paths"], "paths")
	if err != nil {
		return nil, err
	}
	dir := m.abs(t, p)
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		return nil, err
	}
	m.kustomized = append(m.kustomized, dir)
	return &tiltObject{typ: typeBlob, payload: string(out)}, nil
}

func (m *tiltModel) k8sYAML(t *starlark.Thread, a map[string]starlark.Value) (starlark.Value, error) {
	var docs []string
	for _, v := range sequence(a["yaml"]) {
		switch x := v.(type) {
		case *tiltObject:
			if x.typ != typeBlob {
				return nil, fmt.Errorf("yaml: want a blob or a path, got %s", x.typ)
			}
			docs = append(docs, x.payload.(string))
		case starlark.String:
			b, err := os.ReadFile(m.abs(t, string(x)))
			if err != nil {
				return nil, err
			}
			docs = append(docs, string(b))
		default:
			return nil, fmt.Errorf("yaml: want a blob or a path, got %s", v.Type())
		}
	}
	for _, d := range docs {
		objs, err := parseK8sObjects(d)
		if err != nil {
			return nil, err
		}
		m.k8sObjects = append(m.k8sObjects, objs...)
	}
	return nil, nil
}

func (m *tiltModel) k8sResource(_ *starlark.Thread, a map[string]starlark.Value) (starlark.Value, error) {
	r := &k8sResourceCall{}
	var err error
	if r.workload, err = optString(a["workload"], "workload"); err != nil {
		return nil, err
	}
	if r.newName, err = optString(a["new_name"], "new_name"); err != nil {
		return nil, err
	}
	if r.workload == "" && r.newName == "" {
		return nil, errors.New("k8s_resource: must specify a workload or a new_name")
	}
	for _, v := range sequence(a["port_forwards"]) {
		switch x := v.(type) {
		case starlark.Int:
			n, _ := x.Int64()
			r.portForwards = append(r.portForwards, portForwardValue{local: int(n), container: int(n)})
		case *tiltObject:
			if x.typ != typePortForward {
				return nil, fmt.Errorf("port_forwards: %s is not a port_forward", x.typ)
			}
			r.portForwards = append(r.portForwards, x.payload.(portForwardValue))
		default:
			return nil, fmt.Errorf("port_forwards must be an int, a port_forward, or a sequence of those; is a %s", v.Type())
		}
	}
	if r.resourceDeps, err = stringList(a["resource_deps"], "resource_deps"); err != nil {
		return nil, err
	}
	if r.objects, err = stringList(a["objects"], "objects"); err != nil {
		return nil, err
	}
	if r.labels, err = labelList(a["labels"]); err != nil {
		return nil, err
	}
	if r.links, err = links(a["links"]); err != nil {
		return nil, err
	}
	if _, err := triggerMode(a["trigger_mode"]); err != nil {
		return nil, err
	}
	if _, err := asBool(a["auto_init"], "auto_init", true); err != nil {
		return nil, err
	}
	m.k8sResources = append(m.k8sResources, r)
	return nil, nil
}

func (m *tiltModel) portForward(_ *starlark.Thread, a map[string]starlark.Value) (starlark.Value, error) {
	local, err := asInt(a["local_port"], "local_port")
	if err != nil {
		return nil, err
	}
	pf := portForwardValue{local: local, container: local}
	if v, ok := a["container_port"]; ok {
		if pf.container, err = asInt(v, "container_port"); err != nil {
			return nil, err
		}
	}
	if pf.name, err = optString(a["name"], "name"); err != nil {
		return nil, err
	}
	for _, p := range []int{pf.local, pf.container} {
		if p < 0 || p > 65535 {
			return nil, fmt.Errorf("portForward port value %d is not in the valid range [0-65535]", p)
		}
	}
	return &tiltObject{typ: typePortForward, payload: pf}, nil
}

func (m *tiltModel) link(_ *starlark.Thread, a map[string]starlark.Value) (starlark.Value, error) {
	u, err := asString(a["url"], "url")
	if err != nil {
		return nil, err
	}
	if _, err := optString(a["name"], "name"); err != nil {
		return nil, err
	}
	return &tiltObject{typ: typeLink, payload: u}, nil
}

// assemble runs the checks Tilt makes once the Tiltfile has executed.
func (m *tiltModel) assemble() error {
	for s := range m.steps {
		return fmt.Errorf("found a live_update step (%s) that is not used by any docker_build", s.typ)
	}
	names := map[string]bool{}
	for _, r := range m.localResources {
		if names[r.name] {
			return fmt.Errorf("local_resource named %q already exists", r.name)
		}
		names[r.name] = true
	}
	workloads := map[string]k8sObject{}
	for _, o := range m.k8sObjects {
		if o.isWorkload {
			if _, dup := workloads[o.name]; dup {
				return fmt.Errorf("two workloads named %q: this model keys resources by name only", o.name)
			}
			workloads[o.name] = o
		}
	}
	for _, r := range m.k8sResources {
		if r.workload != "" {
			if _, ok := workloads[r.workload]; !ok {
				return fmt.Errorf("k8s_resource named %q not found", r.workload)
			}
		}
		name := r.resourceName()
		if names[name] {
			return fmt.Errorf("resource %q is defined twice", name)
		}
		names[name] = true
		for _, sel := range r.objects {
			if !m.hasObject(sel) {
				return fmt.Errorf("No object identified by the fragment %q could be found", sel)
			}
		}
	}
	for w := range workloads {
		names[w] = true
	}
	for _, deps := range m.allResourceDeps() {
		for _, d := range deps.deps {
			if !names[d] {
				return fmt.Errorf("resource %s specified a dependency on unknown resource %s", deps.name, d)
			}
		}
	}
	for _, b := range m.dockerBuilds {
		if b.restart {
			// live_update.go, fmtRestartContainerDeprecationError.
			return fmt.Errorf("found `restart_container()` LiveUpdate step in resource(s): [%s]. `restart_container()` has been deprecated for k8s resources", b.ref)
		}
		if !m.imageUsed(b.ref) {
			return fmt.Errorf("image %s is built but not used in any deploy config", b.ref)
		}
	}
	return nil
}

func (r *k8sResourceCall) resourceName() string {
	if r.newName != "" {
		return r.newName
	}
	return r.workload
}

type namedDeps struct {
	name string
	deps []string
}

func (m *tiltModel) allResourceDeps() []namedDeps {
	var out []namedDeps
	for _, r := range m.localResources {
		out = append(out, namedDeps{r.name, r.resourceDeps})
	}
	for _, r := range m.k8sResources {
		out = append(out, namedDeps{r.resourceName(), r.resourceDeps})
	}
	return out
}

// hasObject matches a Tilt object selector "name[:kind[:namespace]]"
// (case-insensitive, exact) against the non-workload objects.
func (m *tiltModel) hasObject(sel string) bool {
	parts := strings.Split(sel, ":")
	for _, o := range m.k8sObjects {
		if o.isWorkload || !strings.EqualFold(parts[0], o.name) {
			continue
		}
		if len(parts) > 1 && !strings.EqualFold(parts[1], o.kind) {
			continue
		}
		if len(parts) > 2 && !strings.EqualFold(parts[2], o.namespace) {
			continue
		}
		return true
	}
	return false
}

func (m *tiltModel) imageUsed(ref string) bool {
	for _, o := range m.k8sObjects {
		for _, img := range o.images {
			if imageName(img) == ref {
				return true
			}
		}
	}
	return false
}

func (m *tiltModel) findWorkload(name string) (k8sObject, bool) {
	for _, o := range m.k8sObjects {
		if o.isWorkload && o.name == name {
			return o, true
		}
	}
	return k8sObject{}, false
}

func (m *tiltModel) findResource(name string) *k8sResourceCall {
	for _, r := range m.k8sResources {
		if r.resourceName() == name {
			return r
		}
	}
	return nil
}

func (m *tiltModel) findLocalResource(name string) *localResourceCall {
	for _, r := range m.localResources {
		if r.name == name {
			return r
		}
	}
	return nil
}

func (m *tiltModel) builtImages() []string {
	var out []string
	for _, b := range m.dockerBuilds {
		out = append(out, b.ref)
	}
	sort.Strings(out)
	return out
}

// ---- Kubernetes objects as Tilt sees them ----

var workloadKinds = map[string]bool{"Deployment": true, "StatefulSet": true, "DaemonSet": true, "ReplicaSet": true, "Job": true, "CronJob": true, "Pod": true}

func parseK8sObjects(stream string) ([]k8sObject, error) {
	var out []k8sObject
	for _, doc := range strings.Split(stream, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var u map[string]any
		if err := yaml.Unmarshal([]byte(doc), &u); err != nil {
			return nil, err
		}
		md, _ := u["metadata"].(map[string]any)
		o := k8sObject{
			apiVersion: fmt.Sprint(u["apiVersion"]),
			kind:       fmt.Sprint(u["kind"]),
			name:       fmt.Sprint(md["name"]),
		}
		if ns, ok := md["namespace"].(string); ok {
			o.namespace = ns
		}
		collectContainers(u, &o)
		o.isWorkload = workloadKinds[o.kind] && len(o.images) > 0
		out = append(out, o)
	}
	return out, nil
}

// collectContainers finds every container (containers, initContainers) below v.
func collectContainers(v any, o *k8sObject) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if k == "containers" || k == "initContainers" {
				for _, ci := range asSlice(c) {
					cm, _ := ci.(map[string]any)
					if img, ok := cm["image"].(string); ok {
						o.images = append(o.images, img)
					}
					for _, p := range asSlice(cm["ports"]) {
						pm, _ := p.(map[string]any)
						if n, ok := pm["containerPort"].(float64); ok {
							o.containerPorts = append(o.containerPorts, int(n))
						}
					}
				}
				continue
			}
			collectContainers(c, o)
		}
	case []any:
		for _, c := range x {
			collectContainers(c, o)
		}
	}
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// imageName strips the tag and digest of an image reference.
func imageName(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// ---- argument helpers ----

func str(v starlark.Value) string {
	if s, ok := starlark.AsString(v); ok {
		return s
	}
	if v == nil {
		return ""
	}
	return v.String()
}

func asString(v starlark.Value, name string) (string, error) {
	s, ok := starlark.AsString(v)
	if !ok {
		return "", fmt.Errorf("%s: want a string, got %s", name, typeOf(v))
	}
	return s, nil
}

func optString(v starlark.Value, name string) (string, error) {
	if v == nil || v == starlark.None {
		return "", nil
	}
	return asString(v, name)
}

func asInt(v starlark.Value, name string) (int, error) {
	i, ok := v.(starlark.Int)
	if !ok {
		return 0, fmt.Errorf("%s: want an int, got %s", name, typeOf(v))
	}
	n, ok := i.Int64()
	if !ok {
		return 0, fmt.Errorf("%s: out of range", name)
	}
	return int(n), nil
}

func asBool(v starlark.Value, name string, def bool) (bool, error) {
	if v == nil {
		return def, nil
	}
	b, ok := v.(starlark.Bool)
	if !ok {
		return false, fmt.Errorf("%s: want a bool, got %s", name, typeOf(v))
	}
	return bool(b), nil
}

func typeOf(v starlark.Value) string {
	if v == nil {
		return "nothing"
	}
	return v.Type()
}

// sequence turns a value or a list/tuple of values into a slice (Tilt's
// starlarkValueOrSequenceToSlice).
func sequence(v starlark.Value) []starlark.Value {
	if v == nil || v == starlark.None {
		return nil
	}
	if _, ok := v.(starlark.String); ok {
		return []starlark.Value{v}
	}
	if it, ok := v.(starlark.Iterable); ok {
		var out []starlark.Value
		iter := it.Iterate()
		defer iter.Done()
		var x starlark.Value
		for iter.Next(&x) {
			out = append(out, x)
		}
		return out
	}
	return []starlark.Value{v}
}

func stringList(v starlark.Value, name string) ([]string, error) {
	var out []string
	for _, x := range sequence(v) {
		s, err := asString(x, name)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func stringMap(v starlark.Value, name string) (map[string]string, error) {
	out := map[string]string{}
	if v == nil || v == starlark.None {
		return out, nil
	}
	d, ok := v.(*starlark.Dict)
	if !ok {
		return nil, fmt.Errorf("%s: want a dict, got %s", name, v.Type())
	}
	for _, item := range d.Items() {
		k, err := asString(item[0], name+" key")
		if err != nil {
			return nil, err
		}
		val, err := asString(item[1], name+" value")
		if err != nil {
			return nil, err
		}
		out[k] = val
	}
	return out, nil
}

// cmdString accepts a command as a string (run by a shell) or a list of arguments.
func cmdString(v starlark.Value, name string) (string, error) {
	if v == nil || v == starlark.None {
		return "", nil
	}
	if s, ok := starlark.AsString(v); ok {
		return s, nil
	}
	parts, err := stringList(v, name)
	if err != nil {
		return "", err
	}
	for i, p := range parts {
		parts[i] = strconv.Quote(p)
	}
	return strings.Join(parts, " "), nil
}

// labelList is Tilt's value.LabelSet: a label or a list of labels, each a
// qualified name without "/".
func labelList(v starlark.Value) ([]string, error) {
	ls, err := stringList(v, "labels")
	if err != nil {
		return nil, err
	}
	for _, l := range ls {
		if l == "" || len(l) > 63 || strings.Contains(l, "/") || strings.Trim(l, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
			return nil, fmt.Errorf("Invalid label %q", l)
		}
	}
	return ls, nil
}

func triggerMode(v starlark.Value) (manual bool, err error) {
	if v == nil {
		return false, nil
	}
	switch v {
	case triggerModeAuto:
		return false, nil
	case triggerModeManual:
		return true, nil
	}
	return false, fmt.Errorf("trigger_mode: want TRIGGER_MODE_AUTO or TRIGGER_MODE_MANUAL, got %s", v)
}

func links(v starlark.Value) ([]string, error) {
	var out []string
	for _, x := range sequence(v) {
		switch l := x.(type) {
		case starlark.String:
			out = append(out, string(l))
		case *tiltObject:
			if l.typ != typeLink {
				return nil, fmt.Errorf("links: %s is not a link", l.typ)
			}
			out = append(out, l.payload.(string))
		default:
			return nil, fmt.Errorf("links: want a string or link(), got %s", x.Type())
		}
	}
	return out, nil
}

func isChild(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
