package realnodes_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/realnodes"
)

// dualStackTOML is labTOML with an IPv6 range in each pool: the BGP pool
// beside 203.0.113.0/28, the layer-2 pool on the nodes' segment.
const dualStackTOML = labInterface + `
[[pools]]
name = "bgp"
addresses = ["203.0.113.0/28", "2001:db8:203::/124"]
mode = "bgp"
auto-assign = true

[[pools]]
name = "l2"
addresses = ["198.18.10.200-198.18.10.215", "fd00:10::200-fd00:10::20f"]
mode = "layer2"
auto-assign = false
  [pools.layer2]
  interfaces = ["eth0"]
`

// A dual-stack Service (RequireDualStack) on dual-stack real nodes, the
// agent installed with kubectl apply -k: it gets an IPv4 and an IPv6
// address from the BGP pool, and the client behind the router gets HTTP
// answers from the Pods through both, the router's kernel routing each
// VIP via all three nodes (IPv6 next hops: the nodes' IPv6 addresses on the
// segment, over the same IPv4 sessions). A second one in the layer-2 pool
// answers a client on the segment through both addresses, and exactly one
// node answers Neighbor Solicitations for its IPv6 VIP (NDP, as ARP for
// IPv4): the one whose MAC the client's neighbour table holds. The
// subtests log their times for `make bench` (TestDualStackMetalLB is the
// layer-2 half on MetalLB).
func TestDualStack(t *testing.T) {
	c := clusterOpts(t, realnodes.Options{DualStack: true}, nil, func(ctx context.Context, c *realnodes.Cluster) (time.Duration, error) {
		return c.InstallAgent(ctx, dualStackTOML, realnodes.GoBGPConfDualStack())
	})
	t.Run("bgp", func(t *testing.T) {
		bgp := dualStackAnswers(t, c, realnodes.EchoOptions{Namespace: "ds", Name: "echo", Replicas: 3, Pool: "bgp", DualStack: true}, c.Client, "from behind the router")
		for _, vip := range bgp {
			var want []string
			for _, n := range c.Nodes {
				if netip.MustParseAddr(vip).Is4() {
					want = append(want, n.Addr)
				} else {
					want = append(want, n.Addr6)
				}
			}
			if err := c.Router.WaitGateways(lab.HostPrefix(netip.MustParseAddr(vip)), 2*time.Minute, want...); err != nil {
				t.Error(err)
			}
		}
	})
	t.Run("layer2", func(t *testing.T) { dualStackLayer2(t, c, realnodes.VIPSpeaker) })
}

// dualStackLayer2 deploys a dual-stack Service in sp's layer-2 pool "l2",
// waits for answers through both addresses from the segment and asks who
// answers Neighbor Solicitations for its IPv6 VIP: for vipspeaker exactly
// one node, the one the segment client's neighbour table then holds; for
// MetalLB the count is logged.
func dualStackLayer2(t *testing.T, c *realnodes.Cluster, sp realnodes.Speaker) {
	l2 := dualStackAnswers(t, c, realnodes.EchoOptions{Namespace: "ds-l2", Name: "echo", Replicas: 3, Pool: "l2", DualStack: true, Speaker: &sp}, c.LAN, "from the segment")
	vip6 := l2[1]
	macs := nodeMACs(t, c)
	answers := ndpAnswers(t, c.LAN, realnodes.LANAddr6, vip6)
	metrics(t, map[string]float64{"ndp_answering_macs": float64(len(answers))})
	if sp.Name != realnodes.VIPSpeaker.Name {
		t.Logf("figure: %s: NDP for %s answered by %d MACs: %v", sp.Name, vip6, len(answers), answers)
		return
	}
	if len(answers) != 1 || macs[answers[0]] == nil {
		t.Fatalf("Neighbor Advertisements for %s from %v, want exactly one node (node MACs %v)", vip6, answers, slices.Sorted(maps.Keys(macs)))
	}
	t.Logf("NDP for %s: answered by %s only", vip6, macs[answers[0]].Name)
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		out, err := c.LAN.Run(context.Background(), "ip", "-6", "neigh", "show", vip6, "dev", "eth0")
		if err != nil {
			return err
		}
		if !strings.Contains(strings.ToLower(out), answers[0]) {
			return fmt.Errorf("the segment client's neighbour table for %s: %q, want %s (%s)", vip6, out, answers[0], macs[answers[0]].Name)
		}
		return nil
	})
}

// dualStackAnswers deploys o (dual-stack) and waits for an HTTP answer
// through each of its two addresses from client (IPv4 first), logging the
// time from create to each (for `make bench` too). It returns the
// addresses, IPv4 first.
func dualStackAnswers(t *testing.T, c *realnodes.Cluster, o realnodes.EchoOptions, client *lab.Host, where string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	if err := c.DeployEcho(ctx, o); err != nil {
		t.Fatal(err)
	}
	ips, err := c.WaitLoadBalancerIPs(o.Namespace, o.Name, 2, time.Minute)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.PodReport(o.Namespace))
	}
	slices.SortFunc(ips, func(a, b string) int { return netip.MustParseAddr(a).BitLen() - netip.MustParseAddr(b).BitLen() })
	if a, b := netip.MustParseAddr(ips[0]), netip.MustParseAddr(ips[1]); !a.Is4() || !b.Is6() {
		t.Fatalf("Service %s/%s addresses %v: want one IPv4 and one IPv6", o.Namespace, o.Name, ips)
	}
	first := map[string]float64{}
	for i, ip := range ips {
		url := "http://" + net.JoinHostPort(ip, "80") + "/"
		var name string
		if err := lab.Poll(2*time.Minute, 100*time.Millisecond, func() error {
			var err error
			name, err = realnodes.Get(client, url, timeout)
			return err
		}); err != nil {
			t.Fatalf("no answer through %s %s: %v\n%s", url, where, err, c.PodReport(o.Namespace))
		}
		took := time.Since(start)
		t.Logf("figure: dual-stack Service created → first HTTP answer through the %s VIP %s %s: %v (Pod %s)", o.Pool, ip, where, took.Round(10*time.Millisecond), name)
		first[[]string{"first_answer_v4_ms", "first_answer_v6_ms"}[i]] = ms(took)
	}
	metrics(t, first)
	return ips
}

var targetMAC = regexp.MustCompile(`(?i)Target link-layer address:\s*([0-9a-f:]{17})`)

// ndpAnswers sends Neighbor Solicitations for vip from host's eth0 with
// source address src, as the kernel does for traffic from src (ndisc6,
// waiting for every answer, three tries of 0.5 s), and returns the
// distinct link-layer addresses that answered, lower case; none when
// nothing answered (ndisc6 exits 2). (MetalLB v0.15.2 answered none of
// ndisc6's solicitations from the client's link-local address in this lab
// while its traffic from the global address got through.)
func ndpAnswers(t *testing.T, host *lab.Host, src, vip string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := host.Run(ctx, "ndisc6", "-m", "-n", "-s", src, "-r", "3", "-w", "500", vip, "eth0")
	if err != nil && !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("ndisc6 %s: %v\n%s", vip, err, out)
	}
	var macs []string
	for _, m := range targetMAC.FindAllStringSubmatch(out, -1) {
		if mac := strings.ToLower(m[1]); !slices.Contains(macs, mac) {
			macs = append(macs, mac)
		}
	}
	return macs
}
