package ops_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	authv1 "k8s.io/api/authorization/v1"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
)

// right is one question to the API server's authorizer: may the subject
// do verb on group/resource/sub in ns (name, when set)?
type right struct {
	verb, group, resource, sub, ns, name string
	want                                 bool
}

// speakerRights are those of the speakers' ServiceAccount (the DaemonSet,
// run --allocate=false): read Services, EndpointSlices, Nodes, its
// ConfigMap and its namespace's Secrets; write Events and the
// VIPSpeakerNode objects of its namespace; change no Service.
var speakerRights = []right{
	{"get", "", "services", "", "demo", "", true},
	{"watch", "", "services", "", "", "", true},
	{"list", "", "nodes", "", "", "", true},
	{"list", "discovery.k8s.io", "endpointslices", "", "", "", true},
	{"create", "", "events", "", "demo", "", true},
	{"patch", "", "events", "", "demo", "", true},
	{"list", "", "events", "", "", "", true},
	{"get", "", "configmaps", "", "vipspeaker-system", "vipspeaker-config", true},
	{"watch", "", "configmaps", "", "vipspeaker-system", "vipspeaker-config", true},
	{"get", "", "secrets", "", "vipspeaker-system", "bgp-auth", true},
	{"watch", "", "secrets", "", "vipspeaker-system", "bgp-auth", true},
	// No Service changes: not the annotation, not the status.
	{"patch", "", "services", "", "demo", "", false},
	{"update", "", "services", "", "demo", "", false},
	{"patch", "", "services", "status", "demo", "", false},
	{"update", "", "services", "status", "demo", "", false},
	{"delete", "", "services", "", "demo", "", false},
	// No Lease: the allocator's election is not the speakers'.
	{"create", "coordination.k8s.io", "leases", "", "vipspeaker-system", "", false},
	{"update", "coordination.k8s.io", "leases", "", "vipspeaker-system", "vipspeaker-allocator", false},
	{"get", "", "secrets", "", "demo", "", false},
	{"get", "", "configmaps", "", "kube-system", "", false},
	{"get", "", "configmaps", "", "vipspeaker-system", "someone-elses", false},
	{"update", "", "events", "", "demo", "", false},
	// Its node's VIPSpeakerNode, in its namespace only; never deleted.
	{"create", "vipspeaker.io", "vipspeakernodes", "", "vipspeaker-system", "", true},
	{"get", "vipspeaker.io", "vipspeakernodes", "", "vipspeaker-system", "n1", true},
	{"patch", "vipspeaker.io", "vipspeakernodes", "", "vipspeaker-system", "n1", true},
	{"create", "vipspeaker.io", "vipspeakernodes", "", "demo", "", false},
	{"delete", "vipspeaker.io", "vipspeakernodes", "", "vipspeaker-system", "n1", false},
	{"list", "vipspeaker.io", "vipspeakernodes", "", "", "", false},
	// No Namespace: only the allocator reads their labels.
	{"list", "", "namespaces", "", "", "", false},
	{"watch", "", "namespaces", "", "", "", false},
}

// allocatorRights are those of the allocator Deployment's ServiceAccount
// (vipspeaker allocate): read Services and its ConfigMap; patch Services
// (the allocated-from annotation) and their status (the address and the
// vipspeaker.io/Announced condition); its Lease; Events; read the
// speakers' VIPSpeakerNode objects and list EndpointSlices (the reason a
// Local Service is not announced); list and watch Namespaces (their labels,
// for pools' namespace-selector). Nothing else: no Secret anywhere, no
// Node, no write to a VIPSpeakerNode.
var allocatorRights = []right{
	{"get", "", "services", "", "demo", "", true},
	{"watch", "", "services", "", "", "", true},
	{"patch", "", "services", "", "demo", "", true},
	{"patch", "", "services", "status", "demo", "", true},
	{"create", "", "events", "", "demo", "", true},
	{"patch", "", "events", "", "demo", "", true},
	{"get", "", "configmaps", "", "vipspeaker-system", "vipspeaker-config", true},
	{"list", "", "configmaps", "", "vipspeaker-system", "vipspeaker-config", true},
	{"create", "coordination.k8s.io", "leases", "", "vipspeaker-system", "", true},
	{"get", "coordination.k8s.io", "leases", "", "vipspeaker-system", "vipspeaker-allocator", true},
	{"update", "coordination.k8s.io", "leases", "", "vipspeaker-system", "vipspeaker-allocator", true},
	{"get", "", "secrets", "", "demo", "", false},
	{"list", "", "secrets", "", "", "", false},
	{"get", "", "secrets", "", "vipspeaker-system", "bgp-auth", false},
	{"update", "", "services", "", "demo", "", false},
	{"delete", "", "services", "", "demo", "", false},
	{"create", "", "services", "", "demo", "", false},
	{"update", "coordination.k8s.io", "leases", "", "vipspeaker-system", "someone-elses", false},
	{"update", "coordination.k8s.io", "leases", "", "kube-system", "vipspeaker-allocator", false},
	{"list", "", "nodes", "", "", "", false},
	{"list", "discovery.k8s.io", "endpointslices", "", "", "", true},
	{"watch", "discovery.k8s.io", "endpointslices", "", "", "", false},
	{"get", "", "configmaps", "", "vipspeaker-system", "someone-elses", false},
	{"list", "vipspeaker.io", "vipspeakernodes", "", "vipspeaker-system", "", true},
	{"watch", "vipspeaker.io", "vipspeakernodes", "", "vipspeaker-system", "", true},
	{"patch", "vipspeaker.io", "vipspeakernodes", "", "vipspeaker-system", "n1", false},
	{"create", "vipspeaker.io", "vipspeakernodes", "", "vipspeaker-system", "", false},
	{"delete", "vipspeaker.io", "vipspeakernodes", "", "vipspeaker-system", "n1", false},
	// Namespaces' labels (pools' namespace-selector), read only.
	{"list", "", "namespaces", "", "", "", true},
	{"watch", "", "namespaces", "", "", "", true},
	{"patch", "", "namespaces", "", "", "demo", false},
	{"delete", "", "namespaces", "", "", "demo", false},
}

// allInOneRights: the speakers' ServiceAccount with the all-in-one
// bindings (run --allocate=true) has the allocator's rights as well.
var allInOneRights = []right{
	{"patch", "", "services", "", "demo", "", true},
	{"patch", "", "services", "status", "demo", "", true},
	{"create", "coordination.k8s.io", "leases", "", "vipspeaker-system", "", true},
	{"update", "coordination.k8s.io", "leases", "", "vipspeaker-system", "vipspeaker-allocator", true},
	{"get", "", "secrets", "", "vipspeaker-system", "bgp-auth", true},
	{"list", "", "nodes", "", "", "", true},
	{"watch", "", "namespaces", "", "", "", true},
	{"get", "", "secrets", "", "demo", "", false},
	{"delete", "", "services", "", "demo", "", false},
}

// checkRights asks the API server's authorizer (SubjectAccessReviews)
// every question of rights about user.
func checkRights(t *testing.T, s *kubeapi.Server, what, user string, rights []right) {
	t.Helper()
	for _, c := range rights {
		allowed, err := s.Can(user, kubeapi.AgentGroups, authv1.ResourceAttributes{
			Verb: c.verb, Group: c.group, Resource: c.resource, Subresource: c.sub, Namespace: c.ns, Name: c.name,
		})
		if err != nil {
			t.Fatal(err)
		}
		if allowed != c.want {
			t.Errorf("%s: %s %s %s/%s in %q (%s): allowed=%v, want %v", what, user, c.verb, c.resource, c.sub, c.ns, c.name, allowed, c.want)
		}
	}
}

func startAPIServer(t *testing.T) *kubeapi.Server {
	t.Helper()
	nstest.RequireRoot(t)
	l := lab.New(t)
	h := l.MustHost("api")
	l.MustLink(h, "eth0", []string{"198.18.5.1/30"}, l.MustHost("peer"), "eth0", []string{"198.18.5.2/30"})
	return kubeapi.Start(t, h, "198.18.5.1", kubeapi.Options{ServiceCIDRs: "10.96.0.0/16"})
}

// TestHelmManifestsApplyToAPIServer: what the chart renders — with its
// defaults and with every value set — is accepted by a real kube-apiserver
// (server-side apply, schema validation, RBAC objects checked for
// escalation), and the speakers' and the allocator's ServiceAccounts may
// then do what each needs and nothing it should not. With
// allocator.enabled=false (all in one) there is no allocator Deployment,
// the speakers allocate, and their ServiceAccount has both sets of rights.
func TestHelmManifestsApplyToAPIServer(t *testing.T) {
	requireChart(t)
	s := startAPIServer(t)

	values := filepath.Join(moduleRoot(t), "test", "e2e", "ops", "testdata", "helm-values-full.yaml")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		// No Prometheus Operator here: leave its ServiceMonitor kind out.
		{"every value", []string{"-f", values, "--set", "serviceMonitor.enabled=false", "--set", "metrics.service.enabled=true",
			"--set", "metrics.textfileHostPath=/var/lib/prometheus/node-exporter"}},
	} {
		// One field manager, as `helm upgrade` would be: the second render
		// replaces what the first set (the metrics port moves).
		// helm template | kubectl apply: the Namespace comes from the chart.
		kinds, err := s.ApplyManifests([]byte(helmTemplate(t, append([]string{"--set", "namespace.create=true"}, c.args...)...)), "helm")
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		for k, n := range map[string]int{"Namespace": 1, "ServiceAccount": 2, "ClusterRole": 2, "ClusterRoleBinding": 2,
			"Role": 2, "RoleBinding": 2, "ConfigMap": 1, "DaemonSet": 1, "Deployment": 1} {
			if kinds[k] != n {
				t.Errorf("%s: %d %s applied, want %d (applied: %v)", c.name, kinds[k], k, n, kinds)
			}
		}
		if c.args != nil && kinds["Service"] != 1 {
			t.Errorf("%s: the metrics Service was not applied: %v", c.name, kinds)
		}
	}
	checkRights(t, s, "helm", kubeapi.AgentUser, speakerRights)
	checkRights(t, s, "helm", kubeapi.AllocatorUser, allocatorRights)
	// allocator.replicas and the allocator's metrics port reach the
	// Deployment.
	d, ok := parseObjects(t, helmTemplate(t, "-f", values))["Deployment/vipspeaker-system/vipspeaker-allocator"]
	if !ok {
		t.Fatal("no allocator Deployment rendered")
	}
	if r := nested(d, "spec", "replicas"); fmt.Sprint(r) != "3" {
		t.Errorf("allocator.replicas=3 renders %v replicas", r)
	}
	ctrs, _ := nested(d, "spec", "template", "spec", "containers").([]any)
	var args []any
	if len(ctrs) == 1 {
		args, _ = nested(ctrs[0], "args").([]any)
	}
	if !slices.Contains(args, any("--metrics-addr=:9474")) {
		t.Errorf("allocator.metricsPort=9474: containers %v", ctrs)
	}
	checkAllocatorPodSpec(t, d)

	// All in one.
	out := helmTemplate(t, "--set", "allocator.enabled=false")
	objs := parseObjects(t, out)
	if _, ok := objs["Deployment/vipspeaker-system/vipspeaker-allocator"]; ok {
		t.Errorf("allocator.enabled=false renders the allocator Deployment")
	}
	if _, ok := objs["ServiceAccount/vipspeaker-system/vipspeaker-allocator"]; ok {
		t.Errorf("allocator.enabled=false renders the allocator's ServiceAccount")
	}
	if args := daemonSetArgs(t, objs); slices.Contains(args, "--allocate=false") {
		t.Errorf("allocator.enabled=false: the DaemonSet still runs %v", args)
	}
	if _, err := s.ApplyManifests([]byte(out), "helm"); err != nil {
		t.Fatal(err)
	}
	checkRights(t, s, "helm allocator.enabled=false", kubeapi.AgentUser, allInOneRights)
}

// daemonSetArgs is the vipspeaker container's args of the rendered
// DaemonSet.
func daemonSetArgs(t *testing.T, objs map[string]object) []string {
	t.Helper()
	ds, ok := objs["DaemonSet/vipspeaker-system/vipspeaker"]
	if !ok {
		t.Fatalf("no DaemonSet rendered; objects: %v", keys(objs))
	}
	containers, _ := nested(ds, "spec", "template", "spec", "containers").([]any)
	if len(containers) != 1 {
		t.Fatalf("DaemonSet containers: %v", containers)
	}
	var args []string
	list, _ := nested(containers[0], "args").([]any)
	for _, a := range list {
		args = append(args, fmt.Sprint(a))
	}
	return args
}

// TestKustomizeRBAC: deploy/kustomize applied to a real kube-apiserver as
// ApplyDeploy does for every kube suite: the speakers' ServiceAccount
// cannot change a Service (no patch or update of Services or their
// status) nor take the allocator's Lease, and may write the
// VIPSpeakerNode objects of its own namespace (its node's report); the allocator's may do exactly
// what `vipspeaker allocate` does and read no Secret. The DaemonSet runs
// `run --allocate=false`. deploy/kustomize-all-in-one renders no allocator
// Deployment, runs the speakers with --allocate=true, and its bindings
// give their ServiceAccount the allocator's rights.
func TestKustomizeRBAC(t *testing.T) {
	s := startAPIServer(t)
	if err := s.ApplyDeploy(); err != nil {
		t.Fatal(err)
	}
	checkRights(t, s, "deploy/kustomize", kubeapi.AgentUser, speakerRights)
	checkRights(t, s, "deploy/kustomize", kubeapi.AllocatorUser, allocatorRights)

	base := parseObjects(t, run(t, kustomizeBin(t), "build", filepath.Join(moduleRoot(t), "deploy", "kustomize")))
	if args := daemonSetArgs(t, base); !slices.Contains(args, "--allocate=false") {
		t.Errorf("deploy/kustomize: the DaemonSet runs %v, want --allocate=false", args)
	}
	d, ok := base["Deployment/vipspeaker-system/vipspeaker-allocator"]
	if !ok {
		t.Fatalf("deploy/kustomize renders no allocator Deployment; objects: %v", keys(base))
	}
	if sa := nested(d, "spec", "template", "spec", "serviceAccountName"); sa != "vipspeaker-allocator" {
		t.Errorf("the allocator Deployment runs as %v", sa)
	}
	if r := nested(d, "spec", "replicas"); fmt.Sprint(r) != "2" {
		t.Errorf("the allocator Deployment has %v replicas, want 2", r)
	}
	checkAllocatorPodSpec(t, d)

	dir := filepath.Join(moduleRoot(t), "deploy", "kustomize-all-in-one")
	aio := parseObjects(t, run(t, kustomizeBin(t), "build", dir))
	for _, k := range []string{"Deployment/vipspeaker-system/vipspeaker-allocator", "ServiceAccount/vipspeaker-system/vipspeaker-allocator",
		"ClusterRoleBinding/<nil>/vipspeaker-allocator", "RoleBinding/vipspeaker-system/vipspeaker-allocator"} {
		if _, ok := aio[k]; ok {
			t.Errorf("deploy/kustomize-all-in-one renders %s", k)
		}
	}
	if args := daemonSetArgs(t, aio); slices.Contains(args, "--allocate=false") || !slices.Contains(args, "--allocate=true") {
		t.Errorf("deploy/kustomize-all-in-one: the DaemonSet runs %v, want --allocate=true", args)
	}
	for _, k := range []string{"ClusterRoleBinding/<nil>/vipspeaker-all-in-one", "RoleBinding/vipspeaker-system/vipspeaker-all-in-one"} {
		if _, ok := aio[k]; !ok {
			t.Errorf("deploy/kustomize-all-in-one renders no %s; objects: %v", k, keys(aio))
		}
	}
	if err := s.ApplyAllInOne(); err != nil {
		t.Fatal(err)
	}
	checkRights(t, s, "deploy/kustomize-all-in-one", kubeapi.AgentUser, allInOneRights)
}

// checkAllocatorPodSpec: the allocator's Pods run `vipspeaker allocate`
// without host networking, as a non-root user, with no capability, a
// read-only root file system and the RuntimeDefault seccomp profile.
func checkAllocatorPodSpec(t *testing.T, d object) {
	t.Helper()
	spec := nested(d, "spec", "template", "spec")
	if hn := nested(spec, "hostNetwork"); hn == true {
		t.Errorf("the allocator runs on the host network")
	}
	if nested(spec, "securityContext", "runAsNonRoot") != true || fmt.Sprint(nested(spec, "securityContext", "runAsUser")) == "0" {
		t.Errorf("the allocator's Pod securityContext %v: want runAsNonRoot, a uid other than 0", nested(spec, "securityContext"))
	}
	if nested(spec, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("the allocator's seccomp profile: %v", nested(spec, "securityContext", "seccompProfile"))
	}
	containers, _ := nested(spec, "containers").([]any)
	if len(containers) != 1 {
		t.Fatalf("allocator containers: %v", containers)
	}
	ctr := containers[0]
	if args, _ := nested(ctr, "args").([]any); len(args) == 0 || args[0] != "allocate" {
		t.Errorf("the allocator container runs %v, want allocate", args)
	}
	sc := nested(ctr, "securityContext")
	if nested(sc, "readOnlyRootFilesystem") != true || nested(sc, "allowPrivilegeEscalation") != false || nested(sc, "privileged") == true {
		t.Errorf("the allocator container's securityContext %v", sc)
	}
	if drop, _ := nested(sc, "capabilities", "drop").([]any); !slices.Contains(drop, any("ALL")) || nested(sc, "capabilities", "add") != nil {
		t.Errorf("the allocator container's capabilities %v: want ALL dropped and none added", nested(sc, "capabilities"))
	}
	for _, probe := range []string{"startupProbe", "readinessProbe", "livenessProbe"} {
		if nested(ctr, probe) == nil {
			t.Errorf("the allocator container has no %s", probe)
		}
	}
	if nested(ctr, "resources", "limits", "memory") == nil {
		t.Errorf("the allocator container has no memory limit")
	}
}
