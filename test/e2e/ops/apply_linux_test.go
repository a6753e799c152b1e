package ops_test

import (
	"path/filepath"
	"testing"

	authv1 "k8s.io/api/authorization/v1"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
)

// TestHelmManifestsApplyToAPIServer: what the chart renders — with its
// defaults and with every value set — is accepted by a real kube-apiserver
// (server-side apply, schema validation, RBAC objects checked for
// escalation), and the agent's ServiceAccount may then do what the agent
// needs and nothing it should not.
func TestHelmManifestsApplyToAPIServer(t *testing.T) {
	requireChart(t)
	nstest.RequireRoot(t)
	l := lab.New(t)
	h := l.MustHost("api")
	l.MustLink(h, "eth0", []string{"198.18.5.1/30"}, l.MustHost("peer"), "eth0", []string{"198.18.5.2/30"})
	s := kubeapi.Start(t, h, "198.18.5.1", kubeapi.Options{ServiceCIDRs: "10.96.0.0/16"})

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
		kinds, err := s.ApplyManifests([]byte(helmTemplate(t, c.args...)), "helm")
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		for _, k := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "DaemonSet"} {
			if kinds[k] != 1 {
				t.Errorf("%s: %d %s applied, want 1 (applied: %v)", c.name, kinds[k], k, kinds)
			}
		}
		if c.args != nil && kinds["Service"] != 1 {
			t.Errorf("%s: the metrics Service was not applied: %v", c.name, kinds)
		}
	}

	// The ServiceAccount's rights, asked of the API server's authorizer.
	sa := kubeapi.AgentUser
	for _, c := range []struct {
		verb, group, resource, sub, ns, name string
		want                                 bool
	}{
		{"watch", "", "services", "", "", "", true},
		{"update", "", "services", "status", "demo", "", true},
		{"list", "discovery.k8s.io", "endpointslices", "", "", "", true},
		{"create", "", "events", "", "demo", "", true},
		{"get", "", "configmaps", "", "vipspeaker-system", "vipspeaker-config", true},
		{"update", "coordination.k8s.io", "leases", "", "vipspeaker-system", "vipspeaker-allocator", true},
		{"get", "", "secrets", "", "demo", "", false},
		{"get", "", "configmaps", "", "kube-system", "", false},
		{"delete", "", "services", "", "demo", "", false},
		{"update", "coordination.k8s.io", "leases", "", "vipspeaker-system", "someone-elses", false},
	} {
		allowed, err := s.Can(sa, kubeapi.AgentGroups, authv1.ResourceAttributes{
			Verb: c.verb, Group: c.group, Resource: c.resource, Subresource: c.sub, Namespace: c.ns, Name: c.name,
		})
		if err != nil {
			t.Fatal(err)
		}
		if allowed != c.want {
			t.Errorf("%s %s %s/%s in %q (%s): allowed=%v, want %v", sa, c.verb, c.resource, c.sub, c.ns, c.name, allowed, c.want)
		}
	}
}
