package realnodes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
)

// Lab addresses (see doc.go's topology).
const (
	RouterAddr       = "198.18.10.1"
	APIAddr          = "198.18.10.100"
	LANAddr          = "198.18.10.50"
	ClientAddr       = "198.18.20.2"
	RouterClientAddr = "198.18.20.1"
	RouterAS         = 64500
	NodeAS           = 64512
	ServiceCIDR      = "10.96.0.0/16"
	ClusterCIDR      = "10.244.0.0/16"
	// The IPv6 side of a dual-stack cluster (Options.DualStack): the same
	// segment and client link carry these too.
	RouterAddr6       = "fd00:10::1"
	LANAddr6          = "fd00:10::50"
	ClientAddr6       = "fd00:20::2"
	RouterClientAddr6 = "fd00:20::1"
	ServiceCIDR6      = "fd00:96::/112"
	ClusterCIDR6      = "fd00:244::/56"
	// PauseImage is the sandbox image every node's containerd uses; it is
	// imported from a local tarball (test/cmd/pause).
	PauseImage = "localhost/vsrn/pause:1"
	// Prefix starts every name the package gives host-wide things (cgroup
	// roots, folders): vsrn<pid>-<seq>-...
	Prefix = "vsrn"
)

// Version is the Kubernetes version of the components.
const Version = "v1.37.2"

// Options change the cluster. The zero value is a three-node cluster with
// kube-proxy in iptables mode.
type Options struct {
	// Nodes is the number of nodes (default 3, at most 9).
	Nodes int
	// ProxyMode is kube-proxy's mode: "iptables" (default) or "nftables".
	ProxyMode string
	// ReadyTimeout bounds the wait for every node to be Ready (default 3 min).
	ReadyTimeout time.Duration
	// DualStack gives the segment, the client link, the nodes, their Pods
	// and the Service range IPv6 as well (IPv4 first): Nodes have both
	// InternalIPs, kube-proxy serves both families and the router's BGP
	// sessions (still over IPv4) carry ipv6-unicast too.
	DualStack bool
}

// Cluster is a control plane and real nodes inside one lab.
type Cluster struct {
	Lab     *lab.Lab
	Router  *lab.Host
	FRR     *lab.FRR
	APIHost *lab.Host
	API     *kubeapi.Server
	// Client sits behind the router (reaches VIPs over BGP routes); LAN
	// sits on the nodes' segment (reaches layer-2 VIPs).
	Client, LAN *lab.Host
	Nodes       []*Node
	// Kubeconfig is an admin kubeconfig (inside the lab's namespaces only:
	// run kubectl through Kubectl).
	Kubeconfig string

	t       testing.TB
	bins    Binaries
	tag     string // vsrn<pid>-<seq>
	dual    bool
	echoTar string
	dir     string
	// Ready is how long it took from Start to every node Ready.
	Ready time.Duration
}

var clusterSeq atomic.Int64

// Binaries are the paths of the components a cluster runs.
type Binaries struct {
	Kubelet, KubeProxy, ControllerManager, Scheduler, Kubectl string
	Containerd, Runc, Ctr, CNIDir                             string
}

var (
	binOnce sync.Once
	bins    Binaries
	binErr  error
)

// FindBinaries builds the Kubernetes components with
// test/apiserver/build.sh (once per machine; cached) and finds the Debian
// ones (containerd, runc, ctr, the CNI plugins, conntrack, nft).
func FindBinaries() (Binaries, error) {
	binOnce.Do(func() {
		var missing []string
		look := func(name string) string {
			p, err := exec.LookPath(name)
			if err != nil {
				missing = append(missing, name)
			}
			return p
		}
		bins.Containerd, bins.Runc, bins.Ctr = look("containerd"), look("runc"), look("ctr")
		look("conntrack")
		look("nft")
		look("nsenter")
		look("unshare")
		for _, d := range []string{"/usr/lib/cni", "/opt/cni/bin"} {
			if _, err := os.Stat(filepath.Join(d, "bridge")); err == nil {
				bins.CNIDir = d
				break
			}
		}
		if bins.CNIDir == "" {
			missing = append(missing, "CNI plugins (bridge, host-local, loopback)")
		}
		if len(missing) > 0 {
			binErr = fmt.Errorf("not installed: %s (scripts/deps.sh installs containerd runc containernetworking-plugins conntrack nftables)", strings.Join(missing, ", "))
			return
		}
		names := []string{"kubelet", "kube-proxy", "kube-controller-manager", "kube-scheduler", "kubectl"}
		paths, err := kubeapi.BuildComponents(names...)
		if err != nil {
			binErr = fmt.Errorf("build the Kubernetes components: %w", err)
			return
		}
		bins.Kubelet, bins.KubeProxy, bins.ControllerManager, bins.Scheduler, bins.Kubectl = paths[0], paths[1], paths[2], paths[3], paths[4]
	})
	return bins, binErr
}

// Start builds (or finds) everything, starts the control plane and the
// nodes, imports the sandbox image and waits until every node is Ready. All
// of it is removed at the end of the test. Missing packages skip the test
// (a failure with CI=true).
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	nstest.RequireRoot(t)
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	if opts.Nodes > 9 {
		t.Fatalf("realnodes: at most 9 nodes, not %d", opts.Nodes)
	}
	switch opts.ProxyMode {
	case "":
		opts.ProxyMode = "iptables"
	case "iptables", "nftables":
	default:
		t.Fatalf("realnodes: ProxyMode %q: want iptables or nftables", opts.ProxyMode)
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 3 * time.Minute
	}
	if err := lab.HaveFRR(); err != nil {
		nstest.Skip(t, "%v", err)
	}
	b, err := FindBinaries()
	if err != nil {
		nstest.Skip(t, "realnodes: %v", err)
	}
	if err := SweepStale(); err != nil {
		t.Logf("realnodes: sweep stale: %v", err)
	}
	pause, err := pauseImage()
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	l := lab.New(t)
	c := &Cluster{Lab: l, t: t, bins: b, tag: fmt.Sprintf("%s%d-%d", Prefix, os.Getpid(), clusterSeq.Add(1)), dual: opts.DualStack}
	c.dir, err = os.MkdirTemp("", c.tag+"-")
	if err != nil {
		t.Fatal(err)
	}
	// Registered after lab.New, so it runs first: the nodes' processes go
	// by cgroup before the lab removes the namespaces.
	t.Cleanup(func() {
		if err := c.cleanup(); err != nil {
			t.Errorf("realnodes: cleanup: %v", err)
		}
	})

	// addrs is a host's addresses: v4 and, in a dual-stack cluster, v6.
	addrs := func(v4, v6, bits6 string) []string {
		if !c.dual {
			return []string{v4}
		}
		return []string{v4, v6 + bits6}
	}
	route := func(h *lab.Host, dst, via, dst6, via6 string) {
		if err := h.AddRoute(dst, via); err != nil {
			t.Fatal(err)
		}
		if c.dual {
			if err := h.AddRoute(dst6, via6); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.Router = l.MustHost("router")
	l.MustBridge(c.Router, "br0", addrs(RouterAddr+"/24", RouterAddr6, "/64"))
	c.APIHost = l.MustHost("api")
	l.MustLinkToBridge(c.APIHost, "eth0", []string{APIAddr + "/24"}, c.Router, "br0")
	c.LAN = l.MustHost("lan")
	l.MustLinkToBridge(c.LAN, "eth0", addrs(LANAddr+"/24", LANAddr6, "/64"), c.Router, "br0")
	c.Client = l.MustHost("client")
	l.MustLink(c.Router, "eth1", addrs(RouterClientAddr+"/30", RouterClientAddr6, "/64"), c.Client, "eth0", addrs(ClientAddr+"/30", ClientAddr6, "/64"))
	if err := c.APIHost.AddRoute("0.0.0.0/0", RouterAddr); err != nil {
		t.Fatal(err)
	}
	route(c.LAN, "0.0.0.0/0", RouterAddr, "::/0", RouterAddr6)
	route(c.Client, "0.0.0.0/0", RouterClientAddr, "::/0", RouterClientAddr6)
	if err := c.Router.EnableForwarding(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= opts.Nodes; i++ {
		name := fmt.Sprintf("n%d", i)
		n := &Node{
			Name:    name,
			Addr:    fmt.Sprintf("198.18.10.%d", 10+i),
			PodCIDR: fmt.Sprintf("10.244.%d.0/24", i),
			c:       c,
		}
		if c.dual {
			n.Addr6 = fmt.Sprintf("fd00:10::%d", 10+i)
			n.PodCIDR6 = fmt.Sprintf("fd00:244:0:%d::/64", i)
		}
		n.Host = l.MustHost(Prefix + "-" + name)
		l.MustLinkToBridge(n.Host, "eth0", addrs(n.Addr+"/24", n.Addr6, "/64"), c.Router, "br0")
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		route(n.Host, "0.0.0.0/0", RouterAddr, "::/0", RouterAddr6)
		for _, o := range c.Nodes {
			if o != n {
				route(n.Host, o.PodCIDR, o.Addr, o.PodCIDR6, o.Addr6)
			}
		}
	}
	c.FRR, err = c.Router.StartFRR(lab.FRRConfig{BGPd: c.frrConf()})
	if err != nil {
		t.Fatal(err)
	}

	c.API = kubeapi.Start(t, c.APIHost, APIAddr, kubeapi.Options{
		ServiceCIDRs: c.serviceCIDRs(),
		// Real nodes: the kubernetes Service gets the API server's address
		// as its endpoint (Pods reach it through kube-proxy), and
		// privileged containers are allowed, as on clusters users run.
		Args: []string{"--endpoint-reconciler-type", "lease", "--allow-privileged=true", "--kubelet-preferred-address-types=InternalIP"},
	})
	c.Kubeconfig, err = c.API.Kubeconfig(kubeapi.AdminToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.startControllers(); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, len(c.Nodes))
	for _, n := range c.Nodes {
		go func() { errs <- n.start(opts.ProxyMode, pause) }()
	}
	for range c.Nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitNodesReady(opts.ReadyTimeout); err != nil {
		t.Fatal(err)
	}
	c.Ready = time.Since(begin)
	t.Logf("realnodes: %d nodes Ready %v after Start (control plane, containerd, kubelet, kube-proxy)", len(c.Nodes), c.Ready.Round(10*time.Millisecond))
	return c
}

// Client returns an admin clientset.
func (c *Cluster) Clientset() kubernetes.Interface { return c.API.Client() }

// Dir is the cluster's folder (node state, configs, image tarballs).
func (c *Cluster) Dir() string { return c.dir }

// Tag is vsrn<pid>-<seq>, the prefix of the cluster's host-wide names.
func (c *Cluster) Tag() string { return c.tag }

// Bins are the binaries the cluster runs.
func (c *Cluster) Bins() Binaries { return c.bins }

func (c *Cluster) frrConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hostname router\nlog stdout informational\nrouter bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp network import-check\n bgp graceful-restart\n", RouterAS, RouterAddr)
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers 3 9\n neighbor %s timers connect 2\n", n.Addr, NodeAS, n.Addr, n.Addr)
	}
	b.WriteString(" address-family ipv4 unicast\n  maximum-paths 8\n exit-address-family\n")
	if c.dual {
		b.WriteString(" address-family ipv6 unicast\n  maximum-paths 8\n")
		for _, n := range c.Nodes {
			fmt.Fprintf(&b, "  neighbor %s activate\n", n.Addr)
		}
		b.WriteString(" exit-address-family\n")
	}
	b.WriteString("!\n")
	return b.String()
}

// serviceCIDRs is the Service range(s): --service-cluster-ip-range.
func (c *Cluster) serviceCIDRs() string {
	if c.dual {
		return ServiceCIDR + "," + ServiceCIDR6
	}
	return ServiceCIDR
}

// clusterCIDRs is the Pod range(s): the controller-manager's and
// kube-proxy's cluster CIDR.
func (c *Cluster) clusterCIDRs() string {
	if c.dual {
		return ClusterCIDR + "," + ClusterCIDR6
	}
	return ClusterCIDR
}

// GoBGPConf is the agents' gobgp.conf for this lab: one session to the
// router, graceful restart on (as deploy/kustomize's example).
func GoBGPConf() string { return goBGPConf("") }

// GoBGPConfDualStack is GoBGPConf with ipv6-unicast on the same (IPv4)
// session, for a dual-stack cluster: the agent gives IPv6 VIPs its node's
// IPv6 address on the segment as next hop.
func GoBGPConfDualStack() string {
	return goBGPConf(`  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
`)
}

func goBGPConf(more string) string {
	return fmt.Sprintf(`[global.config]
  as = %d

[[neighbors]]
  [neighbors.config]
    neighbor-address = %q
    peer-as = %d
  [neighbors.timers.config]
    hold-time = 9
    keepalive-interval = 3
    connect-retry = 1
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
%s`, NodeAS, RouterAddr, RouterAS, more)
}

func (c *Cluster) startControllers() error {
	return c.API.StartControllers(c.APIHost, c.bins.ControllerManager, c.bins.Scheduler, c.serviceCIDRs(), c.clusterCIDRs())
}

// Kubectl runs the pinned kubectl (v1.37.2) as admin inside the API
// server's host and returns its combined output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{c.bins.Kubectl, "--kubeconfig", c.Kubeconfig}, args...)
	out, err := c.APIHost.Run(ctx, argv...)
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// WaitNodesReady waits until every node's Ready condition is True.
func (c *Cluster) WaitNodesReady(timeout time.Duration) error {
	return lab.Poll(timeout, 250*time.Millisecond, func() error {
		for _, n := range c.Nodes {
			if err := n.checkAlive(); err != nil {
				return fmt.Errorf("%w: %w", err, lab.ErrGiveUp)
			}
			ready, err := n.Ready()
			if err != nil {
				return err
			}
			if !ready {
				return fmt.Errorf("node %s not Ready", n.Name)
			}
		}
		return nil
	})
}

// Node returns the node named name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// ImportImage loads an image tarball (docker-archive or OCI) into every
// node's containerd, as `ctr -n k8s.io images import` does on a real node.
func (c *Cluster) ImportImage(tarball string) error {
	errs := make(chan error, len(c.Nodes))
	for _, n := range c.Nodes {
		go func() { errs <- n.ImportImage(tarball) }()
	}
	var all []error
	for range c.Nodes {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

func (c *Cluster) cleanup() error {
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, killCgroup(n.cgroup))
	}
	if !c.t.Failed() {
		errs = append(errs, os.RemoveAll(c.dir))
	} else {
		c.t.Logf("realnodes: node folders kept in %s", c.dir)
	}
	return errors.Join(errs...)
}

// nodeReady reads the Ready condition of a Node object.
func nodeReady(node *corev1.Node) bool {
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Ready reports whether the node's Ready condition is True.
func (n *Node) Ready() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	node, err := n.c.API.Client().CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	return nodeReady(node), nil
}

var (
	pauseOnce sync.Once
	pausePath string
	pauseErr  error
)

// pauseImage writes the sandbox image tarball once per process.
func pauseImage() (string, error) {
	pauseOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), "vipspeaker-lab-bin", strconv.Itoa(os.Getpid()))
		if pauseErr = os.MkdirAll(dir, 0o755); pauseErr != nil {
			return
		}
		pausePath, pauseErr = BinaryImage(dir, "./test/cmd/pause", PauseImage)
	})
	return pausePath, pauseErr
}
