package k8s

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// overlays are rendered and checked; base alone is not deployable (no
// image tags an operator chose, no infrastructure addresses) but must
// render too.
var overlays = []string{"overlays/local", "overlays/production"}

// seed is the seed's deployment table (docs/design.md): replicas as the
// HPA's bounds, and the resources of the two components it sizes.
type seedRow struct {
	minReplicas, maxReplicas int32 // maxReplicas 0: no upper bound
	cpu, memory              string
}

var seed = map[string]seedRow{
	"orchestrator": {minReplicas: 2, maxReplicas: 3, cpu: "500m", memory: "512Mi"},
	"outbox-relay": {minReplicas: 2, maxReplicas: 5, cpu: "250m", memory: "256Mi"},
	"order":        {minReplicas: 3},
	"payment":      {minReplicas: 3},
	"inventory":    {minReplicas: 3},
}

// migrated are the services with a database of their own, each with a
// migration Job running the binary's migrate command.
var migrated = []string{"order", "payment", "inventory", "orchestrator"}

// secretVars are settings that carry credentials: only ever from a Secret.
var secretVars = []string{
	"DATABASE_URL", "MIGRATE_DATABASE_URL", "READ_DATABASE_URL", "MIGRATE_READ_DATABASE_URL",
	"OUTBOX_DATABASE_URLS", "REDIS_URL", "KAFKA_SASL_PASSWORD", "POSTGRES_PASSWORD",
	"PII_KEYS", "OUTBOX_KEYS", "SAGA_CONTEXT_KEYS", "VERSION_TOKEN_KEYS",
}

// external are ConfigMaps made outside kustomize (overlays/local/secrets.sh).
var external = []string{"goodgo-jwks"}

// writable are the containers allowed a writable root filesystem: third-party
// images of the local overlay that write under their install directory.
var writable = []string{"StatefulSet/kafka/kafka", "Job/kafka-topics/topics"}

// manifests is one rendered overlay, every object decoded into its type.
type manifests struct {
	deployments     []*appsv1.Deployment
	statefulSets    []*appsv1.StatefulSet
	jobs            []*batchv1.Job
	services        []*corev1.Service
	serviceAccounts map[string]bool
	configMaps      map[string]*corev1.ConfigMap
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	pdbs            []*policyv1.PodDisruptionBudget
	serviceMonitors []*monitoringv1.ServiceMonitor
	prometheusRules []*monitoringv1.PrometheusRule
}

// kustomizeMu runs one kustomize build at a time. kustomize keeps its
// OpenAPI schema in package globals that the first build fills in and
// every build reads (kubernetes-sigs/kustomize#4824, #5805), so the
// parallel tests of this package race on them without it: CI's race
// detector caught it under load.
var kustomizeMu sync.Mutex

// render runs kustomize on dir of fsys and decodes every object strictly:
// an unknown or misspelt field is an error, as it would be for kubectl
// apply --validate=strict.
func render(fsys filesys.FileSystem, dir string) (*manifests, error) {
	kustomizeMu.Lock()
	defer kustomizeMu.Unlock()
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	m := &manifests{serviceAccounts: map[string]bool{}, configMaps: map[string]*corev1.ConfigMap{}}
	var errs []error
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		gvk := r.GetGvk()
		id := gvk.Kind + "/" + r.GetName()
		var into any
		switch gv := gvk.ApiVersion(); {
		case gv == "apps/v1" && gvk.Kind == "Deployment":
			into = added(&m.deployments)
		case gv == "apps/v1" && gvk.Kind == "StatefulSet":
			into = added(&m.statefulSets)
		case gv == "batch/v1" && gvk.Kind == "Job":
			into = added(&m.jobs)
		case gv == "v1" && gvk.Kind == "Service":
			into = added(&m.services)
		case gv == "v1" && gvk.Kind == "ServiceAccount":
			m.serviceAccounts[r.GetName()], into = true, &corev1.ServiceAccount{}
		case gv == "v1" && gvk.Kind == "ConfigMap":
			c := &corev1.ConfigMap{}
			m.configMaps[r.GetName()], into = c, c
		case gv == "v1" && gvk.Kind == "Namespace":
			into = &corev1.Namespace{}
		case gv == "autoscaling/v2" && gvk.Kind == "HorizontalPodAutoscaler":
			into = added(&m.hpas)
		case gv == "policy/v1" && gvk.Kind == "PodDisruptionBudget":
			into = added(&m.pdbs)
		case gv == "monitoring.coreos.com/v1" && gvk.Kind == "ServiceMonitor":
			into = added(&m.serviceMonitors)
		case gv == "monitoring.coreos.com/v1" && gvk.Kind == "PrometheusRule":
			into = added(&m.prometheusRules)
		case gvk.Kind == "Secret":
			errs = append(errs, fmt.Errorf("%s: a Secret in the manifests: secrets are referenced by name, never inlined", id))
			continue
		default:
			errs = append(errs, fmt.Errorf("%s: %s is not a kind these checks know", id, gv))
			continue
		}
		if err := yaml.UnmarshalStrict(y, into); err != nil {
			errs = append(errs, fmt.Errorf("%s: strict decode: %w", id, err))
		}
	}
	return m, errors.Join(errs...)
}

// added appends a new, empty T to list and returns it, to decode into.
func added[T any](list *[]*T) *T {
	v := new(T)
	*list = append(*list, v)
	return v
}

// workload is a pod template and where it comes from.
type workload struct {
	id          string // Kind/name
	spec        *corev1.PodSpec
	podLabels   map[string]string
	longRunning bool // a Deployment or StatefulSet: probes needed
	app         bool // one of the five GoodGo binaries
}

func (m *manifests) workloads() []workload {
	var ws []workload
	for _, d := range m.deployments {
		ws = append(ws, workload{"Deployment/" + d.Name, &d.Spec.Template.Spec, d.Spec.Template.Labels, true, isApp(d.Labels)})
	}
	for _, s := range m.statefulSets {
		ws = append(ws, workload{"StatefulSet/" + s.Name, &s.Spec.Template.Spec, s.Spec.Template.Labels, true, isApp(s.Labels)})
	}
	for _, j := range m.jobs {
		ws = append(ws, workload{"Job/" + j.Name, &j.Spec.Template.Spec, j.Spec.Template.Labels, false, isApp(j.Labels)})
	}
	return ws
}

func isApp(l map[string]string) bool { return l["app.kubernetes.io/part-of"] == "goodgo" }

// check returns every broken rule of m. envVars maps each binary to the
// environment variables its sources name.
func check(m *manifests, envVars map[string]map[string]bool) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	for _, w := range m.workloads() {
		errs = append(errs, checkPod(w, m, envVars)...)
	}
	for name, c := range m.configMaps {
		for k := range c.Data {
			if slices.Contains(secretVars, k) {
				fail("ConfigMap/%s: %s carries a credential: put it in a Secret", name, k)
			}
		}
	}

	apps := map[string]*appsv1.Deployment{}
	for _, d := range m.deployments {
		if isApp(d.Labels) {
			apps[d.Name] = d
		}
	}
	for name, row := range seed {
		d := apps[name]
		if d == nil {
			fail("Deployment/%s: missing", name)
			continue
		}
		errs = append(errs, checkScaling(d, row, m)...)
		if !m.serviceAccounts[d.Spec.Template.Spec.ServiceAccountName] {
			fail("Deployment/%s: ServiceAccount %q is not in the manifests", name, d.Spec.Template.Spec.ServiceAccountName)
		}
		if !slices.ContainsFunc(m.services, func(s *corev1.Service) bool {
			return s.Name == name && selects(s.Spec.Selector, d.Spec.Template.Labels)
		}) {
			fail("Deployment/%s: no Service %s selects its pods", name, name)
		}
		if !hasConfigMap(d, m, name) {
			fail("Deployment/%s: no ConfigMap %s of its own", name, name)
		}
	}
	for _, name := range migrated {
		if !slices.ContainsFunc(m.jobs, func(j *batchv1.Job) bool { return j.Name == name+"-migrate" && runsMigrate(j) }) {
			fail("Job/%s-migrate: missing, or it does not run `%s migrate` with MIGRATE_DATABASE_URL from a Secret", name, name)
		}
	}
	errs = append(errs, checkMonitoring(m)...)
	return errs
}

// hasConfigMap reports whether d takes its settings from a ConfigMap
// generated under its own name (kustomize appends a content hash).
func hasConfigMap(d *appsv1.Deployment, m *manifests, name string) bool {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, f := range c.EnvFrom {
			if f.ConfigMapRef != nil && strings.HasPrefix(f.ConfigMapRef.Name, name+"-") && m.configMaps[f.ConfigMapRef.Name] != nil &&
				!strings.HasPrefix(f.ConfigMapRef.Name, "goodgo-") {
				return true
			}
		}
	}
	return false
}

func runsMigrate(j *batchv1.Job) bool {
	for _, c := range slices.Concat(j.Spec.Template.Spec.InitContainers, j.Spec.Template.Spec.Containers) {
		if slices.Equal(c.Args, []string{"migrate"}) && slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
			return e.Name == "MIGRATE_DATABASE_URL" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
		}) {
			return true
		}
	}
	return false
}

func selects(selector, podLabels map[string]string) bool {
	return len(selector) > 0 && labels.SelectorFromSet(selector).Matches(labels.Set(podLabels))
}

func checkPod(w workload, m *manifests, envVars map[string]map[string]bool) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(w.id+": "+format, args...)) }
	ps := w.spec
	psc := ps.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		fail("pod securityContext.runAsNonRoot must be true")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		fail("pod securityContext.seccompProfile must be RuntimeDefault")
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		fail("automountServiceAccountToken must be false: nothing here calls the Kubernetes API")
	}
	for _, v := range ps.Volumes {
		if v.ConfigMap != nil && m.configMaps[v.ConfigMap.Name] == nil && !slices.Contains(external, v.ConfigMap.Name) {
			fail("volume %s: ConfigMap %s is not in the manifests", v.Name, v.ConfigMap.Name)
		}
	}
	binary := strings.TrimSuffix(strings.TrimPrefix(w.id, "Job/"), "-migrate")
	binary = strings.TrimPrefix(binary, "Deployment/")
	for _, c := range slices.Concat(ps.InitContainers, ps.Containers) {
		cid := c.Name
		if !imagePinned(c.Image) {
			fail("container %s: image %q must name a tag other than latest, or a digest", cid, c.Image)
		}
		for _, rl := range []struct {
			what string
			l    corev1.ResourceList
		}{{"requests", c.Resources.Requests}, {"limits", c.Resources.Limits}} {
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if q, ok := rl.l[r]; !ok || q.IsZero() {
					fail("container %s: resources.%s.%s must be set", cid, rl.what, r)
				}
			}
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
			if lim.Cmp(req) < 0 {
				fail("container %s: %s limit %s is below its request %s", cid, r, lim.String(), req.String())
			}
		}
		sc := c.SecurityContext
		if sc == nil {
			fail("container %s: securityContext missing", cid)
		} else {
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				fail("container %s: allowPrivilegeEscalation must be false", cid)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				fail("container %s: capabilities must drop ALL", cid)
			}
			if sc.Privileged != nil && *sc.Privileged {
				fail("container %s: privileged", cid)
			}
			if (sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem) && (w.app || !slices.Contains(writable, w.id+"/"+cid)) {
				fail("container %s: readOnlyRootFilesystem must be true", cid)
			}
			if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
				fail("container %s: runAsNonRoot false", cid)
			}
			if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				fail("container %s: runs as root (runAsUser 0)", cid)
			}
		}
		if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
			fail("pod runs as root (runAsUser 0)")
		}
		if w.longRunning {
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				fail("container %s: liveness and readiness probes must be set", cid)
			} else if w.app {
				// The real paths of platform/opshttp, on the ops port.
				for _, p := range []struct {
					what string
					p    *corev1.Probe
					path string
				}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
					if p.p.HTTPGet == nil || p.p.HTTPGet.Path != p.path || p.p.HTTPGet.Port.String() != "ops" {
						fail("container %s: %s probe must GET %s on the ops port", cid, p.what, p.path)
					}
				}
			}
		}
		for _, e := range c.Env {
			if slices.Contains(secretVars, e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
				fail("container %s: %s must come from a Secret (valueFrom.secretKeyRef)", cid, e.Name)
			}
			if strings.Contains(e.Value, "://") && strings.Contains(e.Value, "@") {
				fail("container %s: %s inlines a URL with credentials", cid, e.Name)
			}
			if w.app && envVars != nil && !envVars[binary][e.Name] {
				fail("container %s: %s is not a variable the %s binary reads", cid, e.Name, binary)
			}
		}
		for _, f := range c.EnvFrom {
			if f.ConfigMapRef == nil {
				continue
			}
			cm := m.configMaps[f.ConfigMapRef.Name]
			if cm == nil {
				fail("container %s: ConfigMap %s is not in the manifests", cid, f.ConfigMapRef.Name)
				continue
			}
			if w.app && envVars != nil {
				for k := range cm.Data {
					if !envVars[binary][k] {
						fail("container %s: ConfigMap %s sets %s, not a variable the %s binary reads", cid, f.ConfigMapRef.Name, k, binary)
					}
				}
			}
		}
		if w.app && w.longRunning {
			if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return strings.HasPrefix(e.Name, "MIGRATE_") }) {
				fail("container %s: the database owner's connection belongs to the migration Job only", cid)
			}
			if err := memLimitUnder(c); err != nil {
				fail("container %s: %v", cid, err)
			}
		}
	}
	return errs
}

// imagePinned: a digest, or a tag other than latest.
func imagePinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	i := strings.LastIndex(image, ":")
	if i < 0 || i < strings.LastIndex(image, "/") {
		return false // no tag: latest
	}
	return image[i+1:] != "" && image[i+1:] != "latest"
}

// checkScaling holds a Deployment to its seed row: replicas within the
// bounds, an HPA with the seed's bounds, a PDB, the seed's resources.
func checkScaling(d *appsv1.Deployment, row seedRow, m *manifests) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("Deployment/"+d.Name+": "+format, args...))
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < row.minReplicas || (row.maxReplicas > 0 && *d.Spec.Replicas > row.maxReplicas) {
		fail("replicas must be within the seed's %d–%d", row.minReplicas, row.maxReplicas)
	}
	var hpa *autoscalingv2.HorizontalPodAutoscaler
	for _, h := range m.hpas {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == d.Name {
			hpa = h
		}
	}
	switch {
	case hpa == nil:
		fail("no HorizontalPodAutoscaler")
	case hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != row.minReplicas && row.maxReplicas > 0 || *hpa.Spec.MinReplicas < row.minReplicas:
		fail("HPA minReplicas must be the seed's %d", row.minReplicas)
	case row.maxReplicas > 0 && hpa.Spec.MaxReplicas != row.maxReplicas:
		fail("HPA maxReplicas %d, the seed says %d", hpa.Spec.MaxReplicas, row.maxReplicas)
	case hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas:
		fail("HPA maxReplicas below minReplicas")
	}
	if hpa != nil && d.Name == "orchestrator" && !slices.ContainsFunc(hpa.Spec.Metrics, func(ms autoscalingv2.MetricSpec) bool {
		return ms.External != nil && ms.External.Metric.Name == PendingSagasMetric || ms.Pods != nil && ms.Pods.Metric.Name == PendingSagasMetric
	}) {
		fail("the seed scales the orchestrator on pending sagas: its HPA needs the metric %s", PendingSagasMetric)
	}
	if !slices.ContainsFunc(m.pdbs, func(p *policyv1.PodDisruptionBudget) bool {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		return err == nil && !sel.Empty() && sel.Matches(labels.Set(d.Spec.Template.Labels)) &&
			(p.Spec.MaxUnavailable != nil || p.Spec.MinAvailable != nil)
	}) {
		fail("no PodDisruptionBudget selects its pods")
	}
	if row.cpu != "" {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, rl := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
				if q := rl[corev1.ResourceCPU]; q.Cmp(resource.MustParse(row.cpu)) != 0 {
					fail("container %s: cpu %s, the seed says %s", c.Name, q.String(), row.cpu)
				}
				if q := rl[corev1.ResourceMemory]; q.Cmp(resource.MustParse(row.memory)) != 0 {
					fail("container %s: memory %s, the seed says %s", c.Name, q.String(), row.memory)
				}
			}
		}
	}
	return errs
}

// PendingSagasMetric is the orchestrator's gauge of RUNNING and
// COMPENSATING sagas (platform/saga/metrics.go).
const PendingSagasMetric = "saga_pending_count"

func checkMonitoring(m *manifests) []error {
	var errs []error
	if len(m.serviceMonitors) == 0 {
		errs = append(errs, errors.New("no ServiceMonitor"))
	}
	for _, s := range m.services {
		if !isApp(s.Labels) {
			continue
		}
		scraped := slices.ContainsFunc(m.serviceMonitors, func(sm *monitoringv1.ServiceMonitor) bool {
			sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
			return err == nil && sel.Matches(labels.Set(s.Labels)) && slices.ContainsFunc(sm.Spec.Endpoints, func(e monitoringv1.Endpoint) bool {
				return slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port && e.Path == "/metrics" })
			})
		})
		if !scraped {
			errs = append(errs, fmt.Errorf("Service/%s: no ServiceMonitor scrapes its /metrics", s.Name))
		}
	}
	if len(m.prometheusRules) != 1 {
		errs = append(errs, fmt.Errorf("want one PrometheusRule, got %d", len(m.prometheusRules)))
	}
	return errs
}

// runtimeVars are the variables the Go runtime reads, not the binaries'
// configuration.
var runtimeVars = []string{"GOGC", "GOMEMLIMIT"}

// goSize is the syntax of GOMEMLIMIT (runtime package documentation).
var goSize = regexp.MustCompile(`^[0-9]+(B|KiB|MiB|GiB|TiB)?$`)

// memLimitUnder checks that a binary's container sets GOMEMLIMIT, the Go
// collector's soft limit, to at most 85 % of its memory limit: the binaries
// run GOGC at 400 (lifecycle.DefaultGCPercent), and without a soft limit
// the heap could reach the container's limit before a collection.
func memLimitUnder(c corev1.Container) error {
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" })
	if i < 0 {
		return errors.New("GOMEMLIMIT must be set below the memory limit")
	}
	v := c.Env[i].Value
	if !goSize.MatchString(v) {
		return fmt.Errorf("GOMEMLIMIT %q is not a size Go reads (bytes, or KiB, MiB, GiB, TiB)", v)
	}
	// Go's suffixes are Kubernetes' binary ones with a B: 400MiB is 400Mi.
	q, err := resource.ParseQuantity(strings.TrimSuffix(v, "B"))
	if err != nil {
		return fmt.Errorf("GOMEMLIMIT %q: %w", v, err)
	}
	limit := c.Resources.Limits[corev1.ResourceMemory]
	if q.Value()*100 > limit.Value()*85 {
		return fmt.Errorf("GOMEMLIMIT %s is above 85 %% of the memory limit %s", v, limit.String())
	}
	return nil
}

// envVarsRead collects, per binary, the environment variable names its
// configuration code spells out: the service's own files and the platform
// packages that read settings. A variable outside it is a typo or a
// setting no binary reads.
func envVarsRead(t *testing.T) map[string]map[string]bool {
	t.Helper()
	name := regexp.MustCompile(`"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"`)
	read := func(dir string, into map[string]bool) {
		files, err := filepath.Glob(filepath.Join("..", "..", dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s: %v", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range name.FindAllSubmatch(b, -1) {
				into[string(m[1])] = true
			}
		}
	}
	out := map[string]map[string]bool{}
	for svc := range seed {
		vars := map[string]bool{}
		for _, dir := range []string{"platform/config", "platform/bootstrap", "platform/telemetry", "services/" + svc} {
			read(dir, vars)
		}
		for _, k := range runtimeVars {
			vars[k] = true
		}
		// Key variables are built from their purpose's name (config.Purpose).
		for _, k := range []string{"PII", "OUTBOX", "SAGA_CONTEXT", "VERSION_TOKEN"} {
			if vars[k+"_KEYS"] {
				vars[k+"_ACTIVE_KEY"] = true
			}
		}
		out[svc] = vars
	}
	return out
}

func TestOverlaysRenderAndFollowTheRules(t *testing.T) {
	t.Parallel()
	vars := envVarsRead(t)
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			m, err := render(filesys.MakeFsOnDisk(), dir)
			if err != nil {
				t.Fatal(err)
			}
			if errs := check(m, vars); len(errs) > 0 {
				t.Fatal(errors.Join(errs...))
			}
			t.Logf("%d Deployments, %d StatefulSets, %d Jobs, %d Services, %d ConfigMaps, %d HPAs, %d PDBs",
				len(m.deployments), len(m.statefulSets), len(m.jobs), len(m.services), len(m.configMaps), len(m.hpas), len(m.pdbs))
		})
	}
	t.Run("base", func(t *testing.T) {
		if _, err := render(filesys.MakeFsOnDisk(), "base"); err != nil {
			t.Fatal(err)
		}
	})
}

// The PrometheusRule carries exactly the groups of the rule file, and the
// generated manifest is fresh.
func TestPrometheusRuleIsTheRuleFile(t *testing.T) {
	t.Parallel()
	rules, err := os.ReadFile(RulesFile)
	if err != nil {
		t.Fatal(err)
	}
	want, err := PrometheusRule(rules)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(PrometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run `make gen` (or `go generate` in deploy/k8s)", PrometheusRuleFile)
	}
	var spec monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(rules, &spec); err != nil {
		t.Fatal(err)
	}
	m, err := render(filesys.MakeFsOnDisk(), "overlays/production")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.prometheusRules) != 1 {
		t.Fatalf("want one PrometheusRule, got %d", len(m.prometheusRules))
	}
	a, _ := json.Marshal(spec.Groups)
	b, _ := json.Marshal(m.prometheusRules[0].Spec.Groups)
	if !bytes.Equal(a, b) {
		t.Fatalf("the rendered PrometheusRule's groups differ from %s", RulesFile)
	}
	if len(spec.Groups) == 0 || len(spec.Groups[0].Rules) == 0 {
		t.Fatal("no rules")
	}
}

// The orchestrator's HPA scales on a metric the orchestrator exports.
func TestPendingSagasMetricIsExported(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("../../platform/saga/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(src, []byte(`Name: "`+PendingSagasMetric+`"`)) {
		t.Fatalf("platform/saga/metrics.go exports no %s", PendingSagasMetric)
	}
}

// The local overlay's roles.sql is deploy/postgres/roles.sql (kustomize may
// not read files outside the overlay's directory).
func TestLocalRolesAreTheComposeRoles(t *testing.T) {
	t.Parallel()
	a, err := os.ReadFile("overlays/local/roles.sql")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../postgres/roles.sql")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("overlays/local/roles.sql differs from deploy/postgres/roles.sql: copy it")
	}
}

// Each broken manifest fails the checks: the rules are not vacuous.
func TestBrokenManifestsFail(t *testing.T) {
	t.Parallel()
	vars := envVarsRead(t)
	for _, tc := range []struct {
		name, file, old, new, overlay, want string
	}{
		{"latest tag", "overlays/local/postgres.yaml", "postgres:15.10-bookworm", "postgres:latest", "overlays/local",
			`StatefulSet/postgres: container postgres: image "postgres:latest" must name a tag`},
		{"untagged image", "overlays/local/redis.yaml", "redis:7.4.1-bookworm", "redis", "overlays/local",
			`Deployment/redis: container redis: image "redis" must name a tag`},
		{"unknown field", "base/payment/deployment.yaml", "  replicas: 3\n", "  replicas: 3\n  replica: 3\n", "overlays/production",
			`Deployment/payment: strict decode`},
		{"inlined secret", "overlays/production/kustomization.yaml", "patches:\n", "secretGenerator:\n  - name: order-secrets\n    literals: [DATABASE_URL=postgres://u:p@db/x]\npatches:\n", "overlays/production",
			`a Secret in the manifests`},
		{"credential in a ConfigMap", "base/order/kustomization.yaml", "      - GRPC_ADDR=:50051\n", "      - GRPC_ADDR=:50051\n      - DATABASE_URL=postgres://u:p@db/x\n", "overlays/production",
			`DATABASE_URL carries a credential`},
		{"no readiness probe", "base/inventory/deployment.yaml", "          readinessProbe:\n            httpGet: {path: /readyz, port: ops}\n            periodSeconds: 5\n            failureThreshold: 2\n", "", "overlays/production",
			`Deployment/inventory: container app: liveness and readiness probes must be set`},
		{"wrong probe path", "base/payment/deployment.yaml", "path: /readyz", "path: /ready", "overlays/production",
			`Deployment/payment: container app: readiness probe must GET /readyz`},
		{"no limits", "base/order/deployment.yaml", `            limits: {cpu: "1", memory: 512Mi}` + "\n", "", "overlays/local",
			`Deployment/order: container app: resources.limits.cpu must be set`},
		{"root", "base/orchestrator/deployment.yaml", "runAsNonRoot: true\n        runAsUser: 65532", "runAsNonRoot: false\n        runAsUser: 0", "overlays/production",
			`Deployment/orchestrator: pod securityContext.runAsNonRoot must be true`},
		{"writable root filesystem", "base/outbox-relay/deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "overlays/production",
			`Deployment/outbox-relay: container app: readOnlyRootFilesystem must be true`},
		{"orchestrator beyond the seed", "base/orchestrator/hpa.yaml", "maxReplicas: 3", "maxReplicas: 6", "overlays/production",
			`Deployment/orchestrator: HPA maxReplicas 6, the seed says 3`},
		{"relay undersized", "base/outbox-relay/deployment.yaml", "requests: {cpu: 250m, memory: 256Mi}", "requests: {cpu: 100m, memory: 256Mi}", "overlays/production",
			`Deployment/outbox-relay: container app: cpu 100m, the seed says 250m`},
		{"services below three", "base/payment/hpa.yaml", "minReplicas: 3", "minReplicas: 1", "overlays/production",
			`Deployment/payment: HPA minReplicas must be the seed's 3`},
		{"orchestrator on cpu only", "base/orchestrator/hpa.yaml", "name: saga_pending_count", "name: saga_pending", "overlays/production",
			`needs the metric saga_pending_count`},
		{"no PDB", "base/order/kustomization.yaml", "  - pdb.yaml\n", "", "overlays/production",
			`Deployment/order: no PodDisruptionBudget`},
		{"a variable no binary reads", "base/kustomization.yaml", "      - LOG_LEVEL=info\n", "      - LOG_LEVL=info\n", "overlays/production",
			`sets LOG_LEVL, not a variable the`},
		{"key inlined", "base/orchestrator/deployment.yaml", "            - name: SAGA_CONTEXT_KEYS\n              valueFrom:\n                secretKeyRef: {name: orchestrator-secrets, key: SAGA_CONTEXT_KEYS}\n",
			"            - name: SAGA_CONTEXT_KEYS\n              value: k1:AAAA\n", "overlays/production",
			`SAGA_CONTEXT_KEYS must come from a Secret`},
		{"no soft memory limit", "base/payment/deployment.yaml", "            - {name: GOMEMLIMIT, value: 400MiB}\n", "", "overlays/production",
			`Deployment/payment: container app: GOMEMLIMIT must be set below the memory limit`},
		{"soft memory limit at the limit", "base/outbox-relay/deployment.yaml", "{name: GOMEMLIMIT, value: 200MiB}", "{name: GOMEMLIMIT, value: 256MiB}", "overlays/production",
			`Deployment/outbox-relay: container app: GOMEMLIMIT 256MiB is above 85 % of the memory limit 256Mi`},
		{"soft memory limit in Kubernetes' units", "base/order/deployment.yaml", "{name: GOMEMLIMIT, value: 400MiB}", "{name: GOMEMLIMIT, value: 400M}", "overlays/production",
			`Deployment/order: container app: GOMEMLIMIT "400M" is not a size Go reads`},
		{"no migration job", "base/inventory/kustomization.yaml", "  - migrate-job.yaml\n", "", "overlays/production",
			`Job/inventory-migrate: missing`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fsys := copyToMemory(t)
			src, err := fsys.ReadFile(filepath.Join("/k8s", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(src, []byte(tc.old)) {
				t.Fatalf("%s does not contain %q: update the case", tc.file, tc.old)
			}
			if err := fsys.WriteFile(filepath.Join("/k8s", tc.file), bytes.Replace(src, []byte(tc.old), []byte(tc.new), 1)); err != nil {
				t.Fatal(err)
			}
			m, err := render(fsys, filepath.Join("/k8s", tc.overlay))
			if err == nil {
				err = errors.Join(check(m, vars)...)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got: %v", tc.want, err)
			}
		})
	}
}

// copyToMemory copies base and overlays into an in-memory filesystem under
// /k8s, so that a case may break a manifest without touching the tree.
func copyToMemory(t *testing.T) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	for _, root := range []string{"base", "overlays"} {
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return mem.WriteFile(filepath.Join("/k8s", path), b)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return mem
}
