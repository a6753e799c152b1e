package owner

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestElectChecksLinks(t *testing.T) {
	lan := netip.MustParsePrefix("198.51.100.0/24")
	inLAN := netip.MustParseAddr("198.51.100.10")
	routed := netip.MustParseAddr("203.0.113.10")
	up := func(p ...netip.Prefix) Link { return Link{Up: true, Prefixes: p} }
	nodes := []string{"n1", "n2", "n3"}
	for _, tc := range []struct {
		name   string
		vip    netip.Addr
		links  map[string]Links
		cands  []string // who may win
		ifaces []string // where the winner answers
	}{
		{"no link states: every node", inLAN, nil, nodes, []string{"eth0", "eth1"}},
		{"interfaces down are no candidates", routed, map[string]Links{
			"n1": {"eth0": {}, "eth1": {}}, "n2": {"eth0": up(), "eth1": {}}, "n3": {"eth0": {}, "eth1": {}},
		}, []string{"n2"}, []string{"eth0"}},
		{"subnet carried by some: only they", inLAN, map[string]Links{
			"n1": {"eth0": up(lan), "eth1": up()}, "n2": {"eth0": up(), "eth1": up()}, "n3": {"eth0": up(lan)},
		}, []string{"n1", "n3"}, []string{"eth0"}},
		{"subnet on a down interface does not count", inLAN, map[string]Links{
			"n1": {"eth0": {Prefixes: []netip.Prefix{lan}}}, "n2": {"eth0": up()}, "n3": {"eth0": up()},
		}, []string{"n2", "n3"}, []string{"eth0"}},
		{"routed VIP, in nobody's subnet: every node up", routed, map[string]Links{
			"n1": {"eth0": up(lan)}, "n2": {"eth0": up(lan)}, "n3": {"eth0": up()},
		}, nodes, []string{"eth0"}},
		{"a node without states stays a candidate", inLAN, map[string]Links{
			"n1": {"eth0": up(lan)}, "n2": {"eth0": {}},
		}, []string{"n1", "n3"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := VIP{Addr: tc.vip, Interfaces: []string{"eth0", "eth1"}}
			owners, ifaces := Elect([]VIP{v}, nodes, tc.links, nil)
			want, _ := Owner(tc.vip, tc.cands)
			if owners[tc.vip] != want {
				t.Fatalf("owner %q, want %q (the winner among %v)", owners[tc.vip], want, tc.cands)
			}
			if tc.ifaces == nil {
				return
			}
			if diff := cmp.Diff(tc.ifaces, ifaces[tc.vip]); diff != "" {
				t.Errorf("interfaces (-want +got):\n%s", diff)
			}
		})
	}
	// Nobody up: no owner.
	owners, _ := Elect([]VIP{{Addr: routed, Interfaces: []string{"eth0"}}}, nodes, map[string]Links{
		"n1": {"eth0": {}}, "n2": {"eth0": {}}, "n3": {"eth0": {}},
	}, nil)
	if o, ok := owners[routed]; ok {
		t.Errorf("owner %s with every interface down", o)
	}
}
