package ops_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

const opsAdminToken = "ops-admin-token"

// apiServer is a kube-apiserver (RBAC on) and its etcd inside a lab host.
type apiServer struct {
	host *lab.Host
	cfg  *rest.Config
	cs   kubernetes.Interface
}

// startAPIServer runs Debian's etcd and kube-apiserver built by
// test/apiserver/build.sh (cached) on h, serving on addr:6443.
func startAPIServer(t *testing.T, l *lab.Lab, h *lab.Host, addr string) *apiServer {
	t.Helper()
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		nstest.Skip(t, "etcd: %v (apt-get install etcd-server)", err)
	}
	var stderr bytes.Buffer
	build := exec.Command(filepath.Join(moduleRoot(t), "test", "apiserver", "build.sh"))
	build.Stderr = &stderr
	out, err := build.Output()
	if err != nil {
		t.Fatalf("build kube-apiserver: %v\n%s", err, stderr.String())
	}
	apiBin := strings.TrimSpace(string(out))

	dir := filepath.Join(l.Dir(), "apiserver")
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": []byte(opsAdminToken + `,admin,admin,"system:masters"` + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Start("etcd", []string{etcd, "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:23790", "--advertise-client-urls", "http://127.0.0.1:23790",
		"--listen-peer-urls", "http://127.0.0.1:23800", "--initial-advertise-peer-urls", "http://127.0.0.1:23800",
		"--initial-cluster", "default=http://127.0.0.1:23800", "--log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	api, err := h.Start("kube-apiserver", []string{apiBin,
		"--etcd-servers", "http://127.0.0.1:23790",
		"--bind-address", addr, "--advertise-address", addr, "--secure-port", "6443",
		"--cert-dir", filepath.Join(dir, "certs"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--endpoint-reconciler-type", "none",
	}, lab.StopTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	s := &apiServer{host: h}
	s.cfg = &rest.Config{
		Host:            "https://" + net.JoinHostPort(addr, "6443"),
		BearerToken:     opsAdminToken,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		// The test process is outside the lab: dial from the host's namespace.
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			var c net.Conn
			err := h.Do(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, address)
				return err
			})
			return c, err
		},
	}
	s.cs = kubernetes.NewForConfigOrDie(s.cfg)
	err = lab.Poll(90*time.Second, 250*time.Millisecond, func() error {
		select {
		case <-api.Done():
			return fmt.Errorf("kube-apiserver exited:\n%s", api.Log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := s.cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("kube-apiserver not ready: %v", err)
	}
	return s
}

// apply server-side-applies every object of a YAML stream, in order
// (Namespace first, as rendered), and returns how many of each kind.
func (s *apiServer) apply(t *testing.T, stream, manager string) map[string]int {
	t.Helper()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(s.cfg)))
	dyn := dynamic.NewForConfigOrDie(s.cfg)
	kinds := map[string]int{}
	for i, doc := range strings.Split("\n"+stream, "\n---") {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if string(js) == "null" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: not served: %v", gvk, u.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		force := true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, js, metav1.PatchOptions{FieldManager: manager, Force: &force})
		cancel()
		if err != nil {
			t.Errorf("apply %s %s/%s: %v", gvk.Kind, u.GetNamespace(), u.GetName(), err)
			continue
		}
		kinds[gvk.Kind]++
	}
	return kinds
}

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
	s := startAPIServer(t, l, h, "198.18.5.1")

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
		kinds := s.apply(t, helmTemplate(t, c.args...), "helm")
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
	sa := "system:serviceaccount:vipspeaker-system:vipspeaker"
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
		allowed, err := s.can(sa, c.verb, c.group, c.resource, c.sub, c.ns, c.name)
		if err != nil {
			t.Fatal(err)
		}
		if allowed != c.want {
			t.Errorf("%s %s %s/%s in %q (%s): allowed=%v, want %v", sa, c.verb, c.resource, c.sub, c.ns, c.name, allowed, c.want)
		}
	}
}

func (s *apiServer) can(user, verb, group, resource, sub, ns, name string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := s.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authv1.SubjectAccessReview{
		Spec: authv1.SubjectAccessReviewSpec{
			User:   user,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:vipspeaker-system", "system:authenticated"},
			ResourceAttributes: &authv1.ResourceAttributes{
				Verb: verb, Group: group, Resource: resource, Subresource: sub, Namespace: ns, Name: name,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("subject access review: %w", err)
	}
	return r.Status.Allowed, nil
}
