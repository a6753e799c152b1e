package lab_test

import (
	"strings"
	"testing"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// Every gobgp.conf the fixtures build is one the agent accepts.
func TestGoBGPConfFixturesAreValid(t *testing.T) {
	policy := lab.GoBGPPolicy{Name: "vips", Default: "accept-route",
		PrefixSets:    []lab.GoBGPPrefixSet{{Name: "ours", Prefix: "203.0.113.0/24", MaskRange: "32..32"}},
		CommunitySets: []lab.GoBGPSet{{Name: "gold", Members: []string{"65000:100"}}},
		NeighborSets:  []lab.GoBGPSet{{Name: "bird", Members: []string{"198.18.101.1"}}},
		Statements: []lab.GoBGPStatement{
			{Name: "not-ours", PrefixSet: "ours", MatchOptions: "invert", Disposition: "reject-route"},
			{Name: "no-bird", NeighborSet: "bird", Disposition: "reject-route"},
			{Name: "gold", CommunitySet: "gold", MatchOptions: "any", Disposition: "accept-route", SetMED: "50", SetLocalPref: 200,
				AddCommunities: []string{"64512:100"}},
		}}
	for name, c := range map[string]lab.GoBGPConf{
		"plain": {AS: 65001, Neighbors: []lab.GoBGPNeighbor{{Address: "198.18.1.1", PeerAS: 65000, ConnectRetry: 1}}},
		"both families, graceful restart, BFD, fast timers": {AS: 65001, RouterID: "198.18.1.2", MultiPath: true,
			Neighbors: []lab.GoBGPNeighbor{lab.GoBGPNeighbor{Address: "198.18.1.1", PeerAS: 65000, GracefulRestart: true, BFD: true,
				Families: lab.BothFamilies}.FastTimers()}},
		"policy and zebra": {AS: 65001, Neighbors: []lab.GoBGPNeighbor{{Address: "198.18.1.1", PeerAS: 65000}},
			Extra: lab.GoBGPZebra("/var/run/frr/x/zserv.api") + "\n" + policy.String()},
		"extra neighbor": {AS: 65001, Neighbors: []lab.GoBGPNeighbor{{Address: "198.18.1.1", PeerAS: 65000,
			Extra: "  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 2\n"}},
			Extra: lab.GoBGPNeighbor{Address: "198.18.101.1", PeerAS: 65100}.String()},
	} {
		if errs := bgp.Validate("gobgp.conf", []byte(c.String())); len(errs) > 0 {
			t.Errorf("%s: %v\n%s", name, errs, c)
		}
	}
}

// The router's bgpd config carries every knob in the place FRR wants it.
func TestFRRBGPConf(t *testing.T) {
	got := lab.FRRBGPConf{AS: 65000, RouterID: "198.18.0.1", Global: []string{"bgp graceful-restart"}, MaximumPaths: 8,
		NoDefaultIPv4: true, Neighbors: []lab.FRRNeighbor{
			{Addr: "198.18.1.2", AS: 65001, Timers: "3 9", ConnectRetry: 1, Lines: []string{"neighbor 198.18.1.2 bfd"}, IPv4: true,
				IPv4Lines: []string{"neighbor 198.18.1.2 default-originate"}},
			{Addr: "2001:db8:18:1::2", AS: 65001, IPv6: true},
		}}.String()
	want := `frr defaults traditional
hostname router
log stdout informational
!
router bgp 65000
 bgp router-id 198.18.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 bgp graceful-restart
 neighbor 198.18.1.2 remote-as 65001
 neighbor 198.18.1.2 timers 3 9
 neighbor 198.18.1.2 timers connect 1
 neighbor 198.18.1.2 bfd
 neighbor 2001:db8:18:1::2 remote-as 65001
 address-family ipv4 unicast
  maximum-paths 8
  neighbor 198.18.1.2 activate
  neighbor 198.18.1.2 default-originate
 exit-address-family
 address-family ipv6 unicast
  maximum-paths 8
  neighbor 2001:db8:18:1::2 activate
 exit-address-family
!
`
	if got != want {
		t.Errorf("FRRBGPConf:\n%s\nwant:\n%s", got, want)
	}
	if s := (lab.ServiceFile{Name: "web", Addresses: []string{"203.0.113.10", "2001:db8:100::10"}, Communities: "65000:100"}).String(); !strings.Contains(s,
		`vipspeaker.io/addresses: "203.0.113.10,2001:db8:100::10"`) || !strings.Contains(s, `vipspeaker.io/communities: "65000:100"`) {
		t.Errorf("ServiceFile:\n%s", s)
	}
}
