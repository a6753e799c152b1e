package realnodes

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/ociimage"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/metallb"
)

// Speaker is a load balancer installed on the nodes, as the scenarios see
// it: the DaemonSet of its speakers, the label selecting their Pods, and
// how a Service asks for it and for one of its pools.
type Speaker struct {
	Name                           string // "vipspeaker", "metallb"
	Namespace, DaemonSet, PodLabel string
	// Class is the Services' spec.loadBalancerClass ("": none, what the
	// cluster's default implementation takes).
	Class string
	// PoolAnnotation is the Service annotation naming a pool.
	PoolAnnotation string
}

// VIPSpeaker is deploy/kustomize's agent; MetalLB is MetalLB v0.15.2 as
// its metallb-native.yaml installs it (its controller takes Services
// without a loadBalancerClass).
var (
	VIPSpeaker = Speaker{Name: "vipspeaker", Namespace: AgentNamespace, DaemonSet: AgentDaemonSet, PodLabel: SpeakerLabel,
		Class: LBClass, PoolAnnotation: "vipspeaker.io/pool"}
	MetalLB = Speaker{Name: "metallb", Namespace: MetalLBNamespace, DaemonSet: "speaker", PodLabel: "app=metallb,component=speaker",
		PoolAnnotation: "metallb.io/address-pool"}
)

// MetalLB's names in metallb-native.yaml.
const (
	MetalLBNamespace  = "metallb-system"
	MetalLBController = "controller"
	// MetalLBControllerLabel selects the controller Deployment's Pods.
	MetalLBControllerLabel = "app=metallb,component=controller"
)

// The lab's pools, the same for both load balancers: the tests' labTOML
// gives vipspeaker these, MetalLBConfig gives them to MetalLB.
const (
	BGPPool = "203.0.113.0/28"
	L2Pool  = "198.18.10.200-198.18.10.215"
	// L2Pool6 is the layer-2 pool's IPv6 range on a dual-stack cluster
	// (the tests' dualStackTOML; MetalLBConfigDualStack).
	L2Pool6 = "fd00:10::200-fd00:10::20f"
)

// MetalLBConfig is the lab's configuration as MetalLB's resources, the
// equivalent of the tests' labTOML and GoBGPConf: pool "bgp" (assigned
// automatically) announced over BGP to the router, pool "l2" (only on
// request) announced by ARP on eth0, one BGP session per node to the
// router with hold time 9 s (MetalLB's native mode sends keepalives every
// third of it, 3 s: GoBGPConf's timers). Native mode refuses graceful
// restart (enableGracefulRestart is for its FRR mode), so the BGPPeer has
// none.
func MetalLBConfig() string { return metallbConfig(fmt.Sprintf("[%q]", L2Pool)) }

// MetalLBConfigDualStack is MetalLBConfig with L2Pool6 in pool "l2" (the
// tests' dualStackTOML has it too). Pool "bgp" stays IPv4 only: MetalLB's
// native BGP speaker refuses IPv6 prefixes ("cannot advertise non-v4
// prefix", internal/bgp/native of v0.15.2); its FRR mode, which can, needs
// an FRR container this lab does not build.
func MetalLBConfigDualStack() string {
	return metallbConfig(fmt.Sprintf("[%q, %q]", L2Pool, L2Pool6))
}

// metallbConfig is MetalLBConfig with l2 (a YAML list) as pool "l2"'s
// addresses.
func metallbConfig(l2 string) string {
	return fmt.Sprintf(`apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: bgp, namespace: %[1]s}
spec:
  addresses: [%[2]q]
  autoAssign: true
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: l2, namespace: %[1]s}
spec:
  addresses: %[3]s
  autoAssign: false
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: router, namespace: %[1]s}
spec:
  myASN: %[4]d
  peerASN: %[5]d
  peerAddress: %[6]s
  holdTime: 9s
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: bgp, namespace: %[1]s}
spec:
  ipAddressPools: [bgp]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2, namespace: %[1]s}
spec:
  ipAddressPools: [l2]
  interfaces: [eth0]
`, MetalLBNamespace, BGPPool, l2, NodeAS, RouterAS, RouterAddr)
}

// InstallMetalLB installs MetalLB v0.15.2 the way its documentation tells
// users to for native (FRR-less) mode: its two images into every node's
// containerd (built here from the module proxy with test/metallb's go.mod,
// the way ours is built: internal/ociimage, a static binary as the image's
// entrypoint, run as root as MetalLB's distroless images do), `kubectl
// apply -f metallb-native.yaml` (with its CRDs' ASNs widened for this API
// server: metallb.NativeManifest), then, once its validating webhook
// answers, cfg with kubectl apply. The memberlist Secret is the
// one MetalLB's controller creates. It returns how long the manifest's
// apply took to the controller and every speaker Pod Ready. cfg is the
// configuration (MetalLBConfig or MetalLBConfigDualStack).
//
// The API server reaches the webhook at its Service's ClusterIP, as on a
// control-plane node that runs kube-proxy; the lab's API server host runs
// none, so it is given a route to the Service range via n1 (whose
// kube-proxy forwards and masquerades it).
func (c *Cluster) InstallMetalLB(ctx context.Context, cfg string) (time.Duration, error) {
	modDir, err := metallb.ModDir()
	if err != nil {
		return 0, err
	}
	manifest, err := metallb.NativeManifest()
	if err != nil {
		return 0, err
	}
	for _, name := range []string{"speaker", "controller"} {
		tar, err := imageTarball(c.dir, "quay.io/metallb/"+name+":"+metallb.Version, ociimage.Spec{
			Main: metallb.Module + "/" + name, Dir: modDir, Binary: "/" + name, User: "0:0",
			LDFlags: []string{"-X go.universe.tf/metallb/internal/version.gitCommit=" + metallb.Version},
		})
		if err != nil {
			return 0, err
		}
		if err := c.ImportImage(tar); err != nil {
			return 0, err
		}
	}
	if err := c.APIHost.AddRoute(ServiceCIDR, c.Nodes[0].Addr); err != nil && !strings.Contains(err.Error(), "exists") {
		return 0, err
	}
	start := time.Now()
	if err := c.Apply(ctx, manifest); err != nil {
		return 0, err
	}
	if err := c.WaitDeploymentReady(MetalLBNamespace, MetalLBController, 3*time.Minute); err != nil {
		return 0, err
	}
	if err := c.WaitDaemonSetReady(MetalLBNamespace, MetalLB.DaemonSet, 3*time.Minute); err != nil {
		return 0, err
	}
	took := time.Since(start)
	// The webhook (a certificate the controller makes, then the Secret
	// volume's refresh) may refuse the configuration for a while.
	var last error
	if err := lab.Poll(3*time.Minute, time.Second, func() error {
		last = c.Apply(ctx, cfg)
		return last
	}); err != nil {
		return 0, fmt.Errorf("MetalLB configuration: %w\n%s", last, c.PodReport(MetalLBNamespace))
	}
	c.t.Logf("realnodes: MetalLB configuration accepted %v after the manifest's apply", time.Since(start).Round(10*time.Millisecond))
	return took, nil
}
