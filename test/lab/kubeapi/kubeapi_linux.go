package kubeapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// Tokens the API server accepts (--token-auth-file).
const (
	// AdminToken authenticates as "admin" in system:masters.
	AdminToken = "lab-admin-token"
	// AgentToken authenticates as AgentUser, the speakers' ServiceAccount
	// (the DaemonSet's) that deploy/kustomize binds its speaker rules to:
	// read-only but for Events. Agents that also allocate (run
	// --allocate=true) need ApplyAllInOne too.
	AgentToken = "lab-agent-token"
	AgentUser  = "system:serviceaccount:vipspeaker-system:vipspeaker"
	// AllocatorToken authenticates as AllocatorUser, the allocator
	// Deployment's ServiceAccount (vipspeaker allocate).
	AllocatorToken = "lab-allocator-token"
	AllocatorUser  = "system:serviceaccount:vipspeaker-system:vipspeaker-allocator"
)

// AgentGroups are the groups AgentToken and AllocatorToken authenticate
// into (besides system:authenticated), those of a ServiceAccount in
// vipspeaker-system.
var AgentGroups = []string{"system:serviceaccounts", "system:serviceaccounts:vipspeaker-system"}

// Port is the API server's secure port.
const Port = "6443"

// Options change how Start runs the API server. The zero value is fine.
type Options struct {
	// ServiceCIDRs is --service-cluster-ip-range (default
	// "10.96.0.0/16,2001:db8:ffff::/112": dual-stack, IPv4 first).
	ServiceCIDRs string
	// ReadyTimeout bounds the wait for the first /readyz (default 90 s).
	ReadyTimeout time.Duration
	// Args are extra kube-apiserver flags, after the defaults (a later
	// flag wins), e.g. the endpoint reconciler a cluster with real nodes
	// needs (test/lab/realnodes).
	Args []string
}

// Server is an etcd and a kube-apiserver running inside one lab host.
type Server struct {
	host   *lab.Host
	addr   string
	dir    string
	argv   []string
	etcd   *lab.Process
	mu     sync.Mutex
	api    *lab.Process
	seq    int
	admin  *rest.Config
	client kubernetes.Interface
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// APIServerBinary builds kube-apiserver with test/apiserver/build.sh (once
// per machine; the binary is cached) and returns its path.
func APIServerBinary() (string, error) {
	buildOnce.Do(func() {
		root, err := lab.ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command(filepath.Join(root, "test", "apiserver", "build.sh"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			buildErr = fmt.Errorf("build kube-apiserver: %w\n%s", err, stderr.String())
			return
		}
		buildPath = strings.TrimSpace(string(out))
	})
	return buildPath, buildErr
}

// EtcdBinary finds etcd, installing Debian's etcd-server once when it is
// missing.
func EtcdBinary() (string, error) {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "etcd-server")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("etcd is not installed and apt-get install etcd-server failed: %w\n%s", err, out)
	}
	return exec.LookPath("etcd")
}

// Start runs etcd and kube-apiserver (RBAC on) on h, the API server
// serving on addr:6443, and waits until it is ready. Both are stopped when
// the lab closes. Missing binaries skip the test.
func Start(t testing.TB, h *lab.Host, addr string, opts Options) *Server {
	t.Helper()
	etcdBin, err := EtcdBinary()
	if err != nil {
		nstest.Skip(t, "%v", err)
	}
	apiBin, err := APIServerBinary()
	if err != nil {
		nstest.Skip(t, "%v", err)
	}
	if opts.ServiceCIDRs == "" {
		opts.ServiceCIDRs = "10.96.0.0/16,2001:db8:ffff::/112"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 90 * time.Second
	}
	s := &Server{host: h, addr: addr, dir: filepath.Join(h.Lab().Dir(), "apiserver-"+h.Name())}
	if err := s.writeFiles(); err != nil {
		t.Fatal(err)
	}
	s.etcd, err = h.Start("etcd", []string{etcdBin, "--data-dir", filepath.Join(s.dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:23790", "--advertise-client-urls", "http://127.0.0.1:23790",
		"--listen-peer-urls", "http://127.0.0.1:23800", "--initial-advertise-peer-urls", "http://127.0.0.1:23800",
		"--initial-cluster", "default=http://127.0.0.1:23800", "--log-level", "warn"})
	if err != nil {
		t.Fatal(err)
	}
	s.argv = []string{apiBin,
		"--etcd-servers", "http://127.0.0.1:23790",
		"--bind-address", addr, "--advertise-address", addr, "--secure-port", Port,
		"--cert-dir", filepath.Join(s.dir, "certs"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(s.dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(s.dir, "sa.key"),
		"--token-auth-file", filepath.Join(s.dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", opts.ServiceCIDRs,
		"--endpoint-reconciler-type", "none",
		"--v", "1",
	}
	s.argv = append(s.argv, opts.Args...)
	s.admin = &rest.Config{
		Host:            "https://" + net.JoinHostPort(addr, Port),
		BearerToken:     AdminToken,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Dial:            s.Dial,
		QPS:             500, Burst: 1000,
		Timeout: 30 * time.Second,
	}
	s.client = kubernetes.NewForConfigOrDie(s.admin)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(opts.ReadyTimeout); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *Server) writeFiles() error {
	if err := os.MkdirAll(filepath.Join(s.dir, "certs"), 0o700); err != nil {
		return fmt.Errorf("api server folder: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("service account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("service account key: %w", err)
	}
	files := map[string][]byte{
		"sa.key": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": fmt.Appendf(nil, "%s,admin,admin,\"system:masters\"\n%s,%s,agent,%q\n%s,%s,allocator,%q\n",
			AdminToken, AgentToken, AgentUser, strings.Join(AgentGroups, ","),
			AllocatorToken, AllocatorUser, strings.Join(AgentGroups, ",")),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(s.dir, name), data, 0o600); err != nil {
			return fmt.Errorf("api server %s: %w", name, err)
		}
	}
	return nil
}

// Start starts kube-apiserver (again) on the same etcd; it does not wait
// (see WaitReady).
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.api != nil && !s.api.Exited() {
		return errors.New("kube-apiserver is already running")
	}
	s.seq++
	p, err := s.host.Start(fmt.Sprintf("kube-apiserver-%d", s.seq), s.argv, lab.StopTimeout(10*time.Second))
	if err != nil {
		return err
	}
	s.api = p
	return nil
}

// Stop stops kube-apiserver (SIGTERM, SIGKILL after 10 s); etcd keeps
// running.
func (s *Server) Stop() error {
	s.mu.Lock()
	p := s.api
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Stop()
}

// Process is the running (or last) kube-apiserver process.
func (s *Server) Process() *lab.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.api
}

// Dir is the API server's folder: certs/ (its self-signed serving
// certificate and CA, apiserver.crt), sa.key and sa.pub (the
// ServiceAccount token keys).
func (s *Server) Dir() string { return s.dir }

// Addr is the API server's lab address.
func (s *Server) Addr() string { return s.addr }

// Admin is a REST config for the admin token; it dials from inside the
// API server's namespace.
func (s *Server) Admin() *rest.Config { return rest.CopyConfig(s.admin) }

// Client is a clientset of Admin.
func (s *Server) Client() kubernetes.Interface { return s.client }

// Dial connects from inside the API server's host: the test process itself
// is outside the lab.
func (s *Server) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := s.host.Do(func() error {
		var err error
		conn, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

// WaitReady waits until /readyz answers ok and the default namespace
// exists.
func (s *Server) WaitReady(timeout time.Duration) error {
	p := s.Process()
	err := lab.Poll(timeout, 250*time.Millisecond, func() error {
		select {
		case <-p.Done():
			return fmt.Errorf("kube-apiserver exited:\n%s: %w", lab.Tail(p.Log(), 30), lab.ErrGiveUp)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		body, err := s.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("readyz: %v %s", err, body)
		}
		_, err = s.client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("kube-apiserver not ready: %w", err)
	}
	return nil
}

// Kubeconfig writes a kubeconfig for token into the lab folder and returns
// its path.
func (s *Server) Kubeconfig(token string) (string, error) {
	p := filepath.Join(s.dir, "kubeconfig-"+token)
	data := fmt.Sprintf(`apiVersion: v1
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
`, net.JoinHostPort(s.addr, Port), token)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	return p, nil
}

// ApplyKustomization server-side-applies every resource file the
// kustomization in dir lists (with the kustomization's namespace), as a
// server-side dry run for the kinds in dryRunKinds (a DaemonSet, with no
// kubelet to run it). Kustomize's transformers (images, labels) are not
// applied. It stops at the first object the server refuses.
func (s *Server) ApplyKustomization(dir string, dryRunKinds ...string) error {
	var kz struct {
		Namespace string   `json:"namespace"`
		Resources []string `json:"resources"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return fmt.Errorf("read kustomization: %w", err)
	}
	if err := yaml.Unmarshal(data, &kz); err != nil {
		return fmt.Errorf("kustomization.yaml: %w", err)
	}
	dry := map[string]bool{}
	for _, k := range dryRunKinds {
		dry[k] = true
	}
	a := s.newApplier("lab")
	for _, res := range kz.Resources {
		data, err := os.ReadFile(filepath.Join(dir, res))
		if err != nil {
			return fmt.Errorf("kustomization lists %s: %w", res, err)
		}
		for i, doc := range splitDocuments(data) {
			if _, err := a.apply(doc, kz.Namespace, dry); err != nil {
				return fmt.Errorf("%s document %d: %w", res, i+1, err)
			}
		}
	}
	return nil
}

// ApplyDeploy applies the repository's deploy/kustomize manifests
// (namespace, ServiceAccounts, RBAC, ConfigMap) as a user would, the
// DaemonSet and the allocator's Deployment only as a server-side dry run:
// there is no kubelet to run them. The speakers' ServiceAccount
// (AgentToken) then has the rights of `run --allocate=false`, the
// allocator's (AllocatorToken) those of `vipspeaker allocate`.
func (s *Server) ApplyDeploy() error {
	root, err := lab.ModuleRoot()
	if err != nil {
		return err
	}
	return s.ApplyKustomization(filepath.Join(root, "deploy", "kustomize"), "DaemonSet", "Deployment")
}

// ApplyAllInOne applies the bindings of deploy/kustomize-all-in-one (after
// ApplyDeploy): the allocator's roles bound to the speakers'
// ServiceAccount, so agents with AgentToken may also allocate (`run` with
// its default --allocate=true), as in a cluster without the allocator
// Deployment.
func (s *Server) ApplyAllInOne() error {
	root, err := lab.ModuleRoot()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(root, "deploy", "kustomize-all-in-one", "bindings.yaml"))
	if err != nil {
		return err
	}
	kinds, err := s.ApplyManifests(data, "lab")
	if err != nil {
		return err
	}
	if kinds["ClusterRoleBinding"] != 1 || kinds["RoleBinding"] != 1 {
		return fmt.Errorf("deploy/kustomize-all-in-one/bindings.yaml: applied %v, want a ClusterRoleBinding and a RoleBinding", kinds)
	}
	return nil
}

// ApplyManifests server-side-applies every object of a YAML stream (as
// helm template or kustomize build print it), in order, as field manager
// manager (taking over conflicting fields, as helm and kubectl apply
// --force-conflicts do). It goes on past objects the server refuses and
// returns how many objects of each kind it applied, with the refusals
// joined in the error.
func (s *Server) ApplyManifests(stream []byte, manager string) (map[string]int, error) {
	a := s.newApplier(manager)
	kinds := map[string]int{}
	var errs []error
	for i, doc := range splitDocuments(stream) {
		u, err := a.apply(doc, "", nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", i+1, err))
			continue
		}
		if u != nil {
			kinds[u.GetKind()]++
		}
	}
	return kinds, errors.Join(errs...)
}

// splitDocuments cuts a YAML stream at its "---" lines.
func splitDocuments(data []byte) [][]byte {
	return bytes.Split(append([]byte("\n"), data...), []byte("\n---"))
}

// applier server-side-applies single objects with the admin's rights.
type applier struct {
	mapper  *restmapper.DeferredDiscoveryRESTMapper
	dyn     *dynamic.DynamicClient
	manager string
}

func (s *Server) newApplier(manager string) *applier {
	return &applier{
		mapper:  restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(s.admin))),
		dyn:     dynamic.NewForConfigOrDie(s.admin),
		manager: manager,
	}
}

// apply server-side-applies one YAML document, in namespace when it is set
// and the kind is namespaced, as a dry run when dryRun holds its kind. It
// returns what the server made of it, or nil for an empty document.
func (a *applier) apply(doc []byte, namespace string, dryRun map[string]bool) (*unstructured.Unstructured, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	if string(js) == "null" {
		return nil, nil
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		return nil, err
	}
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s %s is not served: %w", gvk, u.GetName(), err)
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == "namespace" {
		if namespace != "" {
			u.SetNamespace(namespace)
		}
		ri = a.dyn.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	js, err = u.MarshalJSON()
	if err != nil {
		return nil, err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: a.manager, Force: &force}
	if dryRun[gvk.Kind] {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, js, opts)
	if err != nil {
		return nil, fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, u.GetNamespace(), u.GetName(), err)
	}
	return out, nil
}

// Can asks the API server's authorizer (a SubjectAccessReview, as kubectl
// auth can-i --as does) whether user, a member of groups and of
// system:authenticated, may do what ra describes.
func (s *Server) Can(user string, groups []string, ra authv1.ResourceAttributes) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := s.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authv1.SubjectAccessReview{
		Spec: authv1.SubjectAccessReviewSpec{
			User:               user,
			Groups:             append(slices.Clone(groups), "system:authenticated"),
			ResourceAttributes: &ra,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("subject access review for %s: %w", user, err)
	}
	return r.Status.Allowed, nil
}

// SetAgentConfig replaces the data of the agent's ConfigMap (the one
// deploy/kustomize creates, see ApplyDeploy) as an operator edits it:
// vipspeaker.toml, and gobgp.conf unless gobgp is empty.
func (s *Server) SetAgentConfig(toml, gobgp string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cms := s.client.CoreV1().ConfigMaps(kube.DefaultNamespace)
	cm, err := cms.Get(ctx, kube.DefaultConfigMapName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("agent ConfigMap: %w", err)
	}
	cm.Data = map[string]string{"vipspeaker.toml": toml}
	if gobgp != "" {
		cm.Data[kube.GoBGPConfKey] = gobgp
	}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("agent ConfigMap: %w", err)
	}
	return nil
}
