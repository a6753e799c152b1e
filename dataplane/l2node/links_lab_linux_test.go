package l2node_test

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/dataplane/l2node"
	"github.com/vipspeaker/vipspeaker/dataplane/owner"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// Three nodes, two segments: eth0 on the client's br0 (198.18.0.0/24,
// the membership and the pool "lan" of addresses in that subnet) and eth1
// on br1 (the pool "back" of routed VIPs, in no interface's subnet). n3's
// eth0 carries 198.18.3.13/24, not the lan subnet.
//
//   - n3 never answers for a lan VIP, though the hash over all three would
//     give it some; n1 and n2 share them (the subnet check);
//   - n3 owns a back VIP as the hash says (routed VIPs: no subnet check);
//   - the cable of n3's eth1 pulled (its bridge port down): another node
//     answers for the back VIP within a second, while n3 stays a member
//     (its link state reached the others in its metadata);
//   - the cable back: n3 answers again after LinkUpHold, and the VIP is
//     never left unanswered for a second.
func TestLinkAndSubnetDecideTheCandidates(t *testing.T) {
	l := lab.New(t)
	client := l.MustHost("client")
	l.MustBridge(client, "br0", []string{"198.18.0.1/24"})
	l.MustBridge(client, "br1", []string{"198.18.1.1/24"})
	client.MustRun("ip", "route", "add", "203.0.113.0/24", "dev", "br1")
	names := []string{"n1", "n2", "n3"}
	eth0 := map[string]string{"n1": "198.18.0.11", "n2": "198.18.0.12", "n3": "198.18.3.13"}
	hosts := map[string]*lab.Host{}
	mac := map[string]string{} // MAC -> "node/iface"
	for i, name := range names {
		h := l.MustHost(name)
		hosts[name] = h
		l.MustLinkToBridge(h, "eth0", []string{eth0[name] + "/24"}, client, "br0")
		l.MustLinkToBridge(h, "eth1", []string{fmt.Sprintf("198.18.1.%d/24", 11+i)}, client, "br1")
		// n3 reaches the others on the segment although its subnet differs.
		other := "198.18.3.0/24"
		if name == "n3" {
			other = "198.18.0.0/24"
		}
		h.MustRun("ip", "route", "add", other, "dev", "eth0")
		for _, ifn := range []string{"eth0", "eth1"} {
			lk, err := h.Netlink().LinkByName(ifn)
			if err != nil {
				t.Fatal(err)
			}
			mac[lk.Attrs().HardwareAddr.String()] = name + "/" + ifn
		}
	}
	// lan VIPs, some of which the hash over all three gives to n3.
	var lanVIPs []string
	n3Would := 0
	for i := 100; i < 106; i++ {
		a := netip.AddrFrom4([4]byte{198, 18, 0, byte(i)})
		lanVIPs = append(lanVIPs, a.String())
		if o, _ := owner.Owner(a, names); o == "n3" {
			n3Would++
		}
	}
	if n3Would == 0 {
		t.Fatal("the hash gives n3 none of the lan VIPs: the test would prove nothing")
	}
	// A back VIP the hash gives to n3.
	var back string
	for i := 1; i < 15 && back == ""; i++ {
		a := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		if o, _ := owner.Owner(a, names); o == "n3" {
			back = a.String()
		}
	}
	procs := map[string]*lab.Process{}
	for _, name := range names {
		var join []string
		for _, o := range names {
			if o != name {
				join = append(join, fmt.Sprintf("%q", eth0[o]))
			}
		}
		toml := fmt.Sprintf(`[[pools]]
name = "lan"
addresses = ["198.18.0.96/28"]
mode = "layer2"
  [pools.layer2]
  interfaces = ["eth0"]
[[pools]]
name = "back"
addresses = ["203.0.113.0/28"]
mode = "layer2"
  [pools.layer2]
  interfaces = ["eth1"]
[layer2]
fast-path = "off"
gratuitous-count = 1
[membership]
join = [%s]
`, strings.Join(join, ", "))
		p, err := hosts[name].Start("l2node", []string{os.Args[0], "-test.run=^$"},
			lab.Env(childEnv+"="+name, childEnv+"_CONFIG="+toml, childEnv+"_VIPS="+strings.Join(append(slices.Clone(lanVIPs), back), ",")))
		if err != nil {
			t.Fatal(err)
		}
		procs[name] = p
	}
	lab.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		for name, p := range procs {
			if p.Exited() {
				return fmt.Errorf("%s exited:\n%s", name, lab.Tail(p.Log(), 20))
			}
			if n := strings.Count(p.Log(), `msg="speaker joined"`); n < 2 {
				return fmt.Errorf("%s has seen %d speakers join, want 2", name, n)
			}
		}
		return nil
	})
	lanProbes := map[string]*lab.ARPProber{}
	for _, v := range lanVIPs {
		p, err := client.StartARPProber("br0", netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr(v), 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop(0) })
		lanProbes[v] = p
	}
	backProbe, err := client.StartARPProber("br1", netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr(back), 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backProbe.Stop(0) })

	// Settled: every lan VIP answered by one node, never n3; the back VIP
	// by n3's eth1 alone.
	macOf := func(who string) string {
		for m, w := range mac {
			if w == who {
				return m
			}
		}
		return ""
	}
	var settled time.Time
	lab.Eventually(t, 20*time.Second, 100*time.Millisecond, func() (err error) {
		// Half a second of answers as wanted, since the last one that was not.
		since := time.Now().Add(-500 * time.Millisecond)
		if settled.IsZero() {
			settled = time.Now()
		}
		if since.Before(settled) {
			return fmt.Errorf("settling")
		}
		defer func() {
			if err != nil {
				settled = time.Now()
			}
		}()
		for v, p := range lanProbes {
			r, ok := p.FirstFrom(since)
			if !ok {
				return fmt.Errorf("no reply for %s", v)
			}
			if o, two := p.FirstFrom(since, r.MAC); two {
				return fmt.Errorf("%s answered by %s and %s", v, mac[r.MAC], mac[o.MAC])
			}
		}
		r, ok := backProbe.FirstFrom(since)
		if !ok || mac[r.MAC] != "n3/eth1" {
			return fmt.Errorf("back VIP %s answered by %q, want n3/eth1", back, mac[r.MAC])
		}
		if o, two := backProbe.FirstFrom(since, r.MAC); two {
			return fmt.Errorf("back VIP %s also answered by %s", back, mac[o.MAC])
		}
		return nil
	})
	for v, p := range lanProbes {
		for _, r := range p.Replies() {
			if strings.HasPrefix(mac[r.MAC], "n3/") {
				t.Errorf("n3 answered for lan VIP %s at %s, though its eth0 lacks the subnet", v, r.At.Format(time.StampMilli))
			}
		}
	}
	if !strings.Contains(procs["n3"].Log(), `msg="not a candidate for layer2 VIPs outside the subnets of this node's interfaces (other speakers carry their subnets)"`) {
		t.Errorf("n3 did not log why it owns no lan VIP. Its log:\n%s", lab.Tail(procs["n3"].Log(), 15))
	}
	t.Logf("lan VIPs (%d of %d n3's by hash alone) answered by n1 and n2 only; back VIP %s by n3", n3Would, len(lanVIPs), back)

	// Pull n3's eth1 cable: its bridge port goes down, eth1 loses carrier.
	n3eth1, err := hosts["n3"].Netlink().LinkByName("eth1")
	if err != nil {
		t.Fatal(err)
	}
	port, err := client.Netlink().LinkByIndex(n3eth1.Attrs().ParentIndex)
	if err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	if err := client.Netlink().LinkSetDown(port); err != nil {
		t.Fatal(err)
	}
	var took time.Duration
	lab.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
		r, ok := backProbe.FirstFrom(down, macOf("n3/eth1"))
		if !ok {
			return fmt.Errorf("no other node answers for %s since n3's eth1 went down", back)
		}
		took = r.At.Sub(down)
		return nil
	})
	t.Logf("n3's eth1 down: %s answered by another node after %v", back, took.Round(time.Millisecond))
	if took >= time.Second {
		t.Errorf("takeover after the link loss took %v, want < 1 s", took)
	}
	// The others heard it from n3 (the membership, not failure detection).
	lab.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		for _, name := range []string{"n1", "n2"} {
			if !strings.Contains(procs[name].Log(), `msg="speaker's layer2 interface changed" node=`+name+` component=membership node=n3 iface=eth1 up=false`) {
				return fmt.Errorf("%s has not logged n3's eth1 going down. Its log:\n%s", name, lab.Tail(procs[name].Log(), 15))
			}
		}
		return nil
	})

	// The cable back: n3 answers again (the hash gives it the VIP), after
	// LinkUpHold.
	upAt := time.Now()
	if err := client.Netlink().LinkSetUp(port); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if _, ok := backProbe.FirstFrom(upAt.Add(500*time.Millisecond), macOf("n1/eth1"), macOf("n2/eth1")); !ok {
			return fmt.Errorf("n3 does not answer for %s since its eth1 came back", back)
		}
		return nil
	})
	back3, _ := backProbe.FirstFrom(upAt.Add(500*time.Millisecond), macOf("n1/eth1"), macOf("n2/eth1"))
	t.Logf("n3's eth1 up: n3 answers for %s again after %v", back, back3.At.Sub(upAt).Round(time.Millisecond))
	if d := back3.At.Sub(upAt); d < l2node.LinkUpHold {
		t.Errorf("n3 answered %v after its link came back, before the %v hold", d, l2node.LinkUpHold)
	}
	if n, longest := backProbe.Unanswered(down, time.Now()); longest >= time.Second {
		t.Errorf("%s unanswered for %v (%d requests) across the link loss and return", back, longest, n)
	}
}
