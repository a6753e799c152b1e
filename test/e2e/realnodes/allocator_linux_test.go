package realnodes_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
	"github.com/vipspeaker/vipspeaker/test/lab/realnodes"
)

// allocNS holds the Services of the allocator scenarios.
const allocNS = "alloc"

// leastPrivilege: after `kubectl apply -k`, the allocator is its
// Deployment's real Pods (Running and Ready, on the lab's nodes), one of
// them holds the Lease, the speakers run with --allocate=false, and a
// token of a speaker Pod (a TokenRequest bound to that Pod, as the
// kubelet mounts) is refused a change to a Service — its status and its
// annotations — by the real API server, as the access reviews say.
func leastPrivilege(t *testing.T, c *realnodes.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := c.API.Client()
	alloc := allocatorPods(t, c)
	if len(alloc) != 2 {
		t.Fatalf("allocator Pods Running and Ready: %v, want 2\n%s", alloc, c.PodReport(realnodes.AgentNamespace))
	}
	holder := leaseHolder(t, c)
	if _, ok := alloc[holder]; !ok {
		t.Errorf("the allocator Lease is held by %q, not by an allocator Pod %v", holder, alloc)
	}
	speakers, err := cs.CoreV1().Pods(realnodes.AgentNamespace).List(ctx, metav1.ListOptions{LabelSelector: realnodes.SpeakerLabel})
	if err != nil {
		t.Fatal(err)
	}
	// Not those still terminating after a rollout.
	live := slices.DeleteFunc(speakers.Items, func(p corev1.Pod) bool { return p.DeletionTimestamp != nil })
	if len(live) != len(c.Nodes) {
		t.Fatalf("%d speaker Pods, want %d", len(live), len(c.Nodes))
	}
	for _, p := range live {
		if args := p.Spec.Containers[0].Args; !slices.Contains(args, "--allocate=false") {
			t.Errorf("speaker Pod %s runs %v, want --allocate=false", p.Name, args)
		}
	}
	t.Logf("allocator Pods %v; Lease held by %s", alloc, holder)

	// The authorizer's answers.
	for _, c2 := range []struct {
		user, verb, sub string
		want            bool
	}{
		{kubeapi.AgentUser, "patch", "", false},
		{kubeapi.AgentUser, "update", "", false},
		{kubeapi.AgentUser, "patch", "status", false},
		{kubeapi.AgentUser, "update", "status", false},
		{kubeapi.AllocatorUser, "patch", "", true},
		{kubeapi.AllocatorUser, "patch", "status", true},
	} {
		ok, err := c.API.Can(c2.user, kubeapi.AgentGroups, authv1.ResourceAttributes{Verb: c2.verb, Resource: "services", Subresource: c2.sub, Namespace: "web"})
		if err != nil {
			t.Fatal(err)
		}
		if ok != c2.want {
			t.Errorf("access review: %s %s services/%s: allowed=%v, want %v", c2.user, c2.verb, c2.sub, ok, c2.want)
		}
	}

	// A real request with a speaker Pod's token.
	pod := live[0]
	exp := int64(600)
	tr, err := cs.CoreV1().ServiceAccounts(realnodes.AgentNamespace).CreateToken(ctx, pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.API.Admin()
	cfg.BearerToken = tr.Status.Token
	speaker := kubernetes.NewForConfigOrDie(cfg)
	svcs := speaker.CoreV1().Services("web")
	if _, err := svcs.List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("speaker Pod %s's token cannot even list Services: %v", pod.Name, err)
	}
	for _, w := range []struct {
		what  string
		patch string
		sub   []string
	}{
		{"status", `{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.99"}]}}}`, []string{"status"}},
		{"annotation", `{"metadata":{"annotations":{"` + kube.AnnotationAddresses + `":"203.0.113.99"}}}`, nil},
	} {
		_, err := svcs.Patch(ctx, "echo", types.MergePatchType, []byte(w.patch), metav1.PatchOptions{}, w.sub...)
		if !apierrors.IsForbidden(err) {
			t.Errorf("speaker Pod %s's token patching Service web/echo's %s: %v, want Forbidden", pod.Name, w.what, err)
		}
	}
}

// allocatorPods maps the allocator Deployment's Running and Ready Pods to
// their nodes.
func allocatorPods(t *testing.T, c *realnodes.Cluster) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.API.Client().CoreV1().Pods(realnodes.AgentNamespace).List(ctx, metav1.ListOptions{LabelSelector: realnodes.AllocatorLabel})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range l.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				out[p.Name] = p.Spec.NodeName
			}
		}
	}
	return out
}

func leaseHolder(t *testing.T, c *realnodes.Cluster) string {
	t.Helper()
	var h string
	lab.Eventually(t, time.Minute, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l, err := c.API.Client().CoordinationV1().Leases(realnodes.AgentNamespace).Get(ctx, kube.DefaultLeaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return fmt.Errorf("Lease %s has no holder", kube.DefaultLeaseName)
		}
		h = *l.Spec.HolderIdentity
		return nil
	})
	return h
}

// lbAddrs maps every Service with an address to its addresses.
func lbAddrs(t *testing.T, c *realnodes.Cluster) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.API.Client().CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for i := range l.Items {
		var ips []string
		for _, in := range l.Items[i].Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
		if len(ips) > 0 {
			out[l.Items[i].Namespace+"/"+l.Items[i].Name] = strings.Join(ips, ",")
		}
	}
	return out
}

// newServiceGetsAddress creates LoadBalancer Service allocNS/name and
// waits for its address; it fails the test when the address is one
// another Service holds or when a Service of before lost or changed its
// address. It returns how long the address took.
func newServiceGetsAddress(t *testing.T, c *realnodes.Cluster, name string, before map[string]string, opts ...kubeapi.ServiceOption) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.API.Client().CoreV1().Services(allocNS).Create(ctx, kubeapi.LoadBalancer(name, allocNS, opts...), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ip, err := c.WaitLoadBalancerIP(allocNS, name, 2*time.Minute)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.PodReport(realnodes.AgentNamespace))
	}
	took := time.Since(start)
	after := lbAddrs(t, c)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("Service %s had %s, now %q", k, v, after[k])
		}
		if v == ip {
			t.Errorf("the new Service %s got %s, which %s holds", name, ip, k)
		}
	}
	return took
}

// allocatorLeaseHolderGone: the allocator replica holding the Lease is
// killed (kill -9 of its process; the kubelet restarts it), then its Pod
// is deleted: each time a new Service still gets an address, and every
// Service that had one keeps it. After the deletion the Lease is held by
// another Pod, and the Deployment is back to two available replicas.
func allocatorLeaseHolderGone(t *testing.T, c *realnodes.Cluster) {
	t.Helper()
	if err := c.API.CreateNamespace(allocNS); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tag := fmt.Sprint(time.Now().UnixNano() % 100000)
	newServiceGetsAddress(t, c, "before-"+tag, lbAddrs(t, c))

	holder := leaseHolder(t, c)
	restarts := restartCount(t, c, realnodes.AgentNamespace, holder)
	before := lbAddrs(t, c)
	n, err := c.SignalPod(ctx, realnodes.AgentNamespace, holder, syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	took := newServiceGetsAddress(t, c, "after-kill-"+tag, before)
	// The kill was real: the kubelet restarted the container.
	lab.Eventually(t, time.Minute, 100*time.Millisecond, func() error {
		if r := restartCount(t, c, realnodes.AgentNamespace, holder); r <= restarts {
			return fmt.Errorf("allocator Pod %s: %d restarts, want more than %d after the kill", holder, r, restarts)
		}
		return nil
	})
	t.Logf("figure: allocator Lease holder %s killed (kill -9 of %d processes; the kubelet restarted it): a new Service got an address after %v; Lease now held by %s",
		holder, n, took.Round(10*time.Millisecond), leaseHolder(t, c))
	metrics(t, map[string]float64{"killed_new_service_address_ms": ms(took)})
	if err := c.WaitDeploymentReady(realnodes.AgentNamespace, realnodes.AllocatorDeployment, 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	holder = leaseHolder(t, c)
	before = lbAddrs(t, c)
	if _, err := c.Kubectl(ctx, "delete", "pod", "-n", realnodes.AgentNamespace, holder, "--wait=false"); err != nil {
		t.Fatal(err)
	}
	took = newServiceGetsAddress(t, c, "after-delete-"+tag, before)
	var now string
	lab.Eventually(t, time.Minute, 100*time.Millisecond, func() error {
		if now = leaseHolder(t, c); now == holder {
			return fmt.Errorf("Lease still held by the deleted Pod %s", holder)
		}
		return nil
	})
	t.Logf("figure: allocator Lease holder Pod %s deleted: a new Service got an address after %v; Lease now held by %s",
		holder, took.Round(10*time.Millisecond), now)
	if err := c.WaitDeploymentReady(realnodes.AgentNamespace, realnodes.AllocatorDeployment, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if alloc := allocatorPods(t, c); len(alloc) != 2 {
		t.Errorf("allocator Pods after the deletion: %v, want 2", alloc)
	} else if _, ok := alloc[holder]; ok {
		t.Errorf("the deleted Pod %s is still among %v", holder, slices.Sorted(maps.Keys(alloc)))
	}
}

// restartCount is the restarts of Pod ns/name's containers.
func restartCount(t *testing.T, c *realnodes.Cluster, ns, name string) int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := c.API.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var n int32
	for _, st := range p.Status.ContainerStatuses {
		n += st.RestartCount
	}
	return n
}
