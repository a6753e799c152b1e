//go:build linux && e2ereal

package realnodes_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/metallb"
	"github.com/vipspeaker/vipspeaker/test/lab/realnodes"
)

// TestE2ERealMetalLB runs TestE2EReal's scenarios against MetalLB
// v0.15.2 on a cluster of its own, installed from its metallb-native.yaml
// with the lab's pools, BGP peer and advertisements (realnodes.InstallMetalLB),
// for `make bench` to set its figures beside vipspeaker's.
func TestE2ERealMetalLB(t *testing.T) {
	// The pools are the ones labTOML gives vipspeaker.
	for _, p := range []string{realnodes.BGPPool, realnodes.L2Pool} {
		if !strings.Contains(labTOML, fmt.Sprintf("addresses = [%q]", p)) {
			t.Fatalf("labTOML has no pool %s: MetalLB's and vipspeaker's pools differ", p)
		}
	}
	c := clusterWith(t, nil, installMetalLB(t, realnodes.MetalLBConfig()))
	scenarios(t, c, realnodes.MetalLB)
}

// TestDualStackMetalLB is TestDualStack's layer-2 half on MetalLB v0.15.2
// (its pool "l2" with the same IPv6 range), for `make bench` to set beside
// vipspeaker's. The BGP half has no MetalLB counterpart: its native
// speaker refuses IPv6 prefixes (realnodes.MetalLBConfigDualStack).
func TestDualStackMetalLB(t *testing.T) {
	if !strings.Contains(dualStackTOML, fmt.Sprintf("%q", realnodes.L2Pool6)) {
		t.Fatalf("dualStackTOML has no range %s: MetalLB's and vipspeaker's pools differ", realnodes.L2Pool6)
	}
	c := clusterOpts(t, realnodes.Options{DualStack: true}, nil, installMetalLB(t, realnodes.MetalLBConfigDualStack()))
	t.Run("layer2", func(t *testing.T) { dualStackLayer2(t, c, realnodes.MetalLB) })
}

// installMetalLB installs MetalLB with cfg (skipping the test where its
// module cannot be had) and has a failed test log its Pods.
func installMetalLB(t *testing.T, cfg string) func(context.Context, *realnodes.Cluster) (time.Duration, error) {
	return func(ctx context.Context, c *realnodes.Cluster) (time.Duration, error) {
		took, err := c.InstallMetalLB(ctx, cfg)
		if metallb.IsUnavailable(err) {
			nstest.Skip(t, "MetalLB %s: %v", metallb.Version, err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Log(c.PodReport(realnodes.MetalLBNamespace))
			}
		})
		return took, err
	}
}

// metallbControllerKilled: MetalLB's controller, its one replica as
// shipped, killed (kill -9 of its container's process; the kubelet
// restarts it): a new Service gets an address after the figure, and every
// Service that had one keeps it — allocatorLeaseHolderGone's first half,
// on MetalLB.
func metallbControllerKilled(t *testing.T, c *realnodes.Cluster) {
	if err := c.API.CreateNamespace(allocNS); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	noClass := func(s *corev1.Service) { s.Spec.LoadBalancerClass = nil }
	tag := fmt.Sprint(time.Now().UnixNano() % 100000)
	newServiceGetsAddress(t, c, "before-"+tag, lbAddrs(t, c), noClass)

	pods, err := c.API.Client().CoreV1().Pods(realnodes.MetalLBNamespace).List(ctx, metav1.ListOptions{LabelSelector: realnodes.MetalLBControllerLabel})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("MetalLB controller Pods: %v (%d, want 1)", err, len(pods.Items))
	}
	pod := pods.Items[0].Name
	restarts := restartCount(t, c, realnodes.MetalLBNamespace, pod)
	before := lbAddrs(t, c)
	n, err := c.SignalPod(ctx, realnodes.MetalLBNamespace, pod, syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	took := newServiceGetsAddress(t, c, "after-kill-"+tag, before, noClass)
	lab.Eventually(t, time.Minute, 100*time.Millisecond, func() error {
		if r := restartCount(t, c, realnodes.MetalLBNamespace, pod); r <= restarts {
			return fmt.Errorf("MetalLB controller Pod %s: %d restarts, want more than %d after the kill", pod, r, restarts)
		}
		return nil
	})
	t.Logf("figure: MetalLB controller %s killed (kill -9 of %d processes; the kubelet restarted it): a new Service got an address after %v",
		pod, n, took.Round(10*time.Millisecond))
	metrics(t, map[string]float64{"killed_new_service_address_ms": ms(took)})
	if err := c.WaitDeploymentReady(realnodes.MetalLBNamespace, realnodes.MetalLBController, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}
