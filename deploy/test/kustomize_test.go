package deploytest

import (
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const (
	namespace = "awesome-pizza"
	partOf    = "awesome-pizza"
)

// Images the manifests may use besides the ones Tilt builds: the
// infrastructure, pinned to a version (never a floating "latest").
var thirdPartyImages = map[string]bool{
	"nats":  true, // nats-server, same minor as github.com/nats-io/nats-server/v2 in go.mod
	"redis": true,
}

// Secrets that production supplies itself (docs/operations.md): the prod
// overlay references them and must not generate them. nats-credentials holds
// the operators' user (user, password) and one password per service
// (<service>-password, see natsPasswordKey).
var externalSecrets = map[string][]string{
	"nats-credentials": {"user", "password",
		"orders-password", "inventory-password", "kitchen-password", "drivers-password", "gateway-password", "mqttbridge-password"},
	"redis-credentials": {"password"},
	"gateway-auth":      {"jwt-secret"},
}

// The regions of the supercluster, each deployed by its own overlay
// k8s/overlays/prod-<region>: prod plus the component k8s/overlays/region
// (docs/scaling.md, "Regions").
var regions = []string{"us-east", "us-west", "eu-west"}

func regionOverlay(region string) string { return "prod-" + region }

// regionSecrets are supplied by production in every region besides
// externalSecrets: the supercluster's gateway password and the users of
// the GLOBAL and SYS accounts (the same values in every region).
var regionSecrets = map[string][]string{
	"nats-supercluster": {"link-password", "global-password", "system-password"},
}

// productionOverlays are prod and every region's prod-like overlay: all of
// them are held to the production rules.
func productionOverlays() []string {
	out := []string{"prod"}
	for _, r := range regions {
		out = append(out, regionOverlay(r))
	}
	return out
}

func isRegionOverlay(overlay string) bool {
	return slices.ContainsFunc(regions, func(r string) bool { return regionOverlay(r) == overlay })
}

func isProductionOverlay(overlay string) bool { return overlay == "prod" || isRegionOverlay(overlay) }

// ---- strict decoding ----

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv2.AddToScheme, networkingv1.AddToScheme, policyv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strictDecoder fails on unknown and duplicate fields and on kinds outside
// the scheme.
var strictDecoder = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

type manifests struct {
	overlay      string
	objects      []runtime.Object
	deployments  []*appsv1.Deployment
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	configMaps   []*corev1.ConfigMap
	secrets      []*corev1.Secret
	namespaces   []*corev1.Namespace
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	ingresses    []*networkingv1.Ingress
	pdbs         []*policyv1.PodDisruptionBudget
}

// workload is a Deployment or a StatefulSet.
type workload struct {
	kind, name string
	replicas   *int32
	selector   *metav1.LabelSelector
	template   *corev1.PodTemplateSpec
}

func (m *manifests) workloads() []workload {
	var out []workload
	for _, d := range m.deployments {
		out = append(out, workload{"Deployment", d.Name, d.Spec.Replicas, d.Spec.Selector, &d.Spec.Template})
	}
	for _, s := range m.statefulSets {
		out = append(out, workload{"StatefulSet", s.Name, s.Spec.Replicas, s.Spec.Selector, &s.Spec.Template})
	}
	return out
}

// buildOverlay runs kustomize in process and decodes every object strictly.
func buildOverlay(t *testing.T, overlay string) *manifests {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "k8s", "overlays", overlay)
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := &manifests{overlay: overlay}
	for _, r := range res.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, gvk, err := strictDecoder.Decode(y, nil, nil)
		if err != nil {
			t.Errorf("%s: %s %s does not decode strictly: %v", overlay, r.GetKind(), r.GetName(), err)
			continue
		}
		m.objects = append(m.objects, obj)
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployments = append(m.deployments, o)
		case *appsv1.StatefulSet:
			m.statefulSets = append(m.statefulSets, o)
		case *corev1.Service:
			m.services = append(m.services, o)
		case *corev1.ConfigMap:
			m.configMaps = append(m.configMaps, o)
		case *corev1.Secret:
			m.secrets = append(m.secrets, o)
		case *corev1.Namespace:
			m.namespaces = append(m.namespaces, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			m.hpas = append(m.hpas, o)
		case *networkingv1.Ingress:
			m.ingresses = append(m.ingresses, o)
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		default:
			t.Errorf("%s: %s %s: kind %s is not checked by this test; add it", overlay, gvk.Kind, r.GetName(), gvk.Kind)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	doc := []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replica: 2
  selector: {matchLabels: {a: b}}
  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: x, image: x}]}}
`)
	if _, _, err := strictDecoder.Decode(doc, nil, nil); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("a misspelled field must fail strict decoding, got %v", err)
	}
}

// ---- the overlays ----

func TestOverlays(t *testing.T) {
	tilt := loadTilt(t)
	built := map[string]bool{}
	for _, ref := range tilt.builtImages() {
		built[ref] = true
	}
	for _, overlay := range append([]string{"dev"}, productionOverlays()...) {
		t.Run(overlay, func(t *testing.T) {
			m := buildOverlay(t, overlay)
			checkMetadata(t, m)
			checkPods(t, m, built)
			checkReferences(t, m)
			checkServices(t, m)
			checkPizzaServices(t, m, built)
			checkScaleOut(t, m)
			checkGatewayAndMQTT(t, m)
			checkNATS(t, m)
			checkRedis(t, m)
		})
	}
}

func TestDevOverlay(t *testing.T) {
	m := buildOverlay(t, "dev")
	nats := statefulSet(t, m, "nats")
	if r := nats.Spec.Replicas; r == nil || *r != 1 {
		t.Errorf("dev: NATS runs one node, got replicas %v", r)
	}
	if got := configValue(t, m, "pizza-config", "PIZZA_STREAM_REPLICAS"); got != "1" {
		t.Errorf("dev: streams at one replica on one node, got %q", got)
	}
	for name := range externalSecrets {
		if findSecret(m, name) == nil {
			t.Errorf("dev: the secretGenerator must produce %s", name)
		}
	}
	// Small requests for a laptop.
	for _, w := range m.workloads() {
		for _, c := range w.template.Spec.Containers {
			if mem := c.Resources.Requests.Memory(); mem.Cmp(resource.MustParse("128Mi")) > 0 {
				t.Errorf("dev: %s/%s requests %s of memory; keep dev requests small", w.name, c.Name, mem)
			}
		}
	}
	// Tilt's live update writes new binaries into /live.
	for _, d := range m.deployments {
		if !hasMount(d.Spec.Template.Spec.Containers[0], "/live") {
			t.Errorf("dev: %s has no writable /live for Tilt's live update", d.Name)
		}
	}
	if svc := service(t, m, "mqttbridge-mqtt"); svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("dev: MQTT is port-forwarded by Tilt, not load-balanced; got %s", svc.Spec.Type)
	}
}

// TestProdOverlay holds prod and every region's overlay to the production
// rules.
func TestProdOverlay(t *testing.T) {
	for _, overlay := range productionOverlays() {
		t.Run(overlay, func(t *testing.T) {
			m := buildOverlay(t, overlay)
			nats := statefulSet(t, m, "nats")
			if r := nats.Spec.Replicas; r == nil || *r != 3 {
				t.Fatalf("%s: NATS runs three nodes, got replicas %v", overlay, r)
			}
			if len(nats.Spec.VolumeClaimTemplates) == 0 {
				t.Errorf("%s: NATS needs persistent volumes (volumeClaimTemplates)", overlay)
			}
			if got := configValue(t, m, "pizza-config", "PIZZA_STREAM_REPLICAS"); got != "3" {
				t.Errorf("%s: streams at three replicas (PIZZA_STREAM_REPLICAS), got %q", overlay, got)
			}
			if got := configValue(t, m, "pizza-config", "PIZZA_PRODUCTION"); got != "true" {
				t.Errorf("%s: domain streams deny delete and purge (PIZZA_PRODUCTION=true), got %q", overlay, got)
			}
			if len(nats.Spec.Template.Spec.TopologySpreadConstraints) == 0 && nats.Spec.Template.Spec.Affinity == nil {
				t.Errorf("%s: spread the NATS nodes over machines", overlay)
			}
			// Disruption budget: a drain never takes the JetStream quorum.
			pdb := findPDB(m, nats.Spec.Template.Labels)
			if pdb == nil {
				t.Fatalf("%s: no PodDisruptionBudget selects the NATS pods", overlay)
			}
			if u := pdb.Spec.MaxUnavailable; u == nil || u.IntValue() != 1 {
				if a := pdb.Spec.MinAvailable; a == nil || a.IntValue() < 2 {
					t.Errorf("%s: NATS PodDisruptionBudget must keep a quorum (maxUnavailable 1 or minAvailable 2), got %+v", overlay, pdb.Spec)
				}
			}
			// Production supplies its own credentials.
			if len(m.secrets) > 0 {
				t.Errorf("%s: ships no Secrets (placeholder credentials); found %s", overlay, m.secrets[0].Name)
			}
			// Released images carry a tag.
			for _, w := range m.workloads() {
				for _, c := range w.template.Spec.Containers {
					if _, tag := splitImage(c.Image); tag == "" || tag == "latest" {
						t.Errorf("%s: %s/%s runs %q: pin a release tag", overlay, w.name, c.Name, c.Image)
					}
				}
			}
			if svc := service(t, m, "mqttbridge-mqtt"); svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
				t.Errorf("%s: MQTT is exposed to devices by a LoadBalancer, got %s", overlay, svc.Spec.Type)
			}
			if len(m.ingresses) == 0 || len(m.ingresses[0].Spec.TLS) == 0 {
				t.Errorf("%s: the gateway's Ingress terminates TLS", overlay)
			}
		})
	}
}

// ---- checks ----

func checkMetadata(t *testing.T, m *manifests) {
	for _, obj := range m.objects {
		md, kind := objectMeta(obj)
		id := kind + "/" + md.Name
		if md.Labels["app.kubernetes.io/part-of"] != partOf {
			t.Errorf("%s: %s lacks app.kubernetes.io/part-of=%s", m.overlay, id, partOf)
		}
		if md.Labels["app.kubernetes.io/name"] == "" {
			t.Errorf("%s: %s lacks app.kubernetes.io/name", m.overlay, id)
		}
		if kind == "Namespace" {
			continue
		}
		if md.Namespace != namespace {
			t.Errorf("%s: %s is in namespace %q, want %q", m.overlay, id, md.Namespace, namespace)
		}
	}
	if len(m.namespaces) != 1 || m.namespaces[0].Name != namespace {
		t.Fatalf("%s: want the one Namespace %s", m.overlay, namespace)
	}
	if got := m.namespaces[0].Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("%s: namespace must enforce the restricted Pod Security Standard, got %q", m.overlay, got)
	}
	for _, ss := range m.statefulSets {
		for _, pvc := range ss.Spec.VolumeClaimTemplates {
			if pvc.Labels["app.kubernetes.io/part-of"] != partOf || pvc.Labels["app.kubernetes.io/name"] != ss.Name {
				t.Errorf("%s: volume claims %s of %s must be labelled like their StatefulSet, got %v", m.overlay, pvc.Name, ss.Name, pvc.Labels)
			}
		}
	}
	for _, w := range m.workloads() {
		l := w.template.Labels
		if l["app.kubernetes.io/part-of"] != partOf || l["app.kubernetes.io/name"] != w.name {
			t.Errorf("%s: pods of %s must be labelled app.kubernetes.io/name=%s, part-of=%s; got %v", m.overlay, w.name, w.name, partOf, l)
		}
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(l)) {
			t.Errorf("%s: %s: selector %v does not select its own pods", m.overlay, w.name, w.selector)
		}
	}
}

// checkPods holds every pod and container to the restricted Pod Security
// Standard and to the project's rules: probes, requests and limits, images.
func checkPods(t *testing.T, m *manifests, built map[string]bool) {
	usedBuilt := map[string]bool{}
	for _, w := range m.workloads() {
		spec := &w.template.Spec
		id := m.overlay + ": " + w.name
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			t.Errorf("%s: no host namespaces", id)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken must be false (no pod talks to the API server)", id)
		}
		for _, v := range spec.Volumes {
			if v.ConfigMap == nil && v.Secret == nil && v.EmptyDir == nil && v.PersistentVolumeClaim == nil && v.Projected == nil && v.DownwardAPI == nil {
				t.Errorf("%s: volume %s is of a type the restricted standard forbids or this test does not know", id, v.Name)
			}
		}
		psc := spec.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
		for _, c := range all {
			cid := id + "/" + c.Name
			checkContainerSecurity(t, cid, psc, c)
			checkResources(t, cid, c)
			checkEnvReferences(t, m, cid, c)
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Errorf("%s: needs readiness and liveness probes", cid)
			}
			for _, p := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
				if p != nil {
					checkProbePort(t, cid, c, p)
				}
			}
			name, tag := splitImage(c.Image)
			switch {
			case built[name]:
				usedBuilt[name] = true
			case thirdPartyImages[name]:
				if tag == "" || tag == "latest" {
					t.Errorf("%s: third-party image %q must be pinned to a version", cid, c.Image)
				}
			default:
				t.Errorf("%s: image %q is neither built by the Tiltfile %v nor an allowed infrastructure image", cid, c.Image, keys(built))
			}
		}
	}
	for ref := range built {
		if !usedBuilt[ref] {
			t.Errorf("%s: the Tiltfile builds %s but no workload runs it", m.overlay, ref)
		}
	}
}

func checkContainerSecurity(t *testing.T, id string, psc *corev1.PodSecurityContext, c corev1.Container) {
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("%s: no securityContext", id)
		return
	}
	runAsNonRoot := sc.RunAsNonRoot
	if runAsNonRoot == nil {
		runAsNonRoot = psc.RunAsNonRoot
	}
	if runAsNonRoot == nil || !*runAsNonRoot {
		t.Errorf("%s: runAsNonRoot must be true", id)
	}
	uid := sc.RunAsUser
	if uid == nil {
		uid = psc.RunAsUser
	}
	if uid == nil || *uid == 0 {
		t.Errorf("%s: run as an explicit non-zero uid (images may name a user kubelet cannot check)", id)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem must be true", id)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation must be false", id)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged", id)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities must drop ALL and add none", id)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile must be RuntimeDefault", id)
	}
}

func checkResources(t *testing.T, id string, c corev1.Container) {
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		if !okReq || !okLim {
			t.Errorf("%s: needs %s requests and limits", id, r)
			continue
		}
		if req.Cmp(lim) > 0 {
			t.Errorf("%s: %s request %s exceeds the limit %s", id, r, req.String(), lim.String())
		}
	}
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkEnvReferences: Kubernetes expands $(VAR) only for variables defined
// earlier in env or through envFrom; a typo stays in the value literally.
func checkEnvReferences(t *testing.T, m *manifests, id string, c corev1.Container) {
	defined := map[string]bool{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			if cm := findConfigMap(m, ef.ConfigMapRef.Name); cm != nil {
				for k := range cm.Data {
					defined[ef.Prefix+k] = true
				}
			}
		}
	}
	for _, e := range c.Env {
		for _, ref := range varRef.FindAllStringSubmatch(e.Value, -1) {
			if !defined[ref[1]] {
				t.Errorf("%s: env %s refers to $(%s), which is not defined before it", id, e.Name, ref[1])
			}
		}
		defined[e.Name] = true
	}
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		for _, ref := range varRef.FindAllStringSubmatch(a, -1) {
			if !defined[ref[1]] {
				t.Errorf("%s: argument %q refers to $(%s), which env does not define", id, a, ref[1])
			}
		}
	}
}

func checkProbePort(t *testing.T, id string, c corev1.Container, p *corev1.Probe) {
	var port intstr.IntOrString
	switch {
	case p.HTTPGet != nil:
		port = p.HTTPGet.Port
	case p.TCPSocket != nil:
		port = p.TCPSocket.Port
	default:
		return
	}
	if containerPort(c, port) == 0 {
		t.Errorf("%s: probe port %s is not a port of the container", id, port.String())
	}
}

// checkReferences: every ConfigMap and Secret a pod uses is in the output,
// except the Secrets production supplies itself.
func checkReferences(t *testing.T, m *manifests) {
	for _, w := range m.workloads() {
		spec := &w.template.Spec
		id := m.overlay + ": " + w.name
		needCM := func(name, what string) {
			if findConfigMap(m, name) == nil {
				t.Errorf("%s: %s refers to ConfigMap %s, which is not in the output", id, what, name)
			}
		}
		needSecret := func(name, key, what string) {
			if s := findSecret(m, name); s != nil {
				if key != "" {
					if _, ok := s.Data[key]; !ok {
						t.Errorf("%s: %s refers to key %s of Secret %s, which it lacks", id, what, key, name)
					}
				}
				return
			}
			// kustomize appends a hash to generated names and rewrites the references.
			base := trimHash(name)
			keys, external := externalSecrets[base]
			if isRegionOverlay(m.overlay) && !external {
				keys, external = regionSecrets[base]
			}
			if isProductionOverlay(m.overlay) && external && base == name {
				if key != "" && !slices.Contains(keys, key) {
					t.Errorf("%s: %s uses key %s of %s, which docs/operations.md does not list", id, what, key, name)
				}
				return
			}
			t.Errorf("%s: %s refers to Secret %s, which is not in the output", id, what, name)
		}
		for _, v := range spec.Volumes {
			if v.ConfigMap != nil {
				needCM(v.ConfigMap.Name, "volume "+v.Name)
			}
			if v.Secret != nil {
				needSecret(v.Secret.SecretName, "", "volume "+v.Name)
			}
		}
		for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil {
					needCM(ef.ConfigMapRef.Name, "envFrom")
				}
				if ef.SecretRef != nil {
					needSecret(ef.SecretRef.Name, "", "envFrom")
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					needCM(r.Name, "env "+e.Name)
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					needSecret(r.Name, r.Key, "env "+e.Name)
				}
			}
		}
	}
}

// checkServices: every Service selects pods and targets their ports; every
// autoscaler, ingress and disruption budget points at something real.
func checkServices(t *testing.T, m *manifests) {
	for _, s := range m.services {
		id := m.overlay + ": Service " + s.Name
		w := m.selected(s.Spec.Selector)
		if w == nil {
			t.Errorf("%s: selects no pods", id)
			continue
		}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			if podPort(w.template, target) == 0 {
				t.Errorf("%s: port %s targets %s, which %s does not expose", id, p.Name, target.String(), w.name)
			}
		}
	}
	for _, h := range m.hpas {
		ref := h.Spec.ScaleTargetRef
		d := findDeployment(m, ref.Name)
		if ref.Kind != "Deployment" || d == nil {
			t.Errorf("%s: HPA %s scales %s %s, which is not here", m.overlay, h.Name, ref.Kind, ref.Name)
			continue
		}
		if d.Spec.Replicas != nil {
			t.Errorf("%s: Deployment %s is autoscaled: leave replicas unset so that an apply does not reset it", m.overlay, d.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
			t.Errorf("%s: HPA %s has an invalid range", m.overlay, h.Name)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
				t.Errorf("%s: HPA on CPU needs CPU requests on %s", m.overlay, c.Name)
			}
		}
	}
	for _, ing := range m.ingresses {
		for _, r := range ing.Spec.Rules {
			if r.HTTP == nil {
				continue
			}
			for _, p := range r.HTTP.Paths {
				b := p.Backend.Service
				s := findService(m, b.Name)
				if s == nil {
					t.Errorf("%s: Ingress %s routes to Service %s, which is not here", m.overlay, ing.Name, b.Name)
					continue
				}
				found := false
				for _, sp := range s.Spec.Ports {
					found = found || (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number)
				}
				if !found {
					t.Errorf("%s: Ingress %s routes to a port Service %s does not have", m.overlay, ing.Name, b.Name)
				}
			}
		}
	}
	for _, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || sel.Empty() {
			t.Errorf("%s: PDB %s needs a selector", m.overlay, p.Name)
			continue
		}
		var w *workload
		for _, x := range m.workloads() {
			if sel.Matches(labels.Set(x.template.Labels)) {
				w = &x
			}
		}
		if w == nil {
			t.Errorf("%s: PDB %s selects no pods", m.overlay, p.Name)
			continue
		}
		if p.Spec.MinAvailable != nil && w.replicas != nil && p.Spec.MinAvailable.Type == intstr.Int && int32(p.Spec.MinAvailable.IntValue()) >= *w.replicas {
			t.Errorf("%s: PDB %s (minAvailable %s) would block every drain of %s (%d replicas)", m.overlay, p.Name, p.Spec.MinAvailable.String(), w.name, *w.replicas)
		}
	}
}

// Environment variables the services read besides their flags' (pkg/service.Main).
var loggingEnv = []string{"PIZZA_LOG_FORMAT", "PIZZA_LOG_LEVEL"}

// checkPizzaServices: the project's own services, against their mains.
func checkPizzaServices(t *testing.T, m *manifests, built map[string]bool) {
	// Every PIZZA_ setting must be one some service reads: a typo would be ignored silently.
	knownEnv := map[string]bool{}
	for _, e := range loggingEnv {
		knownEnv[e] = true
	}
	for _, svc := range serviceModules(t) {
		for f := range serviceFlags(t, svc) {
			knownEnv[envName(f)] = true
		}
	}
	for _, cm := range m.configMaps {
		for k := range cm.Data {
			if strings.HasPrefix(k, "PIZZA_") && !knownEnv[k] {
				t.Errorf("%s: ConfigMap %s sets %s, which no service reads", m.overlay, cm.Name, k)
			}
		}
	}
	for _, svc := range serviceModules(t) {
		id := m.overlay + ": " + svc
		if !built["awesome-pizza/"+svc] {
			t.Errorf("%s: the Tiltfile does not build awesome-pizza/%s", id, svc)
		}
		d := findDeployment(m, svc)
		if d == nil {
			t.Errorf("%s: no Deployment", id)
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		if name, _ := splitImage(c.Image); name != "awesome-pizza/"+svc {
			t.Errorf("%s: runs %s", id, c.Image)
		}
		flags := serviceFlags(t, svc)
		for _, a := range c.Args {
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !strings.HasPrefix(a, "-") || !flags[name] {
				t.Errorf("%s: argument %q is not a flag of its main", id, a)
			}
		}
		for _, e := range c.Env {
			if strings.HasPrefix(e.Name, "PIZZA_") && !knownEnv[e.Name] {
				t.Errorf("%s: env %s is read by no service", id, e.Name)
			}
		}
		port := int32(healthPort(t, svc))
		for _, p := range []struct {
			probe *corev1.Probe
			path  string
		}{{c.ReadinessProbe, "/readyz"}, {c.LivenessProbe, "/healthz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: want an HTTP probe on %s", id, p.path)
				continue
			}
			if p.probe.HTTPGet.Path != p.path || containerPort(c, p.probe.HTTPGet.Port) != port {
				t.Errorf("%s: probe on %s:%s, want %s on :%d (the port of its main)", id, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path, port)
			}
		}
		if !slices.ContainsFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool {
			return e.ConfigMapRef != nil && trimHash(e.ConfigMapRef.Name) == "pizza-config"
		}) {
			t.Errorf("%s: configuration comes from the ConfigMap pizza-config (envFrom)", id)
		}
		natsURL := envValue(c, "PIZZA_NATS_URL")
		if !strings.Contains(natsURL, "$(NATS_USER):$(NATS_PASSWORD)@nats:4222") {
			t.Errorf("%s: PIZZA_NATS_URL %q must carry the credentials of the Secret and name the nats Service", id, natsURL)
		}
		// Its own NATS user (nats_test.go checks that nats.conf gives that
		// user this password and only its own subjects).
		if u := env(c, "NATS_USER"); u == nil || u.ValueFrom != nil || u.Value != svc {
			t.Errorf("%s: NATS_USER must be the service's own NATS user %q", id, svc)
		}
		if e := env(c, "NATS_PASSWORD"); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
			trimHash(e.ValueFrom.SecretKeyRef.Name) != "nats-credentials" || e.ValueFrom.SecretKeyRef.Key != natsPasswordKey(svc) {
			t.Errorf("%s: NATS_PASSWORD comes from key %s of the Secret nats-credentials", id, natsPasswordKey(svc))
		}
		if !strings.Contains(envValue(c, "PIZZA_REDIS_URL"), "@redis:6379") {
			t.Errorf("%s: PIZZA_REDIS_URL must name the redis Service", id)
		}
		if findService(m, svc) == nil {
			t.Errorf("%s: no Service (health and metrics)", id)
		}
	}
}

// checkScaleOut: how several instances of a service share its work
// (--partitions, docs/scaling.md). PIZZA_PARTITIONS is set per Deployment,
// as a literal in its pod template, so every instance of the group reads
// the same count; each instance names itself by its pod in the leases.
func checkScaleOut(t *testing.T, m *manifests) {
	// In pizza-config it would reach every service, the bridge included.
	if v := configValue(t, m, "pizza-config", "PIZZA_PARTITIONS"); v != "" {
		t.Errorf("%s: pizza-config sets PIZZA_PARTITIONS=%s; set it on the Deployments that scale out", m.overlay, v)
	}
	for _, svc := range serviceModules(t) {
		d := findDeployment(m, svc)
		if d == nil {
			continue // checkPizzaServices reports it
		}
		id := m.overlay + ": " + svc
		c := d.Spec.Template.Spec.Containers[0]
		partitions := 0
		if e := env(c, "PIZZA_PARTITIONS"); e != nil {
			n, err := strconv.Atoi(e.Value)
			if e.ValueFrom != nil || err != nil || n < 0 {
				t.Errorf("%s: PIZZA_PARTITIONS must be a literal count in the pod template (every instance the same), got %+v", id, *e)
			}
			partitions = n
		}
		// A literal name would be every replica's: they would steal each
		// other's leases.
		if e := env(c, "PIZZA_INSTANCE_ID"); e != nil && (e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name") {
			t.Errorf("%s: PIZZA_INSTANCE_ID must be the pod's name (fieldRef metadata.name)", id)
		}
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		for _, h := range m.hpas {
			if h.Spec.ScaleTargetRef.Name == svc {
				replicas = max(replicas, h.Spec.MaxReplicas)
			}
		}
		if partitions == 0 {
			// Unpartitioned, every kitchen runs the scheduler and counts
			// the chefs' load (docs/adr/0012): one instance, stopped before
			// its replacement starts.
			if svc == "kitchen" && (d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || replicas != 1) {
				t.Errorf("%s: unpartitioned, the kitchen runs one instance, replaced with Recreate", id)
			}
			continue
		}
		// Its NATS user needs the lease buckets and the right to reset the
		// partition consumers (nats_test.go checks users.conf against the
		// same table).
		if _, ok := partitionedDurables[svc]; !ok {
			t.Errorf("%s: PIZZA_PARTITIONS=%d, but it has no partitioned consumers (partitionedDurables in nats_test.go)", id, partitions)
		}
		if e := env(c, "PIZZA_INSTANCE_ID"); e == nil {
			t.Errorf("%s: partitioned, each instance names itself by its pod (PIZZA_INSTANCE_ID from metadata.name)", id)
		}
		if replicas > int32(partitions) {
			t.Errorf("%s: %d instances for %d partitions: the extra ones would only stand by", id, replicas, partitions)
		}
		// In production a drain takes one instance at a time, so the
		// partitions move to the others instead of all stopping at once.
		if isProductionOverlay(m.overlay) && replicas > 1 {
			pdb := findPDB(m, d.Spec.Template.Labels)
			if pdb == nil || (pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil) {
				t.Errorf("%s: scaled out to %d instances without a PodDisruptionBudget", id, replicas)
			}
		}
	}
}

func checkGatewayAndMQTT(t *testing.T, m *manifests) {
	gw := findDeployment(m, "gateway")
	if gw == nil {
		t.Fatalf("%s: no gateway", m.overlay)
	}
	hpa := false
	for _, h := range m.hpas {
		hpa = hpa || h.Spec.ScaleTargetRef.Name == "gateway"
	}
	if !hpa {
		t.Errorf("%s: the gateway scales horizontally (HPA)", m.overlay)
	}
	ing := false
	for _, i := range m.ingresses {
		for _, r := range i.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				if p.Backend.Service != nil && p.Backend.Service.Name == "gateway" {
					ing = true
				}
			}
		}
	}
	if !ing {
		t.Errorf("%s: the gateway is behind an Ingress", m.overlay)
	}
	mq := service(t, m, "mqttbridge-mqtt")
	if w := m.selected(mq.Spec.Selector); w == nil || w.name != "mqttbridge" {
		t.Errorf("%s: the MQTT Service selects the bridge", m.overlay)
	}
	if !slices.ContainsFunc(mq.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == 1883 }) {
		t.Errorf("%s: MQTT on 1883 for devices", m.overlay)
	}
}

// checkNATS: the event log. The configuration is parsed by nats-server itself.
func checkNATS(t *testing.T, m *manifests) {
	ss := statefulSet(t, m, "nats")
	id := m.overlay + ": nats"
	if ss.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("%s: start all nodes together (podManagementPolicy Parallel): a cluster needs a quorum to become ready", id)
	}
	if len(ss.Spec.VolumeClaimTemplates) == 0 {
		t.Fatalf("%s: JetStream file storage needs a PersistentVolumeClaim", id)
	}
	pvc := ss.Spec.VolumeClaimTemplates[0]
	if _, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
		t.Errorf("%s: the volume claim requests no storage", id)
	}
	headless := service(t, m, ss.Spec.ServiceName)
	if headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("%s: %s must be headless and publish not-ready nodes (routes)", id, headless.Name)
	}
	for _, want := range []string{"client", "cluster", "monitor"} {
		if !slices.ContainsFunc(headless.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == want }) {
			t.Errorf("%s: headless Service lacks the %s port", id, want)
		}
	}
	c := ss.Spec.Template.Spec.Containers[0]
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz?js-enabled-only=true" {
		t.Errorf("%s: liveness must be /healthz?js-enabled-only=true", id)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || !strings.HasPrefix(p.HTTPGet.Path, "/healthz") {
		t.Errorf("%s: readiness must be a /healthz check", id)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil ||
		!strings.Contains(strings.Join(c.Lifecycle.PreStop.Exec.Command, " "), "ldm=") {
		t.Errorf("%s: preStop must put the server in lame-duck mode", id)
	}

	// The configuration, as nats-server reads it.
	if !strings.Contains(strings.Join(c.Args, " "), "/etc/nats-config/nats.conf") {
		t.Errorf("%s: the server must be started with --config /etc/nats-config/nats.conf, got %v", id, c.Args)
	}
	cfg := loadNATSConfig(t, m)
	opts := cfg.opts
	checkNATSUsers(t, m, cfg)
	if !opts.JetStream || opts.StoreDir == "" {
		t.Errorf("%s: JetStream with file storage (store_dir) must be on", id)
	}
	if !hasMountAt(c, opts.StoreDir, "data") {
		t.Errorf("%s: store_dir %s is not on the PersistentVolumeClaim", id, opts.StoreDir)
	}
	if opts.PidFile == "" || !hasMount(c, path.Dir(opts.PidFile)) {
		t.Errorf("%s: pid_file %q must be on a writable volume (lame duck signals it)", id, opts.PidFile)
	}
	if opts.ServerName != "nats-0" {
		t.Errorf("%s: server_name comes from the environment (the pod name), got %q", id, opts.ServerName)
	}
	if opts.Port != int(containerPort(c, intstr.FromString("client"))) || opts.HTTPPort != int(containerPort(c, intstr.FromString("monitor"))) {
		t.Errorf("%s: client/monitor ports of nats.conf (%d/%d) differ from the container's", id, opts.Port, opts.HTTPPort)
	}
	if opts.LameDuckDuration <= 0 {
		t.Errorf("%s: lame_duck_duration must be set", id)
	}
	grace := time.Duration(30) * time.Second
	if g := ss.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if opts.LameDuckDuration+opts.LameDuckGracePeriod >= grace {
		t.Errorf("%s: terminationGracePeriodSeconds (%s) must outlast lame duck (%s + %s)", id, grace, opts.LameDuckGracePeriod, opts.LameDuckDuration)
	}
	replicas := 1
	if ss.Spec.Replicas != nil {
		replicas = int(*ss.Spec.Replicas)
	}
	if streams, _ := strconv.Atoi(configValue(t, m, "pizza-config", "PIZZA_STREAM_REPLICAS")); streams < 1 || streams > replicas {
		t.Errorf("%s: PIZZA_STREAM_REPLICAS=%d needs as many NATS nodes (have %d)", id, streams, replicas)
	}
	if replicas == 1 {
		if opts.Cluster.Port != 0 {
			t.Errorf("%s: one node needs no cluster block", id)
		}
		return
	}
	// A cluster: every write synced, routes to every node through the headless Service.
	if !opts.SyncAlways {
		t.Errorf("%s: a production event log syncs every write (sync_interval: always)", id)
	}
	if opts.Cluster.Port != int(containerPort(c, intstr.FromString("cluster"))) {
		t.Errorf("%s: cluster port %d differs from the container's", id, opts.Cluster.Port)
	}
	var routes []string
	for _, r := range opts.Routes {
		routes = append(routes, r.Host)
	}
	for i := range replicas {
		want := fmt.Sprintf("%s-%d.%s:%d", ss.Name, i, headless.Name, opts.Cluster.Port)
		if !slices.Contains(routes, want) {
			t.Errorf("%s: no route to %s (routes %v)", id, want, routes)
		}
	}
	if len(routes) != replicas {
		t.Errorf("%s: %d routes for %d nodes", id, len(routes), replicas)
	}
}

// checkRedis: read models must never be evicted, and survive a restart.
func checkRedis(t *testing.T, m *manifests) {
	ss := statefulSet(t, m, "redis")
	id := m.overlay + ": redis"
	c := ss.Spec.Template.Spec.Containers[0]
	cm := findConfigMapByVolume(t, m, ss.Spec.Template.Spec, "/etc/redis", c)
	conf := parseRedisConf(cm.Data["redis.conf"])
	if !strings.Contains(strings.Join(append(c.Command, c.Args...), " "), "/etc/redis/redis.conf") {
		t.Errorf("%s: redis-server must read /etc/redis/redis.conf", id)
	}
	if conf["maxmemory-policy"] != "noeviction" {
		t.Errorf("%s: maxmemory-policy must be noeviction, got %q", id, conf["maxmemory-policy"])
	}
	if conf["appendonly"] != "yes" {
		t.Errorf("%s: persistence: appendonly yes, got %q", id, conf["appendonly"])
	}
	if !hasMountAt(c, conf["dir"], "data") || len(ss.Spec.VolumeClaimTemplates) == 0 {
		t.Errorf("%s: dir %q must be on a PersistentVolumeClaim", id, conf["dir"])
	}
	maxmem, err := redisBytes(conf["maxmemory"])
	if err != nil || maxmem == 0 {
		t.Errorf("%s: set maxmemory below the container's limit (%q): %v", id, conf["maxmemory"], err)
	} else if limit := c.Resources.Limits.Memory().Value(); float64(maxmem) > 0.8*float64(limit) {
		t.Errorf("%s: maxmemory %d leaves too little of the %d-byte limit (forks, buffers)", id, maxmem, limit)
	}
	if !slices.Contains(c.Args, "--requirepass") {
		t.Errorf("%s: Redis requires a password (from redis-credentials)", id)
	}
}

// ---- lookups ----

func objectMeta(obj runtime.Object) (metav1.ObjectMeta, string) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o.ObjectMeta, "Deployment"
	case *appsv1.StatefulSet:
		return o.ObjectMeta, "StatefulSet"
	case *corev1.Service:
		return o.ObjectMeta, "Service"
	case *corev1.ConfigMap:
		return o.ObjectMeta, "ConfigMap"
	case *corev1.Secret:
		return o.ObjectMeta, "Secret"
	case *corev1.Namespace:
		return o.ObjectMeta, "Namespace"
	case *autoscalingv2.HorizontalPodAutoscaler:
		return o.ObjectMeta, "HorizontalPodAutoscaler"
	case *networkingv1.Ingress:
		return o.ObjectMeta, "Ingress"
	case *policyv1.PodDisruptionBudget:
		return o.ObjectMeta, "PodDisruptionBudget"
	}
	panic(fmt.Sprintf("unexpected %T", obj))
}

func (m *manifests) selected(sel map[string]string) *workload {
	if len(sel) == 0 {
		return nil
	}
	for _, w := range m.workloads() {
		if labels.SelectorFromSet(sel).Matches(labels.Set(w.template.Labels)) {
			return &w
		}
	}
	return nil
}

func findDeployment(m *manifests, name string) *appsv1.Deployment {
	for _, d := range m.deployments {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func statefulSet(t *testing.T, m *manifests, name string) *appsv1.StatefulSet {
	t.Helper()
	for _, s := range m.statefulSets {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("%s: no StatefulSet %s", m.overlay, name)
	return nil
}

func findService(m *manifests, name string) *corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func service(t *testing.T, m *manifests, name string) *corev1.Service {
	t.Helper()
	s := findService(m, name)
	if s == nil {
		t.Fatalf("%s: no Service %s", m.overlay, name)
	}
	return s
}

func findConfigMap(m *manifests, name string) *corev1.ConfigMap {
	for _, c := range m.configMaps {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func findSecret(m *manifests, name string) *corev1.Secret {
	for _, s := range m.secrets {
		if s.Name == name || trimHash(s.Name) == name {
			return s
		}
	}
	return nil
}

func findPDB(m *manifests, podLabels map[string]string) *policyv1.PodDisruptionBudget {
	for _, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(podLabels)) {
			return p
		}
	}
	return nil
}

// configValue reads a key of a (possibly hash-suffixed) ConfigMap.
func configValue(t *testing.T, m *manifests, name, key string) string {
	t.Helper()
	for _, c := range m.configMaps {
		if trimHash(c.Name) == name {
			return c.Data[key]
		}
	}
	t.Fatalf("%s: no ConfigMap %s", m.overlay, name)
	return ""
}

// findConfigMapByVolume returns the ConfigMap mounted at dir in container c.
func findConfigMapByVolume(t *testing.T, m *manifests, spec corev1.PodSpec, dir string, c corev1.Container) *corev1.ConfigMap {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != dir {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil {
				if cm := findConfigMap(m, v.ConfigMap.Name); cm != nil {
					return cm
				}
			}
		}
	}
	t.Fatalf("%s: %s: no ConfigMap mounted at %s", m.overlay, c.Name, dir)
	return nil
}

// trimHash removes the suffix kustomize's generators append (name-<10 chars>).
var hashSuffix = regexp.MustCompile(`-[a-z0-9]{10}$`)

func trimHash(name string) string { return hashSuffix.ReplaceAllString(name, "") }

func splitImage(ref string) (name, tag string) {
	name = imageName(ref)
	rest := strings.TrimPrefix(ref, name)
	if strings.HasPrefix(rest, ":") {
		tag, _, _ = strings.Cut(rest[1:], "@")
	}
	return name, tag
}

func containerPort(c corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

func podPort(tmpl *corev1.PodTemplateSpec, p intstr.IntOrString) int32 {
	for _, c := range tmpl.Spec.Containers {
		if n := containerPort(c, p); n != 0 {
			return n
		}
	}
	return 0
}

func hasMount(c corev1.Container, dir string) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == dir && !vm.ReadOnly })
}

func hasMountAt(c corev1.Container, dir, volume string) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
		return vm.Name == volume && (dir == vm.MountPath || strings.HasPrefix(dir, vm.MountPath+"/"))
	})
}

func env(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func envValue(c corev1.Container, name string) string {
	if e := env(c, name); e != nil {
		return e.Value
	}
	return ""
}

func parseRedisConf(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		out[strings.ToLower(k)] = strings.TrimSpace(v)
	}
	return out
}

// redisBytes parses a Redis memory size (1gb, 512mb, 100k, 1024).
func redisBytes(s string) (int64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	units := []struct {
		suffix string
		mult   int64
	}{{"gb", 1 << 30}, {"mb", 1 << 20}, {"kb", 1 << 10}, {"g", 1e9}, {"m", 1e6}, {"k", 1e3}, {"", 1}}
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			n, err := strconv.ParseInt(strings.TrimSuffix(s, u.suffix), 10, 64)
			return n * u.mult, err
		}
	}
	return 0, fmt.Errorf("bad size %q", s)
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
