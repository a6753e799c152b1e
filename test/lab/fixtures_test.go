package lab_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/config"
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
	// each line after the one before it
	at := 0
	for _, w := range []string{"router bgp 65000\n", " bgp router-id 198.18.0.1\n", " no bgp default ipv4-unicast\n", " bgp graceful-restart\n",
		" neighbor 198.18.1.2 timers 3 9\n", " neighbor 198.18.1.2 timers connect 1\n", " neighbor 198.18.1.2 bfd\n",
		" address-family ipv4 unicast\n  maximum-paths 8\n  neighbor 198.18.1.2 activate\n  neighbor 198.18.1.2 default-originate\n exit-address-family\n",
		" address-family ipv6 unicast\n  maximum-paths 8\n  neighbor 2001:db8:18:1::2 activate\n exit-address-family\n"} {
		i := strings.Index(got[at:], w)
		if i < 0 {
			t.Fatalf("FRRBGPConf lacks %q after byte %d:\n%s", w, at, got)
		}
		at += i + len(w)
	}
	if s := (lab.ServiceFile{Name: "web", Addresses: []string{"203.0.113.10", "2001:db8:100::10"}, Communities: "65000:100"}).String(); !strings.Contains(s,
		`vipspeaker.io/addresses: "203.0.113.10,2001:db8:100::10"`) || !strings.Contains(s, `vipspeaker.io/communities: "65000:100"`) {
		t.Errorf("ServiceFile:\n%s", s)
	}
}

// The vipspeaker.toml fixture is one the agent accepts, pools as written.
func TestAgentTOMLIsValid(t *testing.T) {
	text := lab.AgentTOML{DefaultClass: "false", Pools: []lab.Pool{
		{Name: "public", Addresses: []string{"203.0.113.0/28", "2001:db8:100::/124"}},
		{Name: "flat", Addresses: []string{"198.51.100.0/28"}, Manual: true, Layer2Interfaces: []string{"eth0"}},
	}, Extra: "[layer2]\nfast-path = \"off\"\n"}.String()
	c, errs := config.Parse("vipspeaker.toml", []byte(text))
	if len(errs) > 0 {
		t.Fatalf("%v\n%s", errs, text)
	}
	if len(c.Pools) != 2 || c.Pools[0].Name != "public" || c.Pools[1].Name != "flat" {
		t.Errorf("pools %+v\n%s", c.Pools, text)
	}
}

// [layer2] and [membership] from Layer2TOML and Membership read back as
// written; DummyInterface leaves kube-lb0 to the agent's default kind.
func TestAgentTOMLLayer2AndMembership(t *testing.T) {
	text := lab.AgentTOML{DummyInterface: true,
		Pools:      []lab.Pool{{Name: "flat", Addresses: []string{"203.0.113.0/28"}, Layer2Interfaces: []string{"eth0"}}},
		Layer2:     &lab.Layer2TOML{GratuitousCount: 2, GratuitousInterval: "100ms", FastPath: "off", PinDir: "/tmp/pins"},
		Membership: &lab.Membership{Join: []string{"198.18.2.10", "198.18.2.11"}, SecretFile: "/etc/vipspeaker/key"},
	}.String()
	c, errs := config.Parse("vipspeaker.toml", []byte(text))
	if len(errs) > 0 {
		t.Fatalf("%v\n%s", errs, text)
	}
	if c.Interface.Kind != config.DefaultInterfaceKind {
		t.Errorf("interface kind %q, want the default %q\n%s", c.Interface.Kind, config.DefaultInterfaceKind, text)
	}
	l2 := config.Layer2{GratuitousCount: 2, GratuitousInterval: 100 * time.Millisecond, FastPath: config.FastPathOff, PinDir: "/tmp/pins"}
	if c.Layer2 != l2 {
		t.Errorf("[layer2] %+v, want %+v\n%s", c.Layer2, l2, text)
	}
	if !slices.Equal(c.Membership.Join, []string{"198.18.2.10", "198.18.2.11"}) || c.Membership.SecretFile != "/etc/vipspeaker/key" {
		t.Errorf("[membership] %+v\n%s", c.Membership, text)
	}
}
