package routing

import (
	"encoding/json"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
)

// bgpRoutes lists `ip route show proto bgp` of the namespace (both
// families, the given table) as "dst via nh1,nh2" lines, sorted.
func bgpRoutes(t *testing.T, ns *nstest.NS, table string) []string {
	t.Helper()
	var got []string
	for _, fam := range []string{"-4", "-6"} {
		out, err := exec.Command("ip", "-n", ns.Name, "-j", fam, "route", "show", "table", table, "proto", "bgp").CombinedOutput()
		if err != nil && strings.Contains(string(out), "FIB table does not exist") {
			continue // no route of this family ever in that table
		}
		if err != nil {
			t.Fatalf("ip route show proto bgp: %v\n%s", err, out)
		}
		var rs []struct {
			Dst      string `json:"dst"`
			Gateway  string `json:"gateway"`
			Nexthops []struct {
				Gateway string `json:"gateway"`
			} `json:"nexthops"`
		}
		if err := json.Unmarshal(out, &rs); err != nil {
			t.Fatalf("parse ip -j route: %v\n%s", err, out)
		}
		for _, r := range rs {
			var nhs []string
			if r.Gateway != "" {
				nhs = append(nhs, r.Gateway)
			}
			for _, nh := range r.Nexthops {
				nhs = append(nhs, nh.Gateway)
			}
			slices.Sort(nhs)
			got = append(got, r.Dst+" via "+strings.Join(nhs, ","))
		}
	}
	slices.Sort(got)
	return got
}

// uplinkNS is a namespace with a veth pair whose first end holds
// 198.18.0.1/24 and 2001:db8:18::1/64, so 198.18.0.2-3 and 2001:db8:18::2-3
// are reachable next hops.
func uplinkNS(t *testing.T) *nstest.NS {
	t.Helper()
	ns := nstest.New(t)
	ipn(t, ns, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
	ipn(t, ns, "link", "set", "up1", "up")
	ipn(t, ns, "link", "set", "up0", "up")
	ipn(t, ns, "addr", "add", "198.18.0.1/24", "dev", "up0")
	ipn(t, ns, "addr", "add", "2001:db8:18::1/64", "dev", "up0", "nodad")
	return ns
}

func newImporter(t *testing.T, ns *nstest.NS, opts ImportOptions) *Importer {
	t.Helper()
	opts.NetnsPath = ns.Path()
	im, err := NewImporter(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = im.Close() })
	return im
}

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func TestImporterECMPAndWithdraw(t *testing.T) {
	t.Parallel()
	ns := uplinkNS(t)
	im := newImporter(t, ns, ImportOptions{})

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// ECMP default from two routers, a single-path /24, and IPv6 ECMP.
	must(im.Route(pfx("0.0.0.0/0"), []netip.Addr{addr("198.18.0.3"), addr("198.18.0.2")}))
	must(im.Route(pfx("198.51.100.0/24"), []netip.Addr{addr("198.18.0.2")}))
	must(im.Route(pfx("2001:db8:200::/48"), []netip.Addr{addr("2001:db8:18::2"), addr("2001:db8:18::3")}))
	want := []string{
		"198.51.100.0/24 via 198.18.0.2",
		"2001:db8:200::/48 via 2001:db8:18::2,2001:db8:18::3",
		"default via 198.18.0.2,198.18.0.3",
	}
	if diff := cmp.Diff(want, bgpRoutes(t, ns, "main")); diff != "" {
		t.Fatalf("kernel bgp routes (-want +got):\n%s", diff)
	}

	// One router goes away: the default becomes single-path; the /24
	// moves to the other router.
	must(im.Route(pfx("0.0.0.0/0"), []netip.Addr{addr("198.18.0.2")}))
	must(im.Route(pfx("198.51.100.0/24"), []netip.Addr{addr("198.18.0.3")}))
	// Withdrawals, one through the callback shape.
	im.Update(pfx("2001:db8:200::/48"), nil, true)
	must(im.Withdraw(pfx("203.0.113.0/24"))) // never installed: no error
	want = []string{
		"198.51.100.0/24 via 198.18.0.3",
		"default via 198.18.0.2",
	}
	if diff := cmp.Diff(want, bgpRoutes(t, ns, "main")); diff != "" {
		t.Fatalf("after changes, kernel bgp routes (-want +got):\n%s", diff)
	}
	// A path whose only next hop is of the other family withdraws.
	must(im.Route(pfx("198.51.100.0/24"), []netip.Addr{addr("2001:db8:18::2")}))
	if diff := cmp.Diff([]string{"default via 198.18.0.2"}, bgpRoutes(t, ns, "main")); diff != "" {
		t.Fatalf("after a path without usable next hop (-want +got):\n%s", diff)
	}
}

func TestImporterCloseRemovesOnlyItsRoutes(t *testing.T) {
	t.Parallel()
	ns := uplinkNS(t)
	// A static route and a protocol-bgp route of someone else.
	ipn(t, ns, "route", "add", "198.51.100.0/24", "via", "198.18.0.2")
	ipn(t, ns, "route", "add", "203.0.113.0/24", "via", "198.18.0.2", "proto", "bgp")
	im, err := NewImporter(ImportOptions{NetnsPath: ns.Path(), Table: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Route(pfx("198.51.100.0/24"), []netip.Addr{addr("198.18.0.2"), addr("198.18.0.3")}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"198.51.100.0/24 via 198.18.0.2,198.18.0.3"}, bgpRoutes(t, ns, "100")); diff != "" {
		t.Fatalf("table 100 (-want +got):\n%s", diff)
	}
	if err := im.Close(); err != nil {
		t.Fatal(err)
	}
	if got := bgpRoutes(t, ns, "100"); len(got) != 0 {
		t.Errorf("after Close, table 100 still has %v", got)
	}
	if diff := cmp.Diff([]string{"203.0.113.0/24 via 198.18.0.2"}, bgpRoutes(t, ns, "main")); diff != "" {
		t.Errorf("main table's bgp routes changed (-want +got):\n%s", diff)
	}
	if out := ipn(t, ns, "route", "show", "198.51.100.0/24"); !strings.Contains(out, "via 198.18.0.2") {
		t.Errorf("static route gone: %q", out)
	}
	if err := im.Route(pfx("198.51.100.0/24"), []netip.Addr{addr("198.18.0.2")}); err == nil {
		t.Error("Route after Close succeeded")
	}
}

func TestImporterReleaseKeepsRoutesAndNextRunPrunes(t *testing.T) {
	t.Parallel()
	ns := uplinkNS(t)
	im := newImporter(t, ns, ImportOptions{})
	for _, p := range []string{"198.51.100.0/24", "203.0.113.0/24"} {
		if err := im.Route(pfx(p), []netip.Addr{addr("198.18.0.2"), addr("198.18.0.3")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := im.Release(); err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.0/24 via 198.18.0.2,198.18.0.3", "203.0.113.0/24 via 198.18.0.2,198.18.0.3"}
	if diff := cmp.Diff(want, bgpRoutes(t, ns, "main")); diff != "" {
		t.Fatalf("after Release (-want +got):\n%s", diff)
	}

	// The next run learns one prefix again; the other is stale and is
	// pruned, the relearned one stays without a flap.
	im2 := newImporter(t, ns, ImportOptions{})
	if err := im2.Route(pfx("198.51.100.0/24"), []netip.Addr{addr("198.18.0.3"), addr("198.18.0.2")}); err != nil {
		t.Fatal(err)
	}
	stale, err := im2.Stale()
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) != 1 || stale[0] != pfx("203.0.113.0/24") {
		t.Errorf("Stale = %v, want [203.0.113.0/24]", stale)
	}
	if err := im2.PruneStale(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"198.51.100.0/24 via 198.18.0.2,198.18.0.3"}, bgpRoutes(t, ns, "main")); diff != "" {
		t.Errorf("after PruneStale (-want +got):\n%s", diff)
	}
	if err := im2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := bgpRoutes(t, ns, "main"); len(got) != 0 {
		t.Errorf("after Close: %v", got)
	}
}
