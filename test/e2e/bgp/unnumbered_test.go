package bgp_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// unnumberedFRR is the router's bgpd config for an unnumbered peer on n1:
// FRR learns the node's link-local address from its router
// advertisements and uses extended next hop (RFC 5549) for IPv4.
const unnumberedFRR = `frr defaults traditional
hostname router
log stdout informational
!
router bgp 65000
 bgp router-id 198.18.0.1
 no bgp ebgp-requires-policy
 neighbor n1 interface remote-as 65001
 neighbor n1 timers connect 1
 address-family ipv6 unicast
  neighbor n1 activate
 exit-address-family
!
`

// An unnumbered session: the node and the router share a link that holds
// IPv6 link-local addresses only. The agent's gobgp.conf names the
// interface (neighbor-interface = "eth0"), FRR peers with `neighbor n1
// interface`; gobgp.conf is deploy/examples/unnumbered's. The session comes up, and both the IPv4 and the IPv6 VIP are
// in FRR's table and kernel via the node's link-local address on that
// link (the IPv4 one with an IPv6 next hop, RFC 5549), also with the VIPs'
// pool sent to that neighbor only (peers = ["eth0"]); traffic from the
// router reaches both VIPs over it.
func TestUnnumberedSession(t *testing.T) {
	t.Parallel()
	lab.RequireFRR(t)
	bin := lab.Vipspeaker(t)
	l := lab.New(t)
	router, host := l.MustHost("router"), l.MustHost("node1")
	l.MustLink(router, "n1", nil, host, "eth0", nil)
	must(t, router.EnableForwarding())
	// a Kubernetes node forwards; the kernel then ignores router
	// advertisements, so the agent cannot rely on them for its routes
	must(t, host.Sysctl("net.ipv6.conf.all.forwarding", "1"))
	must(t, router.AddAddr("lo", "198.18.0.1/32", "2001:db8:18::1/128"))
	frr, err := router.StartFRR(lab.FRRConfig{Zebra: "hostname router\nlog stdout informational\n", BGPd: unnumberedFRR})
	must(t, err)

	agent, err := lab.NewAgent(host, bin)
	must(t, err)
	// the VIPs' pool names the neighbor by its interface ([pools.advertise]
	// peers): its paths go to the router GoBGP has at the link-local
	// address heard on eth0, and nowhere else
	pool := func(peers string) string {
		return lab.AgentTOML{Extra: `
[[pools]]
name = "fabric"
addresses = ["203.0.113.0/24", "2001:db8:100::/64"]
  [pools.advertise]
  peers = [` + peers + `]
`}.String()
	}
	must(t, agent.WriteConfig("vipspeaker.toml", pool(`"eth0"`)))
	// the shipped example as it is; its empty router-id is the node's own
	// IPv4 address, on another interface (the peering link has none)
	host.MustRun("ip", "link", "add", "mgmt0", "type", "ifb")
	host.MustRun("ip", "link", "set", "mgmt0", "up")
	must(t, host.AddAddr("mgmt0", "198.18.1.2/24"))
	example, err := os.ReadFile("../../../deploy/examples/unnumbered/gobgp.conf")
	must(t, err)
	conf := string(example)
	must(t, agent.WriteConfig("gobgp.conf", conf))
	must(t, agent.WriteService(lab.ServiceFile{Name: "web", Addresses: []string{"203.0.113.10", "2001:db8:100::10"}}))
	start := time.Now()
	_, err = agent.Start()
	must(t, err)
	must(t, frr.WaitEstablished("n1", 30*time.Second))
	// the agent solicits the router's advertisement instead of waiting for
	// the next one (FRR sends one every 10 s)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("agent start → session Established took %v, want under 5 s", took)
	} else {
		t.Logf("agent start → session Established over link-local addresses: %v", took)
	}

	nodeLL, routerLL := linkLocal(t, host, "eth0"), linkLocal(t, router, "n1")
	for _, vip := range []string{"203.0.113.10/32", "2001:db8:100::10/128"} {
		if err := router.WaitGateways(vip, 20*time.Second, nodeLL.String()); err != nil {
			t.Fatal(err)
		}
		r, _, err := router.KernelRoute(vip)
		if err != nil || len(r.Devs) != 1 || r.Devs[0] != "n1" {
			t.Errorf("router's kernel route to %s: %+v, %v; want via %s dev n1", vip, r, err, nodeLL)
		}
	}
	paths, err := frr.PrefixPaths("ipv4", "203.0.113.10/32")
	if err != nil || len(paths) != 1 || paths[0].ASPath != "65001" || len(paths[0].NextHops) != 1 || paths[0].NextHops[0] != nodeLL.String() {
		t.Fatalf("FRR's path to 203.0.113.10: %+v, %v; want AS path 65001 via %s", paths, err, nodeLL)
	}

	// the node routes the router's own addresses back over the same link
	// (as an operator would, or a default route learnt from the router)
	host.MustRun("ip", "route", "add", "198.18.0.1/32", "via", "inet6", routerLL.String(), "dev", "eth0")
	host.MustRun("ip", "-6", "route", "add", "2001:db8:18::1/128", "via", routerLL.String(), "dev", "eth0")
	for _, c := range [][2]string{{"198.18.0.1", "203.0.113.10"}, {"2001:db8:18::1", "2001:db8:100::10"}} {
		lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			out, err := router.Run(ctx, "ping", "-n", "-q", "-c", "1", "-W", "1", "-I", c[0], c[1])
			if err != nil {
				return fmt.Errorf("ping %s from %s: %v\n%s", c[1], c[0], err, out)
			}
			return nil
		})
	}

	// a reload without the neighbor, while the pool still names it, is
	// refused; once the pool names no peer, it ends the session and
	// withdraws the VIPs; with it again, they come back
	t.Logf("%v: routes and pings checked", time.Since(start))
	must(t, agent.WriteConfig("gobgp.conf", lab.GoBGPConf{AS: 65001}.String()))
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(agent.Proc.Log(), "pools[0].advertise.peers[0]: eth0 is not a neighbor in ") {
			return fmt.Errorf("the agent has not refused the reload that leaves the pool's peer undefined")
		}
		return nil
	})
	must(t, frr.WaitEstablished("n1", time.Second))
	must(t, agent.WriteConfig("vipspeaker.toml", pool("")))
	must(t, router.WaitGateways("203.0.113.10/32", 20*time.Second))
	if s, err := frr.PeerState("n1"); err != nil || s == "Established" {
		t.Errorf("FRR's session after the neighbor was removed: %q, %v", s, err)
	}
	t.Logf("%v: withdrawn", time.Since(start))
	must(t, agent.WriteConfig("gobgp.conf", conf))
	must(t, agent.WriteConfig("vipspeaker.toml", pool(`"eth0"`)))
	must(t, frr.WaitEstablished("n1", 30*time.Second))
	t.Logf("%v: established again", time.Since(start))
	must(t, router.WaitGateways("203.0.113.10/32", 20*time.Second, nodeLL.String()))

	// the router is replaced: another link-local address, its bgpd
	// restarted. The agent follows the router's advertisements to the new
	// address and the session comes back, the pool's paths with it (its
	// peer is now at the new address).
	router.MustRun("ip", "-6", "addr", "del", routerLL.String()+"/64", "dev", "n1")
	router.MustRun("ip", "-6", "addr", "add", "fe80::99/64", "dev", "n1", "nodad")
	replaced := time.Now()
	must(t, frr.Restart("bgpd"))
	must(t, frr.WaitEstablished("n1", 30*time.Second))
	must(t, router.WaitGateways("203.0.113.10/32", 20*time.Second, nodeLL.String()))
	t.Logf("router's link-local address changed and bgpd restarted → route back: %v", time.Since(replaced))
	if !strings.Contains(agent.Proc.Log(), "the router's link-local address changed") {
		t.Error("the agent did not log the router's new link-local address")
	}

	// the agent's router advertisements keep coming (every 10 s)
	before := advertsReceived(t, frr, "n1")
	if before == 0 {
		t.Fatal("FRR counts no router advertisement received on n1")
	}
	lab.Eventually(t, 15*time.Second, 250*time.Millisecond, func() error {
		if n := advertsReceived(t, frr, "n1"); n <= before {
			return fmt.Errorf("FRR has received %d router advertisements on n1, no more since", n)
		}
		return nil
	})
}

var advertsRE = regexp.MustCompile(`ND router advertisements sent: \d+ rcvd: (\d+)`)

// advertsReceived is the count of router advertisements FRR's zebra has
// received on ifName.
func advertsReceived(t testing.TB, frr *lab.FRR, ifName string) int {
	t.Helper()
	out, err := frr.Vtysh("show interface " + ifName)
	must(t, err)
	m := advertsRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no router advertisement count in FRR's show interface %s:\n%s", ifName, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// linkLocal is the IPv6 link-local address of ifName on h.
func linkLocal(t testing.TB, h *lab.Host, ifName string) netip.Addr {
	t.Helper()
	var out netip.Addr
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		link, err := h.Netlink().LinkByName(ifName)
		if err != nil {
			return err
		}
		addrs, err := h.Netlink().AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.IsLinkLocalUnicast() && a.Flags&0x40 == 0 { // not tentative
				out = ip
				return nil
			}
		}
		return fmt.Errorf("no link-local address on %s of %s yet", ifName, h.Name())
	})
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
