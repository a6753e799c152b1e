//go:build linux && e2ereal

// Built only with -tags e2ereal (make e2e-real): the long scenarios on
// real nodes, kept out of make test by the build, not by a skip.

package realnodes_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/realnodes"
)

// underLoad runs action while the client host sends the steady stream to
// url, then waits for done (the system settled), lets the stream run 2 s of
// answers more, and returns what the client saw.
func underLoad(t *testing.T, host *lab.Host, url string, action func(), done func() error) realnodes.LoadResult {
	t.Helper()
	load := realnodes.StartLoad(host, url, rate, timeout)
	defer load.Stop()
	lab.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		if r := load.Result(); r.OK < rate {
			return fmt.Errorf("load before the action: %v", r)
		}
		return nil
	})
	action()
	if done != nil {
		lab.Eventually(t, 4*time.Minute, 200*time.Millisecond, done)
	}
	okAfter := load.Result().OK + 2*rate
	lab.Eventually(t, time.Minute, 100*time.Millisecond, func() error {
		if r := load.Result(); r.OK < okAfter {
			return fmt.Errorf("load after the action: %v", r)
		}
		return nil
	})
	return load.Stop()
}

func kubectl(t *testing.T, c *realnodes.Cluster, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := c.Kubectl(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// nextHops is the router's kernel route to vip: FRR installs the ECMP
// route there, while its BGP table lists one path per peer.
func nextHops(c *realnodes.Cluster, vip string) ([]netip.Addr, error) {
	gws, err := c.Router.Gateways(vip + "/32")
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(gws))
	for _, g := range gws {
		a, err := netip.ParseAddr(g)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// speakersReady: sp's DaemonSet is Ready on every node and the router
// routes vip via every node.
func speakersReady(c *realnodes.Cluster, sp realnodes.Speaker, vip string) func() error {
	return func() error {
		if err := c.DaemonSetReady(sp.Namespace, sp.DaemonSet); err != nil {
			return err
		}
		hops, err := nextHops(c, vip)
		if err != nil {
			return err
		}
		if len(hops) != len(c.Nodes) {
			return fmt.Errorf("router: %s via %v, want %d next hops", vip, hops, len(c.Nodes))
		}
		return nil
	}
}

// TestE2EReal is `make e2e-real`: every scenario on one cluster of three
// real nodes, each subtest logging its figure ("figure: ...") and its
// numbers for `make bench` ("metrics: ...").
func TestE2EReal(t *testing.T) { scenarios(t, cluster(t), realnodes.VIPSpeaker) }

// scenarios runs the scenarios against sp, the load balancer installed on
// c. What vipspeaker promises (no failed request, one ARP answer) is
// asserted for vipspeaker; for MetalLB, the baseline, it is measured and
// logged only.
func scenarios(t *testing.T, c *realnodes.Cluster, sp realnodes.Speaker) {
	bgp := realnodes.EchoOptions{Namespace: "web", Name: "echo", Replicas: 3, Pool: "bgp", Speaker: &sp}
	var vip string
	ok := t.Run("bgp-create", func(t *testing.T) {
		vip = echoBGP(t, c, bgp)
		waitNextHops(t, c, vip, len(c.Nodes))
	})
	if !ok {
		t.FailNow()
	}
	url := "http://" + vip + "/"

	t.Run("bgp-rollout-restart", func(t *testing.T) {
		r := underLoad(t, c.Client, url, func() {
			kubectl(t, c, "rollout", "restart", "daemonset/"+sp.DaemonSet, "-n", sp.Namespace)
		}, speakersReady(c, sp, vip))
		t.Logf("figure: rollout restart of the DaemonSet under %d req/s (BGP): %v", rate, r)
		noFailures(t, sp, r)
	})

	if sp.Name == realnodes.VIPSpeaker.Name {
		// The allocator Deployment as shipped: real Pods, a speaker's
		// token refused a Service change; its Lease holder killed (kill
		// -9), then its Pod deleted: new Services still get addresses, the
		// others keep theirs.
		t.Run("allocator-lease-holder-killed", func(t *testing.T) {
			leastPrivilege(t, c)
			allocatorLeaseHolderGone(t, c)
		})
	} else {
		t.Run("controller-killed", func(t *testing.T) { metallbControllerKilled(t, c) })
	}

	t.Run("speaker-pod-deleted", func(t *testing.T) {
		pods, err := c.API.Client().CoreV1().Pods(sp.Namespace).List(context.Background(),
			metav1.ListOptions{FieldSelector: "spec.nodeName=n1", LabelSelector: sp.PodLabel})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("agent Pod on n1: %v (%d Pods)", err, len(pods.Items))
		}
		r := underLoad(t, c.Client, url, func() {
			kubectl(t, c, "delete", "pod", "-n", sp.Namespace, pods.Items[0].Name)
		}, speakersReady(c, sp, vip))
		t.Logf("figure: speaker Pod %s deleted under %d req/s (BGP): %v", pods.Items[0].Name, rate, r)
		noFailures(t, sp, r)
	})

	var l2vip string
	t.Run("layer2-create", func(t *testing.T) { l2vip = layer2(t, c, sp) })

	// The same two disruptions for the layer-2 VIP, seen from the segment:
	// the owner's agent goes away and comes back (vipspeaker: the pinned
	// XDP responder answers meanwhile; the membership keeps the owner).
	t.Run("layer2-rollout-restart", func(t *testing.T) {
		l2url := layer2URL(t, l2vip)
		r := underLoad(t, c.LAN, l2url, func() {
			kubectl(t, c, "rollout", "restart", "daemonset/"+sp.DaemonSet, "-n", sp.Namespace)
		}, speakersReady(c, sp, vip))
		t.Logf("figure: rollout restart of the DaemonSet under %d req/s (layer 2, from the segment): %v", rate, r)
		noFailures(t, sp, r)
	})
	t.Run("layer2-owner-pod-deleted", func(t *testing.T) {
		l2url := layer2URL(t, l2vip)
		owner := l2Owner(t, c, l2vip)
		pods, err := c.API.Client().CoreV1().Pods(sp.Namespace).List(context.Background(),
			metav1.ListOptions{FieldSelector: "spec.nodeName=" + owner, LabelSelector: sp.PodLabel})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("speaker Pod on %s: %v (%d Pods)", owner, err, len(pods.Items))
		}
		r := underLoad(t, c.LAN, l2url, func() {
			kubectl(t, c, "delete", "pod", "-n", sp.Namespace, pods.Items[0].Name)
		}, speakersReady(c, sp, vip))
		t.Logf("figure: speaker Pod %s on the layer-2 owner %s deleted under %d req/s (from the segment): %v", pods.Items[0].Name, owner, rate, r)
		noFailures(t, sp, r)
	})

	t.Run("drain", func(t *testing.T) {
		node := "n3"
		r := underLoad(t, c.Client, url, func() {
			kubectl(t, c, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3m")
		}, func() error {
			if err := c.DeploymentReady(bgp.Namespace, bgp.Name); err != nil {
				return err
			}
			on, err := c.PodsOn(context.Background(), bgp.Namespace, bgp.Name)
			if err != nil {
				return err
			}
			if len(on[node]) != 0 {
				return fmt.Errorf("Pods still on %s: %v", node, on[node])
			}
			return nil
		})
		kubectl(t, c, "uncordon", node)
		t.Logf("figure: kubectl drain %s under %d req/s (BGP): %v", node, rate, r)
		noFailures(t, sp, r)
	})

	t.Run("node-frozen", func(t *testing.T) { frozen(t, c, url, bgp) })

	t.Run("etp-local-moves", func(t *testing.T) { etpLocal(t, c, sp) })
}

// noFailures logs the stream's numbers for make bench and, for vipspeaker,
// fails the test when a request failed.
func noFailures(t *testing.T, sp realnodes.Speaker, r realnodes.LoadResult) {
	t.Helper()
	metrics(t, loadMetrics(r, nil))
	if r.Failed != 0 && sp.Name == realnodes.VIPSpeaker.Name {
		t.Errorf("%d of %d requests failed (first: %s; last: %s)", r.Failed, r.Sent, r.FirstErr, r.LastErr)
	}
}

// layer2URL is the layer-2 VIP's URL; the scenario fails when
// layer2-create gave none.
func layer2URL(t *testing.T, vip string) string {
	t.Helper()
	if vip == "" {
		t.Fatal("no layer-2 VIP: layer2-create failed")
	}
	return "http://" + vip + "/"
}

// l2Owner is the node whose MAC answers ARP for vip on the segment.
func l2Owner(t *testing.T, c *realnodes.Cluster, vip string) string {
	t.Helper()
	macs := nodeMACs(t, c)
	var owner string
	lab.Eventually(t, 10*time.Second, 200*time.Millisecond, func() error {
		got := lab.MACs(strings.Join(c.LAN.ARPing("eth0", vip, 2, 100*time.Millisecond), " "))
		if len(got) != 1 || macs[got[0]] == nil {
			return fmt.Errorf("ARP for %s answered by %v, want one node", vip, got)
		}
		owner = macs[got[0]].Name
		return nil
	})
	return owner
}

// layer2: a Service in the layer-2 pool answers HTTP from a client on the
// segment, and only one node (the owner) answers ARP for its VIP. It
// returns the VIP.
func layer2(t *testing.T, c *realnodes.Cluster, sp realnodes.Speaker) string {
	o := realnodes.EchoOptions{Namespace: "l2", Name: "echo", Replicas: 3, Pool: "l2", Speaker: &sp}
	ip := firstAnswer(t, c, o, c.LAN, "the layer-2 VIP", "from the segment")

	macs := map[string]string{}
	for mac, n := range nodeMACs(t, c) {
		macs[mac] = n.Name
	}
	p, err := c.LAN.StartARPProber("eth0", netip.MustParseAddr(realnodes.LANAddr), netip.MustParseAddr(ip), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(0) })
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		if n := p.Sent(); n < 20 {
			return fmt.Errorf("%d ARP requests sent", n)
		}
		return nil
	})
	p.Stop(300 * time.Millisecond)
	answered := map[string]int{}
	for _, r := range p.Replies() {
		answered[r.MAC]++
	}
	var who []string
	for mac, n := range answered {
		who = append(who, fmt.Sprintf("%s (%s) %d times", mac, macs[mac], n))
	}
	slices.Sort(who)
	t.Logf("figure: ARP for layer-2 VIP %s, %d requests from the segment: answered by %v", ip, p.Sent(), who)
	metrics(t, map[string]float64{"arp_answering_macs": float64(len(answered))})
	if len(answered) != 1 && sp.Name == realnodes.VIPSpeaker.Name {
		t.Errorf("ARP for %s answered by %d MACs, want only the owner's: %v", ip, len(answered), who)
	}
	return ip
}

// frozen: a node's kubelet, containerd, agent and Pods are stopped
// (SIGSTOP, through its cgroup); the real node-lifecycle controller marks
// it NotReady; the stream's failures and longest gap are the figure.
func frozen(t *testing.T, c *realnodes.Cluster, url string, o realnodes.EchoOptions) {
	n := c.Node("n2")
	load := realnodes.StartLoad(c.Client, url, rate, timeout)
	defer load.Stop()
	lab.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		if r := load.Result(); r.OK < rate {
			return fmt.Errorf("load before the freeze: %v", r)
		}
		return nil
	})
	start := time.Now()
	if err := n.Freeze(); err != nil {
		t.Fatal(err)
	}
	thawed := false
	defer func() {
		if !thawed {
			_ = n.Thaw()
		}
	}()
	var notReady time.Duration
	lab.Eventually(t, 3*time.Minute, 250*time.Millisecond, func() error {
		ready, err := n.Ready()
		if err != nil {
			return err
		}
		if ready {
			return fmt.Errorf("node %s still Ready", n.Name)
		}
		notReady = time.Since(start)
		return nil
	})
	// The route via the frozen node leaves the router (hold time), the
	// Pods on it leave the EndpointSlices (NotReady): answers flow again.
	lab.Eventually(t, 2*time.Minute, 200*time.Millisecond, func() error {
		hops, err := nextHops(c, strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/"))
		if err != nil {
			return err
		}
		if slices.Contains(hops, netip.MustParseAddr(n.Addr)) {
			return fmt.Errorf("router still routes via %s: %v", n.Name, hops)
		}
		return nil
	})
	okAfter := load.Result().OK + 2*rate
	lab.Eventually(t, time.Minute, 100*time.Millisecond, func() error {
		if r := load.Result(); r.OK < okAfter {
			return fmt.Errorf("load after the freeze: %v", r)
		}
		return nil
	})
	r := load.Stop()
	t.Logf("figure: node %s frozen under %d req/s: NotReady after %v (node-lifecycle controller); %v", n.Name, rate, notReady.Round(100*time.Millisecond), r)
	metrics(t, loadMetrics(r, map[string]float64{"not_ready_ms": ms(notReady)}))
	if err := n.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	if err := c.WaitNodesReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitDeploymentReady(o.Namespace, o.Name, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}

// etpLocal: an externalTrafficPolicy Local Service with one backend is
// announced only by the backend's node; when the backend moves to another
// node (old node cordoned, Pod deleted) the route follows.
func etpLocal(t *testing.T, c *realnodes.Cluster, sp realnodes.Speaker) {
	o := realnodes.EchoOptions{Namespace: "local", Name: "echo", Replicas: 1, Pool: "bgp", Local: true, Speaker: &sp}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.DeployEcho(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitDeploymentReady(o.Namespace, o.Name, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	ip, err := c.WaitLoadBalancerIP(o.Namespace, o.Name, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	onlyVia := func() (string, error) {
		on, err := c.PodsOn(context.Background(), o.Namespace, o.Name)
		if err != nil {
			return "", err
		}
		var node string
		for k, v := range on {
			if len(v) > 0 {
				node = k
			}
		}
		if len(on) != 1 || node == "" {
			return "", fmt.Errorf("backend Pods by node: %v", on)
		}
		hops, err := nextHops(c, ip)
		if err != nil {
			return "", err
		}
		want := netip.MustParseAddr(c.Node(node).Addr)
		if len(hops) != 1 || hops[0] != want {
			return "", fmt.Errorf("router: %s via %v, want only %s (%s, the backend's node)", ip, hops, want, node)
		}
		return node, nil
	}
	var from string
	lab.Eventually(t, time.Minute, 200*time.Millisecond, func() error {
		var err error
		from, err = onlyVia()
		return err
	})
	var to string
	var start time.Time
	var followed time.Duration
	r := underLoad(t, c.Client, "http://"+ip+"/", func() {
		start = time.Now()
		kubectl(t, c, "cordon", from)
		kubectl(t, c, "delete", "pod", "-n", o.Namespace, "-l", "app="+o.Name, "--wait=false")
	}, func() error {
		node, err := onlyVia()
		if err != nil {
			return err
		}
		if node == from {
			return fmt.Errorf("backend still on %s", from)
		}
		to, followed = node, time.Since(start)
		return nil
	})
	kubectl(t, c, "uncordon", from)
	t.Logf("figure: externalTrafficPolicy Local backend moved %s → %s: route followed in %v; under %d req/s: %v", from, to, followed.Round(100*time.Millisecond), rate, r)
	metrics(t, loadMetrics(r, map[string]float64{"route_followed_ms": ms(followed)}))
}
