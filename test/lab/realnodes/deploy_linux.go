package realnodes

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// AgentNamespace, AgentDaemonSet (the speakers) and AllocatorDeployment
// are what deploy/kustomize creates; SpeakerLabel and AllocatorLabel
// select their Pods.
const (
	AgentNamespace      = "vipspeaker-system"
	AgentDaemonSet      = "vipspeaker"
	AllocatorDeployment = "vipspeaker-allocator"
	SpeakerLabel        = "app.kubernetes.io/name=vipspeaker"
	AllocatorLabel      = "app.kubernetes.io/name=vipspeaker-allocator"
	// EchoImage is the image of test/cmd/httpecho.
	EchoImage = "localhost/vsrn/httpecho:1"
	// LBClass is vipspeaker's loadBalancerClass.
	LBClass = "vipspeaker.io/lb"
)

// deployDir is the repository's deploy/kustomize.
func deployDir() (string, error) {
	root, err := lab.ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "deploy", "kustomize"), nil
}

// AgentImage is the image deploy/kustomize's DaemonSet runs, as kubectl
// kustomize renders it (the kustomization's images: rewrite included).
func (c *Cluster) AgentImage(ctx context.Context) (string, error) {
	dir, err := deployDir()
	if err != nil {
		return "", err
	}
	out, err := c.Kubectl(ctx, "kustomize", dir)
	if err != nil {
		return "", err
	}
	for _, doc := range strings.Split(out, "\n---") {
		var ds appsv1.DaemonSet
		if err := yaml.Unmarshal([]byte(doc), &ds); err != nil || ds.Kind != "DaemonSet" {
			continue
		}
		for _, ctr := range ds.Spec.Template.Spec.Containers {
			if ctr.Name == "vipspeaker" {
				return ctr.Image, nil
			}
		}
	}
	return "", errors.New("deploy/kustomize renders no DaemonSet with a vipspeaker container")
}

// InstallAgent does what a user does: it puts the agent's image into every
// node's containerd (here from a tarball built from ./cmd/vipspeaker; no
// registry), then `kubectl apply -k` of an overlay that is
// deploy/kustomize unchanged plus the lab's ConfigMap (vipspeaker.toml and
// gobgp.conf), and waits until the DaemonSet's Pods are Ready on every
// node and the allocator Deployment's replicas are available. It returns
// how long the apply took to every Pod Ready.
func (c *Cluster) InstallAgent(ctx context.Context, toml, gobgp string) (time.Duration, error) {
	if err := c.importAgentImage(ctx); err != nil {
		return 0, err
	}
	dir, err := deployDir()
	if err != nil {
		return 0, err
	}
	overlay := filepath.Join(c.dir, "overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		return 0, err
	}
	rel, err := filepath.Rel(overlay, dir)
	if err != nil {
		return 0, err
	}
	cmYAML, err := ConfigMap(toml, gobgp)
	if err != nil {
		return 0, err
	}
	kz := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\npatches:\n  - path: lab-config.yaml\n", rel)
	for name, data := range map[string][]byte{"kustomization.yaml": []byte(kz), "lab-config.yaml": []byte(cmYAML)} {
		if err := os.WriteFile(filepath.Join(overlay, name), data, 0o644); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	if _, err := c.Kubectl(ctx, "apply", "-k", overlay); err != nil {
		return 0, err
	}
	return c.waitAgent(start)
}

// importAgentImage builds the agent's image from ./cmd/vipspeaker under
// the name deploy/ gives it and imports it into every node's containerd.
func (c *Cluster) importAgentImage(ctx context.Context) error {
	image, err := c.AgentImage(ctx)
	if err != nil {
		return err
	}
	tar, err := BinaryImage(c.dir, "./cmd/vipspeaker", image)
	if err != nil {
		return err
	}
	return c.ImportImage(tar)
}

// waitAgent waits until the speakers are Ready on every node and the
// allocator Deployment is available, and returns the time since start.
func (c *Cluster) waitAgent(start time.Time) (time.Duration, error) {
	if err := c.WaitDaemonSetReady(AgentNamespace, AgentDaemonSet, 3*time.Minute); err != nil {
		return 0, err
	}
	if err := c.WaitDeploymentReady(AgentNamespace, AllocatorDeployment, 3*time.Minute); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// InstallAgentHelm is InstallAgent the chart's way: the same image import,
// then the command deploy/helm/vipspeaker/README.md gives (helm install of
// chart into vipspeaker-system with a values file), run by helm next to
// the API server. It returns how long the install took to every Pod Ready.
func (c *Cluster) InstallAgentHelm(ctx context.Context, helm, chart, values string) (time.Duration, error) {
	if err := c.importAgentImage(ctx); err != nil {
		return 0, err
	}
	file := filepath.Join(c.dir, "helm-values.yaml")
	if err := os.WriteFile(file, []byte(values), 0o644); err != nil {
		return 0, err
	}
	start := time.Now()
	argv := []string{helm, "install", "vipspeaker", chart, "--namespace", AgentNamespace, "--create-namespace", "-f", file,
		"--kubeconfig", c.Kubeconfig}
	if out, err := c.APIHost.Run(ctx, argv...); err != nil {
		return 0, fmt.Errorf("helm install: %w\n%s", err, out)
	}
	return c.waitAgent(start)
}

// ConfigMap is the agent's ConfigMap (vipspeaker-config) holding toml and
// gobgp, as YAML for kubectl apply.
func ConfigMap(toml, gobgp string) (string, error) {
	b, err := yaml.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "vipspeaker-config", "namespace": AgentNamespace},
		"data":     map[string]string{"vipspeaker.toml": toml, "gobgp.conf": gobgp},
	})
	return string(b), err
}

// WaitDaemonSetReady waits until the DaemonSet's Pods are updated and
// Ready on every node it schedules to.
func (c *Cluster) WaitDaemonSetReady(ns, name string, timeout time.Duration) error {
	err := lab.Poll(timeout, 250*time.Millisecond, func() error {
		for _, n := range c.Nodes {
			if err := n.checkAlive(); err != nil {
				return fmt.Errorf("%w: %w", err, lab.ErrGiveUp)
			}
		}
		return c.DaemonSetReady(ns, name)
	})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, c.PodReport(ns))
	}
	return nil
}

// DaemonSetReady checks once that the DaemonSet's Pods are updated and
// Ready on every node it schedules to.
func (c *Cluster) DaemonSetReady(ns, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ds, err := c.API.Client().AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	st := ds.Status
	if ds.Generation != st.ObservedGeneration || st.DesiredNumberScheduled == 0 ||
		st.UpdatedNumberScheduled != st.DesiredNumberScheduled || st.NumberReady != st.DesiredNumberScheduled || st.NumberAvailable != st.DesiredNumberScheduled {
		return fmt.Errorf("DaemonSet %s/%s: desired %d, updated %d, ready %d, available %d", ns, name,
			st.DesiredNumberScheduled, st.UpdatedNumberScheduled, st.NumberReady, st.NumberAvailable)
	}
	return nil
}

// PodReport describes the Pods of ns (phase, node, container states and
// the last events), for failure messages.
func (c *Cluster) PodReport(ns string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.Kubectl(ctx, "get", "pods", "-n", ns, "-o", "wide")
	if err != nil {
		return err.Error()
	}
	ev, _ := c.Kubectl(ctx, "get", "events", "-n", ns, "--sort-by=.lastTimestamp")
	sel := "app.kubernetes.io/name in (vipspeaker,vipspeaker-allocator)"
	if ns == MetalLBNamespace {
		sel = "app=metallb"
	}
	logs, _ := c.Kubectl(ctx, "logs", "-n", ns, "--all-containers", "--prefix", "--tail=20", "-l", sel)
	return out + "\n" + lab.Tail(ev, 25) + "\n" + logs
}

// EchoOptions describe a Deployment of httpecho behind a LoadBalancer
// Service.
type EchoOptions struct {
	Namespace, Name string
	Replicas        int
	// Pool and Mode are the vipspeaker.io/pool and vipspeaker.io/mode
	// annotations (empty: not set).
	Pool, Mode string
	// Local sets externalTrafficPolicy: Local.
	Local bool
	// Labels of the Service (pools' service-selector).
	Labels map[string]string
	// DualStack asks for an IPv4 and an IPv6 address (ipFamilyPolicy
	// RequireDualStack) on a dual-stack cluster.
	DualStack bool
	// Speaker is the load balancer the Service asks for (its
	// loadBalancerClass; Pool names one of its pools); nil is vipspeaker.
	Speaker *Speaker
}

// EchoManifest is the YAML of the namespace, the Deployment (readiness
// probe on /readyz) and the Service (port 80 → 8080).
func EchoManifest(o EchoOptions) string {
	sp := o.Speaker
	if sp == nil {
		sp = &VIPSpeaker
	}
	ann := ""
	if o.Pool != "" {
		ann += fmt.Sprintf("    %s: %q\n", sp.PoolAnnotation, o.Pool)
	}
	if o.Mode != "" {
		ann += fmt.Sprintf("    vipspeaker.io/mode: %q\n", o.Mode)
	}
	if ann != "" {
		ann = "  annotations:\n" + ann
	}
	if len(o.Labels) > 0 {
		keys := slices.Sorted(maps.Keys(o.Labels))
		ann += "  labels:\n"
		for _, k := range keys {
			ann += fmt.Sprintf("    %s: %q\n", k, o.Labels[k])
		}
	}
	policy := "Cluster"
	if o.Local {
		policy = "Local"
	}
	if o.DualStack {
		policy += "\n  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv4, IPv6]"
	}
	class := ""
	if sp.Class != "" {
		class = "\n  loadBalancerClass: " + sp.Class
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  replicas: %[3]d
  selector:
    matchLabels: {app: %[2]s}
  template:
    metadata:
      labels: {app: %[2]s}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: httpecho
          image: %[4]s
          imagePullPolicy: Never
          env:
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
          ports:
            - {name: http, containerPort: 8080}
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 1
            failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata:
  name: %[2]s
  namespace: %[1]s
%[5]sspec:
  type: LoadBalancer%[6]s
  externalTrafficPolicy: %[7]s
  selector: {app: %[2]s}
  ports:
    - {name: http, port: 80, targetPort: http}
`, o.Namespace, o.Name, o.Replicas, EchoImage, ann, class, policy)
}

// DeployEcho imports httpecho's image into every node (once per cluster)
// and applies EchoManifest with kubectl. It waits for nothing.
func (c *Cluster) DeployEcho(ctx context.Context, o EchoOptions) error {
	if err := c.ImportEcho(); err != nil {
		return err
	}
	return c.Apply(ctx, EchoManifest(o))
}

// ImportEcho builds httpecho's image (EchoImage) and imports it into every
// node, once per cluster.
func (c *Cluster) ImportEcho() error {
	if c.echoTar != "" {
		return nil
	}
	tar, err := BinaryImage(c.dir, "./test/cmd/httpecho", EchoImage)
	if err != nil {
		return err
	}
	if err := c.ImportImage(tar); err != nil {
		return err
	}
	c.echoTar = tar
	return nil
}

// Apply runs `kubectl apply -f` on a YAML stream.
func (c *Cluster) Apply(ctx context.Context, manifest string) error {
	f, err := os.CreateTemp(c.dir, "apply-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(manifest); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = c.Kubectl(ctx, "apply", "-f", f.Name())
	return err
}

// WaitDeploymentReady waits until every replica of a Deployment is
// updated and available.
func (c *Cluster) WaitDeploymentReady(ns, name string, timeout time.Duration) error {
	err := lab.Poll(timeout, 250*time.Millisecond, func() error { return c.DeploymentReady(ns, name) })
	if err != nil {
		return fmt.Errorf("%w\n%s", err, c.PodReport(ns))
	}
	return nil
}

// DeploymentReady checks once that every replica of a Deployment is
// updated and available, and no other replica is left.
func (c *Cluster) DeploymentReady(ns, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := c.API.Client().AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	if d.Generation != st.ObservedGeneration || st.UpdatedReplicas != want || st.AvailableReplicas != want || st.Replicas != want {
		return fmt.Errorf("Deployment %s/%s: want %d, updated %d, available %d, total %d", ns, name, want, st.UpdatedReplicas, st.AvailableReplicas, st.Replicas)
	}
	return nil
}

// WaitLoadBalancerIP waits until the Service has an ingress address in its
// status and returns it.
func (c *Cluster) WaitLoadBalancerIP(ns, name string, timeout time.Duration) (string, error) {
	ips, err := c.WaitLoadBalancerIPs(ns, name, 1, timeout)
	if err != nil {
		return "", err
	}
	return ips[0], nil
}

// WaitLoadBalancerIPs waits until the Service has at least n ingress
// addresses in its status and returns them in status order.
func (c *Cluster) WaitLoadBalancerIPs(ns, name string, n int, timeout time.Duration) ([]string, error) {
	var ips []string
	err := lab.Poll(timeout, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		svc, err := c.API.Client().CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ips = ips[:0]
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ips = append(ips, in.IP)
			}
		}
		if len(ips) < n {
			return fmt.Errorf("Service %s/%s has addresses %v, want %d", ns, name, ips, n)
		}
		return nil
	})
	return ips, err
}

// PodsOn returns the names of ns's Pods with label app=app, by node.
func (c *Cluster) PodsOn(ctx context.Context, ns, app string) (map[string][]string, error) {
	pods, err := c.API.Client().CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p.Name)
		}
	}
	return out, nil
}

// SignalPod sends sig to the processes of Pod ns/name's containers (not
// its sandbox's pause process nor a containerd shim), found in the Pod's cgroup on its node (the
// kubelet's pod<UID> folder under the node's cgroup root): `kill -9` of a
// container's process, which the kubelet then restarts in the same Pod. It
// returns how many processes it signalled.
func (c *Cluster) SignalPod(ctx context.Context, ns, name string, sig syscall.Signal) (int, error) {
	pod, err := c.API.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	n := c.Node(pod.Spec.NodeName)
	if n == nil {
		return 0, fmt.Errorf("Pod %s/%s is on %q, not a node of the lab", ns, name, pod.Spec.NodeName)
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return 0, err
	}
	want := "pod" + string(pod.UID)
	var podDir string
	for _, m := range mounts {
		base := filepath.Join(m.dir, n.cgroup)
		_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() || podDir != "" {
				return nil
			}
			if d.Name() == want {
				podDir, _ = filepath.Rel(m.dir, p)
				return filepath.SkipAll
			}
			return nil
		})
		if podDir != "" {
			break
		}
	}
	if podDir == "" {
		return 0, fmt.Errorf("no cgroup %s under %s for Pod %s/%s", want, n.cgroup, ns, name)
	}
	pids, err := cgroupPIDs(podDir)
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, pid := range pids {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue // gone
		}
		// Not the sandbox (pause) nor a runtime shim placed in the Pod's
		// cgroup: only what the containers run.
		if argv0, _, _ := strings.Cut(string(cmd), "\x00"); filepath.Base(argv0) == "pause" || strings.HasPrefix(filepath.Base(argv0), "containerd-shim") {
			continue
		}
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return sent, fmt.Errorf("signal %v to pid %d of Pod %s/%s: %w", sig, pid, ns, name, err)
		}
		sent++
	}
	if sent == 0 {
		return 0, fmt.Errorf("Pod %s/%s: no container process in %s", ns, name, podDir)
	}
	return sent, nil
}
