package kube_test

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

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

const (
	adminToken = "e2e-admin-token"
	agentToken = "e2e-agent-token"
	agentUser  = "system:serviceaccount:vipspeaker-system:vipspeaker"
)

// cluster is a kube-apiserver and its etcd, running inside a lab host.
type cluster struct {
	host   *lab.Host
	addr   string // the API server's lab address
	dir    string
	etcd   *lab.Process
	api    *lab.Process
	apiBin string
	argv   []string
	admin  *rest.Config
	cs     kubernetes.Interface
}

// ensureEtcd finds etcd, installing Debian's etcd-server when missing.
func ensureEtcd(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	t.Log("etcd not found: apt-get install -y etcd-server")
	cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "etcd-server")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		nstest.Skip(t, "etcd is not installed and apt-get install etcd-server failed: %v\n%s", err, out)
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		nstest.Skip(t, "etcd still missing after installing etcd-server: %v", err)
	}
	return p
}

// buildAPIServer builds kube-apiserver with test/apiserver/build.sh (once;
// the binary is cached).
func buildAPIServer(t testing.TB) string {
	t.Helper()
	root, err := lab.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cmd := exec.Command(filepath.Join(root, "test", "apiserver", "build.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		nstest.Skip(t, "cannot build kube-apiserver: %v\n%s", err, stderr.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Logf("built kube-apiserver in %s", d.Round(time.Second))
	}
	return strings.TrimSpace(string(out))
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// startCluster runs etcd and kube-apiserver (RBAC on) on host, serving on
// addr:6443.
func startCluster(t testing.TB, l *lab.Lab, host *lab.Host, addr string) *cluster {
	t.Helper()
	etcdBin := ensureEtcd(t)
	apiBin := buildAPIServer(t)
	c := &cluster{host: host, addr: addr, dir: filepath.Join(l.Dir(), "apiserver"), apiBin: apiBin}
	if err := os.MkdirAll(filepath.Join(c.dir, "certs"), 0o700); err != nil {
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
	writeFile(t, filepath.Join(c.dir, "sa.key"), string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})), 0o600)
	writeFile(t, filepath.Join(c.dir, "sa.pub"), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})), 0o644)
	writeFile(t, filepath.Join(c.dir, "tokens.csv"), fmt.Sprintf(
		"%s,admin,admin,\"system:masters\"\n%s,%s,agent,\"system:serviceaccounts,system:serviceaccounts:vipspeaker-system\"\n",
		adminToken, agentToken, agentUser), 0o600)

	c.etcd, err = host.Start("etcd", []string{etcdBin, "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:23790", "--advertise-client-urls", "http://127.0.0.1:23790",
		"--listen-peer-urls", "http://127.0.0.1:23800", "--initial-advertise-peer-urls", "http://127.0.0.1:23800",
		"--initial-cluster", "default=http://127.0.0.1:23800", "--log-level", "warn"})
	if err != nil {
		t.Fatal(err)
	}
	c.argv = []string{apiBin,
		"--etcd-servers", "http://127.0.0.1:23790",
		"--bind-address", addr, "--advertise-address", addr, "--secure-port", "6443",
		"--cert-dir", filepath.Join(c.dir, "certs"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(c.dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(c.dir, "sa.key"),
		"--token-auth-file", filepath.Join(c.dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.96.0.0/16,2001:db8:ffff::/112",
		"--endpoint-reconciler-type", "none",
		"--v", "1",
	}
	c.startAPI(t)
	c.admin = &rest.Config{
		Host:            "https://" + net.JoinHostPort(addr, "6443"),
		BearerToken:     adminToken,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Dial:            c.dial,
		QPS:             100, Burst: 200,
	}
	c.cs = kubernetes.NewForConfigOrDie(c.admin)
	c.waitReady(t, 60*time.Second)
	return c
}

func (c *cluster) startAPI(t testing.TB) {
	t.Helper()
	p, err := c.host.Start(fmt.Sprintf("kube-apiserver-%d", time.Now().UnixNano()%1000), c.argv, lab.StopTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	c.api = p
}

// dial connects from inside the API server's namespace: the test process
// itself lives outside the lab.
func (c *cluster) dial(ctx context.Context, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := c.host.Do(func() error {
		var err error
		conn, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

func (c *cluster) waitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	err := lab.Poll(timeout, 250*time.Millisecond, func() error {
		select {
		case <-c.api.Done():
			return fmt.Errorf("kube-apiserver exited:\n%s", tailLog(c.api.Log(), 30))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		body, err := c.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("readyz: %v %s", err, body)
		}
		// The default namespace is made by the server itself; wait for it.
		_, err = c.cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("kube-apiserver not ready: %v", err)
	}
}

func tailLog(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// kubeconfig writes a kubeconfig for the agent's token and returns its path.
func (c *cluster) kubeconfig(t testing.TB, token string) string {
	t.Helper()
	p := filepath.Join(c.dir, "kubeconfig-"+token)
	writeFile(t, p, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: https://%s
    insecure-skip-tls-verify: true
users:
- name: agent
  user:
    token: %s
contexts:
- name: lab
  context: {cluster: lab, user: agent}
current-context: lab
`, net.JoinHostPort(c.addr, "6443"), token), 0o600)
	return p
}

// applyManifests server-side-applies every resource file the kustomization
// lists (with the kustomization's namespace), dry-run when dryRun. It
// returns the objects applied.
func (c *cluster) applyManifests(t testing.TB, dir string, dryRunKinds map[string]bool) []*unstructured.Unstructured {
	t.Helper()
	var kz struct {
		Namespace string   `json:"namespace"`
		Resources []string `json:"resources"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &kz); err != nil {
		// Fields we do not read (images, labels) are fine.
		if err := yaml.Unmarshal(data, &kz); err != nil {
			t.Fatalf("kustomization.yaml: %v", err)
		}
	}
	dc := discovery.NewDiscoveryClientForConfigOrDie(c.admin)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn := dynamic.NewForConfigOrDie(c.admin)
	var applied []*unstructured.Unstructured
	for _, res := range kz.Resources {
		data, err := os.ReadFile(filepath.Join(dir, res))
		if err != nil {
			t.Fatalf("kustomization lists %s: %v", res, err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---")) {
			js, err := yaml.YAMLToJSON(doc)
			if err != nil {
				t.Fatalf("%s document %d: %v", res, i+1, err)
			}
			if string(js) == "null" {
				continue
			}
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(js); err != nil {
				t.Fatalf("%s document %d: %v", res, i+1, err)
			}
			gvk := u.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Fatalf("%s: %s is not served: %v", res, gvk, err)
			}
			var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
			if m.Scope.Name() == "namespace" {
				if kz.Namespace != "" {
					u.SetNamespace(kz.Namespace)
				}
				ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
			}
			opts := metav1.PatchOptions{FieldManager: "e2e", Force: ptr(true)}
			if dryRunKinds[gvk.Kind] {
				opts.DryRun = []string{metav1.DryRunAll}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			out, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, js, opts)
			cancel()
			if err != nil {
				t.Fatalf("apply %s %s/%s from %s: %v", gvk.Kind, u.GetNamespace(), u.GetName(), res, err)
			}
			applied = append(applied, out)
		}
	}
	return applied
}

func ptr[T any](v T) *T { return &v }
