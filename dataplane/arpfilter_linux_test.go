package dataplane

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
)

// readOnlySysctls is ns.Do with /proc/sys read-only, as a container that
// is not privileged sees it: the thread gets a mount namespace of its own
// (it is thrown away with the thread) where /proc/sys is a read-only bind.
func readOnlySysctls(ns *nstest.NS) func(func() error) error {
	return func(fn func() error) error {
		return ns.Do(func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("unshare mount namespace: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("make / private: %w", err)
			}
			if err := unix.Mount("/proc/sys", "/proc/sys", "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("bind /proc/sys: %w", err)
			}
			if err := unix.Mount("", "/proc/sys", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("remount /proc/sys read-only: %w", err)
			}
			return fn()
		})
	}
}

// clientNeigh is the client's neighbour entry for a ("" when none).
func (l *l2lab) clientNeigh(a netip.Addr) string {
	out, _ := tryRun(5*time.Second, "ip", "-n", l.client.Name, "neigh", "show", a.String(), "dev", "br0")
	if m := macsIn(out); len(m) > 0 {
		return m[0]
	}
	return ""
}

// pingFrom makes node i's kernel send to the client from source src; with
// the client's address not yet in node i's neighbour table, the kernel
// resolves it with an ARP request whose sender address is src
// (arp_announce=0).
func (l *l2lab) pingFrom(i int, src netip.Addr) {
	run(l.t, "ip", "-n", l.nodes[i].Name, "neigh", "flush", "dev", "eth0")
	_, _ = tryRun(5*time.Second, "ip", "netns", "exec", l.nodes[i].Name, "ping", "-c", "1", "-W", "1", "-I", src.String(), "198.18.0.1")
}

func tableRules(t *testing.T, ns *nstest.NS) (chains map[string]int, found bool) {
	t.Helper()
	chains = map[string]int{}
	err := ns.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tab, err := c.ListTableOfFamily(DefaultARPFilterTable, nftables.TableFamilyARP)
		if err != nil {
			return nil // not there
		}
		found = true
		cs, err := c.ListChainsOfTableFamily(nftables.TableFamilyARP)
		if err != nil {
			return err
		}
		for _, ch := range cs {
			if ch.Table.Name != tab.Name {
				continue
			}
			rs, err := c.GetRules(tab, ch)
			if err != nil {
				return err
			}
			chains[ch.Name] = len(rs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return chains, found
}

// Two nodes hold both VIPs on kube-lb0 with arp_ignore and arp_announce at
// their defaults (0) and /proc/sys read-only, as in the shipped DaemonSet.
// Without the filter both kernels answer the client's ARP for a VIP and a
// non-owner's kernel, sending from a VIP, rewrites the client's entry for
// it. With the filter (CAP_NET_ADMIN only) only the owner's responder
// answers — so the AF_PACKET socket sees the request the arp input hook
// then drops — the non-owner's kernel no longer rewrites the client's
// entry while the owner's still resolves, and the sysctls stay 0. After
// Remove the table is gone and the kernels answer again.
func TestARPFilterOnlyOwnerAnswersWithReadOnlySysctls(t *testing.T) {
	needTools(t, "arping", "ping")
	l := newL2Lab(t, 2)
	vipB := vip4Free // owned by node 1 in this test
	sysctls := func() []string {
		var out []string
		for _, n := range l.nodes {
			for _, s := range []string{"arp_ignore", "arp_announce"} {
				out = append(out, readSysctlIn(t, n, "/proc/sys/net/ipv4/conf/eth0/"+s))
			}
		}
		return out
	}
	zeros := []string{"0", "0", "0", "0"}
	if diff := cmp.Diff(zeros, sysctls()); diff != "" {
		t.Fatalf("fresh nodes' sysctls (-want +got):\n%s", diff)
	}

	// Without the filter: both kernels answer, and node 1 sending from
	// vip4 points the client's entry for vip4 at node 1.
	if got := l.arping(vip4, 2); len(got) != 2 {
		t.Fatalf("before the filter, want both kernels answering for %s, got %v", vip4, got)
	}
	l.pingFrom(1, vip4)
	if got := l.clientNeigh(vip4); got != l.macs[1] {
		t.Fatalf("before the filter, node 1 sending from %s should set the client's entry to %s, got %q", vip4, l.macs[1], got)
	}
	run(t, "ip", "-n", l.client.Name, "neigh", "flush", "dev", "br0")

	var filters []*ARPFilter
	for i := range l.nodes {
		r := l.start(i, prometheus.NewPedanticRegistry(), Options{Enter: readOnlySysctls(l.nodes[i])})
		f, err := NewARPFilter(ARPFilterOptions{Logger: testLogger(t).With("node", i), Enter: readOnlySysctls(l.nodes[i])})
		if err != nil {
			t.Fatal(err)
		}
		mine := []netip.Addr{vip4, vipB}[i]
		r.SetOwned(owned([]string{"eth0"}, mine))
		other := []netip.Addr{vipB, vip4}[i]
		if err := f.Set([]netip.Addr{vip4, vipB, vip6}, []netip.Addr{other, vip6}); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		filters = append(filters, f)
	}
	if diff := cmp.Diff(zeros, sysctls()); diff != "" {
		t.Fatalf("the responders must not have changed the sysctls (read-only /proc/sys) (-want +got):\n%s", diff)
	}
	for i, vip := range []netip.Addr{vip4, vipB} {
		if diff := cmp.Diff([]string{l.macs[i]}, l.arping(vip, 3)); diff != "" {
			t.Errorf("answerers for %s owned by node %d (-want +got):\n%s", vip, i, diff)
		}
	}
	l.pingFrom(1, vip4)
	if got := l.clientNeigh(vip4); got == l.macs[1] {
		t.Errorf("with the filter, node 1 (not the owner) sending from %s still set the client's entry to its MAC", vip4)
	}
	l.pingFrom(0, vip4)
	if got := l.clientNeigh(vip4); got != l.macs[0] {
		t.Errorf("the owner sending from %s: client's entry %q, want %s (the owner's ARP requests must pass)", vip4, got, l.macs[0])
	}
	for i := range l.nodes {
		chains, found := tableRules(t, l.nodes[i])
		if diff := cmp.Diff(map[string]int{"input": 1, "output": 1}, chains); !found || diff != "" {
			t.Errorf("node %d table arp %s (found %v), rules per chain (-want +got):\n%s", i, DefaultARPFilterTable, found, diff)
		}
	}

	for i, f := range filters {
		if err := f.Remove(); err != nil {
			t.Fatal(err)
		}
		if _, found := tableRules(t, l.nodes[i]); found {
			t.Errorf("node %d: table arp %s still there after Remove", i, DefaultARPFilterTable)
		}
	}
	if got := l.arping(vip4, 2); len(got) != 2 {
		t.Errorf("after Remove, want both kernels answering again for %s (the filter was what silenced them), got %v", vip4, got)
	}
}

// A restarted agent finds the table its predecessor left (Detach keeps it,
// so the kernel stays silent through the restart) and its first Set
// replaces it in one transaction: still one rule per chain, the sets hold
// the new VIPs only; an unchanged Set writes nothing; Remove twice is fine.
func TestARPFilterReconcilesLeftTable(t *testing.T) {
	ns := nstest.New(t)
	old, err := NewARPFilter(ARPFilterOptions{Enter: ns.Do})
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")
	if err := old.Set([]netip.Addr{a, b}, []netip.Addr{b}); err != nil {
		t.Fatal(err)
	}
	// The old agent exits without Remove; the new one starts.
	next, err := NewARPFilter(ARPFilterOptions{Enter: ns.Do})
	if err != nil {
		t.Fatal(err)
	}
	c := netip.MustParseAddr("203.0.113.3")
	if err := next.Set([]netip.Addr{b, c, netip.MustParseAddr("::ffff:203.0.113.2"), netip.MustParseAddr("2001:db8::1")}, []netip.Addr{b}); err != nil {
		t.Fatal(err)
	}
	chains, found := tableRules(t, ns)
	if diff := cmp.Diff(map[string]int{"input": 1, "output": 1}, chains); !found || diff != "" {
		t.Errorf("after the new agent's Set, rules per chain (-want +got):\n%s", diff)
	}
	got := map[string][]string{}
	if err := ns.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tab := &nftables.Table{Family: nftables.TableFamilyARP, Name: DefaultARPFilterTable}
		for _, name := range []string{"vips", "not_owned"} {
			s, err := c.GetSetByName(tab, name)
			if err != nil {
				return err
			}
			els, err := c.GetSetElements(s)
			if err != nil {
				return err
			}
			for _, e := range els {
				got[name] = append(got[name], netip.AddrFrom4([4]byte(e.Key)).String())
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, v := range got {
		slices.Sort(v)
	}
	want := map[string][]string{"vips": {"203.0.113.2", "203.0.113.3"}, "not_owned": {"203.0.113.2"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("set elements (-want +got):\n%s", diff)
	}
	if err := next.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := next.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if _, found := tableRules(t, ns); found {
		t.Error("table still there after Remove")
	}
}

func TestARPFilterTableName(t *testing.T) {
	_, err := NewARPFilter(ARPFilterOptions{Table: strings.Repeat("x", 300)})
	if err == nil || !strings.Contains(err.Error(), "arp filter table") {
		t.Fatalf("err %v, want one naming the table", err)
	}
}
