package kube_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
)

// The allocator as its own Deployment: two `vipspeaker allocate` replicas
// (processes here; as Pods in the real-nodes lab) against the real
// kube-apiserver, no agent at all. Services get addresses; when the
// replica holding the Lease is killed (kill -9), the other takes the Lease,
// a new Service still gets an address, and the existing one keeps its own.
func TestAllocatorReplicasLeaseHolderKilled(t *testing.T) {
	bin := lab.Vipspeaker(t)
	// The manifests and the ConfigMap as a user applies them; no node,
	// no agent.
	c := kubeapi.NewCluster(t, kubeapi.ClusterOptions{BridgeAddrs: []string{routerAddr + "/24"}, APIAddr: apiAddr,
		Deploy: true, TOML: testTOML, Namespace: ns})
	e := &env{Cluster: c, bin: bin, cs: c.Client}
	ctx := context.Background()
	// As the allocator Deployment's ServiceAccount.
	replicas := map[string]*lab.Process{}
	for _, id := range []string{"allocator-a", "allocator-b"} {
		replicas[id] = e.startAllocator(t, id)
	}

	e.createService(t, "before")
	before := e.waitIngress(t, "before", 1)[0]
	var holder string
	lab.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		lease, err := e.cs.CoordinationV1().Leases(kube.DefaultNamespace).Get(ctx, kube.DefaultLeaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if h := lease.Spec.HolderIdentity; h != nil && replicas[*h] != nil {
			holder = *h
			return nil
		}
		return fmt.Errorf("lease held by %v, want one of the replicas", lease.Spec.HolderIdentity)
	})
	if err := replicas[holder].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	lab.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		lease, err := e.cs.CoordinationV1().Leases(kube.DefaultNamespace).Get(ctx, kube.DefaultLeaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if h := lease.Spec.HolderIdentity; h == nil || *h == holder {
			return fmt.Errorf("lease still held by %s", holder)
		}
		return nil
	})
	e.createService(t, "after")
	after := e.waitIngressWithin(t, "after", 1, 30*time.Second)[0]
	t.Logf("%s killed; the other replica gave a new Service %s after %v", holder, after, time.Since(killed).Round(time.Millisecond))
	if after == before {
		t.Errorf("the new Service got %s, which Service before holds", after)
	}
	if got := kube.Ingress(e.service(t, "before")); len(got) != 1 || got[0] != before {
		t.Errorf("Service before moved from %s to %v after the lease holder died", before, got)
	}
}
