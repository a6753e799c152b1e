package ops_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pelletier/go-toml/v2"
	"sigs.k8s.io/yaml"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/e2e/ops"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

func helmBin(t *testing.T) string { return must(t, ops.Helm) }

func kustomizeBin(t *testing.T) string { return must(t, ops.Kustomize) }

func chartDir(t *testing.T) string {
	return filepath.Join(moduleRoot(t), "deploy", "helm", "vipspeaker")
}

func requireChart(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(chartDir(t), "Chart.yaml")); err != nil {
		t.Fatalf("the chart is missing: %v", err)
	}
	if testing.Short() {
		nstest.Skip(t, "-short: helm is built from source on first use")
	}
}

func run(t *testing.T, argv ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(argv, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// object is one rendered Kubernetes object.
type object map[string]any

func (o object) key() string {
	md, _ := o["metadata"].(map[string]any)
	return fmt.Sprintf("%v/%v/%v", o["kind"], md["namespace"], md["name"])
}

// parseObjects splits a multi-document YAML stream into objects.
func parseObjects(t *testing.T, stream string) map[string]object {
	t.Helper()
	out := map[string]object{}
	for _, doc := range strings.Split("\n"+stream, "\n---") {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if o == nil {
			continue
		}
		if _, dup := out[o.key()]; dup {
			t.Errorf("%s rendered twice", o.key())
		}
		out[o.key()] = o
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// chartOnlyLabels are what Helm adds by convention and kustomize does not.
var chartOnlyLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}

// normalize drops the chart-only labels wherever labels live.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if k == "labels" {
				if m, ok := val.(map[string]any); ok {
					for _, l := range chartOnlyLabels {
						delete(m, l)
					}
					if len(m) == 0 {
						delete(x, k)
						continue
					}
				}
			}
			x[k] = normalize(val)
		}
		return x
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
		return x
	}
	return v
}

// parsedConfig replaces a ConfigMap's TOML files (vipspeaker.toml,
// gobgp.conf) by their parsed content, so layout and comments do not count
// and every key and value does.
func parsedConfig(t *testing.T, o object) map[string]any {
	t.Helper()
	m := map[string]any(o)
	data, ok := m["data"].(map[string]any)
	if m["kind"] != "ConfigMap" || !ok {
		return m
	}
	for k, v := range data {
		text, ok := v.(string)
		if !ok || !(strings.HasSuffix(k, ".toml") || strings.HasSuffix(k, ".conf")) {
			continue
		}
		var parsed map[string]any
		if err := toml.Unmarshal([]byte(text), &parsed); err != nil {
			t.Errorf("%s data %s is not TOML: %v\n%s", o.key(), k, err, text)
			continue
		}
		data[k] = parsed
	}
	return m
}

func helmTemplate(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, append([]string{helmBin(t), "template", "vipspeaker", chartDir(t), "--namespace", "vipspeaker-system"}, args...)...)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestHelmLint: `helm lint --strict` passes with the default values and
// with every optional part switched on.
func TestHelmLint(t *testing.T) {
	requireChart(t)
	out := run(t, helmBin(t), "lint", "--strict", chartDir(t))
	t.Log(out)
	out = run(t, helmBin(t), "lint", "--strict", chartDir(t), "--set", "serviceMonitor.enabled=true")
	t.Log(out)
}

// TestHelmTemplateEqualsKustomize: with default values plus
// namespace.create=true (the Namespace object, which `helm install
// --create-namespace` makes instead) the chart renders the same objects as
// `kustomize build deploy/kustomize`, label for label, apart from the
// labels Helm adds by convention.
func TestHelmTemplateEqualsKustomize(t *testing.T) {
	requireChart(t)
	kdir := filepath.Join(moduleRoot(t), "deploy", "kustomize")
	if _, err := os.Stat(filepath.Join(kdir, "kustomization.yaml")); err != nil {
		t.Fatalf("no kustomize base to compare the chart with: %v", err)
	}
	want := parseObjects(t, run(t, kustomizeBin(t), "build", kdir))
	// --include-crds: `helm install` installs crds/ (VIPSpeakerNode) too.
	got := parseObjects(t, helmTemplate(t, "--set", "namespace.create=true", "--include-crds"))
	if diff := cmp.Diff(keys(want), keys(got)); diff != "" {
		t.Errorf("objects (-kustomize +helm):\n%s", diff)
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			continue
		}
		if diff := cmp.Diff(normalize(parsedConfig(t, w)), normalize(parsedConfig(t, g))); diff != "" {
			t.Errorf("%s (-kustomize +helm):\n%s", k, diff)
		}
	}
}

func renderedConfigMap(t *testing.T, stream string) object {
	t.Helper()
	cm, ok := parseObjects(t, stream)["ConfigMap/vipspeaker-system/vipspeaker-config"]
	if !ok {
		t.Fatalf("no ConfigMap vipspeaker-config rendered:\n%s", stream)
	}
	return cm
}

// checkRenderedConfigMap renders the chart's ConfigMap with the helm
// arguments and runs `vipspeaker check` on it; it returns check's output
// followed by the manifest.
func checkRenderedConfigMap(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := lab.BuildBinary("./cmd/vipspeaker")
	if err != nil {
		t.Fatalf("build vipspeaker: %v", err)
	}
	out := helmTemplate(t, append([]string{"--show-only", "templates/configmap.yaml"}, args...)...)
	path := filepath.Join(t.TempDir(), "configmap.yaml")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := exec.Command(bin, "check", path).CombinedOutput()
	return string(res) + "\n" + out, err
}

// TestHelmConfigMapPassesCheck: the ConfigMap the chart renders from its
// values (pools, layer2, peer-nodes, membership, gobgp.conf) is one the
// agent accepts — `vipspeaker check` on the rendered manifest, the same
// validation the running agent applies — and a bad value is refused.
func TestHelmConfigMapPassesCheck(t *testing.T) {
	requireChart(t)
	values := filepath.Join(moduleRoot(t), "test", "e2e", "ops", "testdata", "helm-values-full.yaml")
	for _, args := range [][]string{nil, {"-f", values}} {
		if out, err := checkRenderedConfigMap(t, args...); err != nil {
			t.Errorf("helm template %v: vipspeaker check refuses the ConfigMap: %v\n%s", args, err, out)
		}
	}
	// The values reach the file: a pool from the values is in it.
	cm := renderedConfigMap(t, helmTemplate(t, "-f", values))
	data, _ := cm["data"].(map[string]any)
	toml, _ := data["vipspeaker.toml"].(string)
	for _, want := range []string{`name = "lan"`, `interfaces = ["eth0"]`, `gratuitous-count = 5`, `node-selector = "topology.kubernetes.io/zone=rack1"`, `aggregation-length-v6 = 64`, `service-selector = "tier in (web, edge)"`, `priority = 5`, `communities = ["64512:126","large:64512:1:1"]`} {
		if !strings.Contains(toml, want) {
			t.Errorf("vipspeaker.toml from the values lacks %s:\n%s", want, toml)
		}
	}
	if g, _ := data["gobgp.conf"].(string); !strings.Contains(g, "peer-as = 65000") {
		t.Errorf("gobgp.conf from the values: %q", g)
	}
	// A broken pool is caught by the same check.
	out, err := checkRenderedConfigMap(t, "-f", values, "--set", "pools[0].addresses[0]=203.0.113.0/33")
	if err == nil || !strings.Contains(out, "203.0.113.0/33") {
		t.Errorf("a pool with 203.0.113.0/33 passed vipspeaker check: %v\n%s", err, out)
	}
}

// TestHelmReadmeExamples: every YAML example in the chart's README is a
// values file that renders, lints and yields a ConfigMap the agent
// accepts.
func TestHelmReadmeExamples(t *testing.T) {
	requireChart(t)
	readme, err := os.ReadFile(filepath.Join(chartDir(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) == 0 {
		t.Fatal("the README has no yaml example")
	}
	for i, b := range blocks {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("example-%d.yaml", i+1))
		if err := os.WriteFile(path, []byte(b[1]), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := checkRenderedConfigMap(t, "-f", path); err != nil {
			t.Errorf("README example %d: vipspeaker check refuses the ConfigMap: %v\n%s", i+1, err, out)
		}
		if _, err := ops.HelmLint("-f", path); err != nil {
			t.Errorf("README example %d: %v", i+1, err)
		}
		objs := parseObjects(t, helmTemplate(t, "-f", path))
		if strings.Contains(b[1], "serviceMonitor:") {
			if _, ok := objs["ServiceMonitor/vipspeaker-system/vipspeaker"]; !ok {
				t.Errorf("README example %d turns the ServiceMonitor on, but none is rendered", i+1)
			}
		}
	}
}

func nested(o any, path ...string) any {
	if obj, ok := o.(object); ok {
		o = map[string]any(obj)
	}
	for _, p := range path {
		m, ok := o.(map[string]any)
		if !ok {
			return nil
		}
		o = m[p]
	}
	return o
}

// matches reports whether every key=value of sel is in labels.
func matches(sel, labels any) bool {
	s, _ := sel.(map[string]any)
	l, _ := labels.(map[string]any)
	if len(s) == 0 {
		return false
	}
	for k, v := range s {
		if l[k] != v {
			return false
		}
	}
	return true
}

// TestHelmServiceMonitorSelectsPods: with serviceMonitor.enabled the
// ServiceMonitor selects the metrics Service in the release namespace, the
// Service selects the DaemonSet's pods, and the named port the
// ServiceMonitor scrapes leads to the container port /metrics is served
// on (--metrics-addr).
func TestHelmServiceMonitorSelectsPods(t *testing.T) {
	requireChart(t)
	objs := parseObjects(t, helmTemplate(t, "--set", "serviceMonitor.enabled=true", "--set", "metrics.port=9555"))
	sm, ok := objs["ServiceMonitor/vipspeaker-system/vipspeaker"]
	if !ok {
		t.Fatalf("no ServiceMonitor rendered; objects: %v", keys(objs))
	}
	ds, ok := objs["DaemonSet/vipspeaker-system/vipspeaker"]
	if !ok {
		t.Fatalf("no DaemonSet rendered; objects: %v", keys(objs))
	}
	var svc object
	for k, o := range objs {
		if strings.HasPrefix(k, "Service/vipspeaker-system/") && matches(nested(sm, "spec", "selector", "matchLabels"), nested(o, "metadata", "labels")) {
			if svc != nil {
				t.Errorf("the ServiceMonitor selects more than one Service")
			}
			svc = o
		}
	}
	if svc == nil {
		t.Fatalf("the ServiceMonitor's selector %v matches no Service", nested(sm, "spec", "selector"))
	}
	if ns, _ := nested(sm, "spec", "namespaceSelector", "matchNames").([]any); len(ns) != 1 || ns[0] != "vipspeaker-system" {
		t.Errorf("ServiceMonitor namespaceSelector %v, want the release namespace", ns)
	}
	podLabels := nested(ds, "spec", "template", "metadata", "labels")
	if !matches(nested(svc, "spec", "selector"), podLabels) {
		t.Errorf("the metrics Service's selector %v does not match the pods' labels %v", nested(svc, "spec", "selector"), podLabels)
	}
	if !matches(nested(ds, "spec", "selector", "matchLabels"), podLabels) {
		t.Errorf("the DaemonSet's selector does not match its own pods")
	}
	eps, _ := nested(sm, "spec", "endpoints").([]any)
	if len(eps) != 1 {
		t.Fatalf("ServiceMonitor endpoints: %v", eps)
	}
	portName := nested(eps[0], "port")
	var target any
	ports, _ := nested(svc, "spec", "ports").([]any)
	for _, p := range ports {
		if nested(p, "name") == portName {
			target = nested(p, "targetPort")
		}
	}
	if target == nil {
		t.Fatalf("the Service has no port named %v: %v", portName, ports)
	}
	containers, _ := nested(ds, "spec", "template", "spec", "containers").([]any)
	found := false
	for _, c := range containers {
		cports, _ := nested(c, "ports").([]any)
		for _, p := range cports {
			if nested(p, "name") == target || nested(p, "containerPort") == target {
				found = true
				if port := nested(p, "containerPort"); fmt.Sprint(port) != "9555" {
					t.Errorf("container port %v, want 9555 from metrics.port", port)
				}
			}
		}
		args, _ := nested(c, "args").([]any)
		if !slices.Contains(args, any("--metrics-addr=:9555")) {
			t.Errorf("container args %v lack --metrics-addr=:9555", args)
		}
	}
	if !found {
		t.Errorf("no container port named %v", target)
	}
	if p := nested(eps[0], "path"); p != "/metrics" {
		t.Errorf("ServiceMonitor path %v", p)
	}
}

// TestHelmMetricsTextfile: metrics.textfileHostPath mounts the host folder
// and points --metrics-textfile into it.
func TestHelmMetricsTextfile(t *testing.T) {
	requireChart(t)
	objs := parseObjects(t, helmTemplate(t, "--set", "metrics.textfileHostPath=/var/lib/prometheus/node-exporter"))
	ds := objs["DaemonSet/vipspeaker-system/vipspeaker"]
	c := nested(ds, "spec", "template", "spec", "containers").([]any)[0]
	args, _ := nested(c, "args").([]any)
	var file string
	for _, a := range args {
		if v, ok := strings.CutPrefix(fmt.Sprint(a), "--metrics-textfile="); ok {
			file = v
		}
	}
	if file == "" || !strings.HasSuffix(file, ".prom") {
		t.Fatalf("args %v: no --metrics-textfile=*.prom", args)
	}
	var mountName string
	mounts, _ := nested(c, "volumeMounts").([]any)
	for _, m := range mounts {
		if mp := fmt.Sprint(nested(m, "mountPath")); mp == filepath.Dir(file) {
			mountName = fmt.Sprint(nested(m, "name"))
		}
	}
	if mountName == "" {
		t.Fatalf("nothing is mounted at %s: %v", filepath.Dir(file), mounts)
	}
	vols, _ := nested(ds, "spec", "template", "spec", "volumes").([]any)
	found := false
	for _, v := range vols {
		if nested(v, "name") == mountName {
			found = nested(v, "hostPath", "path") == "/var/lib/prometheus/node-exporter"
		}
	}
	if !found {
		t.Errorf("volume %s is not the host folder: %v", mountName, vols)
	}
	// Off by default: the default render has no textfile.
	ds = parseObjects(t, helmTemplate(t))["DaemonSet/vipspeaker-system/vipspeaker"]
	if s := fmt.Sprint(nested(ds, "spec", "template", "spec", "containers")); strings.Contains(s, "metrics-textfile") {
		t.Errorf("the default render writes a textfile: %s", s)
	}
}
