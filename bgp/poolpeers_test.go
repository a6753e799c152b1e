package bgp

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/osrg/gobgp/v4/pkg/config/oc"

	"github.com/vipspeaker/vipspeaker/routing"
)

// The pool-peers policy comes after the user's own, holds a statement per
// pool and family, names each pool's neighbors (an unnumbered one by its
// router's link-local address, once known) and is accepted by GoBGP's
// policy engine. The accepted config it was derived from is not changed.
func TestAddPoolPeers(t *testing.T) {
	const conf = `[global.config]
  as = 65001
  router-id = "198.18.1.2"
[global.apply-policy.config]
  export-policy-list = ["mine"]
[[policy-definitions]]
  name = "mine"
  [[policy-definitions.statements]]
    name = "all"
    [policy-definitions.statements.actions.bgp-actions.set-community]
      options = "add"
      [policy-definitions.statements.actions.bgp-actions.set-community.set-community-method]
        communities-list = ["65001:7"]
`
	wanted, errs := parseConfig("gobgp.conf", []byte(conf))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	s := &Server{linkLocal: map[string]netip.Addr{}, poolPeers: []routing.PoolPeers{
		{Pool: "a", Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/25"), netip.MustParsePrefix("2001:db8:100::/120")},
			Peers: []string{"198.18.0.1", "2001:db8:18::1"}},
		{Pool: "b", Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.128/25")}, Peers: []string{"eth1"}},
	}}
	build := func() *parsedConfig {
		cfg := s.withoutHidden(wanted)
		s.addPoolPeers(cfg)
		s.addPoolPeers(cfg) // a config resolved twice gets it once
		return cfg
	}
	cfg := build()
	if diff := cmp.Diff([]string{"mine", poolPeersPolicy}, cfg.set.Global.ApplyPolicy.Config.ExportPolicyList); diff != "" {
		t.Errorf("export policies (-want +got):\n%s", diff)
	}
	if err := policyEngineCheck(cfg.set); err != nil {
		t.Fatalf("GoBGP's policy engine refuses the config: %v", err)
	}
	if got := wanted.set.Global.ApplyPolicy.Config.ExportPolicyList; !slices.Equal(got, []string{"mine"}) || len(wanted.set.PolicyDefinitions) != 1 {
		t.Errorf("the accepted config changed: export %v, %d policies", got, len(wanted.set.PolicyDefinitions))
	}
	var stmts []string
	for _, p := range cfg.set.PolicyDefinitions {
		if p.Name == poolPeersPolicy {
			for _, st := range p.Statements {
				c := st.Conditions
				stmts = append(stmts, c.MatchPrefixSet.PrefixSet+" "+c.MatchNeighborSet.NeighborSet+" "+
					string(c.MatchNeighborSet.MatchSetOptions)+" "+string(c.BgpConditions.RouteType)+" "+string(st.Actions.RouteDisposition))
			}
		}
	}
	want := []string{
		"vipspeaker-pool-a-v4 vipspeaker-pool-a-peers invert local reject-route",
		"vipspeaker-pool-a-v6 vipspeaker-pool-a-peers invert local reject-route",
		"vipspeaker-pool-b-v4 vipspeaker-pool-b-peers invert local reject-route",
	}
	if diff := cmp.Diff(want, stmts); diff != "" {
		t.Errorf("statements (-want +got):\n%s", diff)
	}
	neighbors := func(cfg *parsedConfig) map[string][]string {
		out := map[string][]string{}
		for _, ns := range cfg.set.DefinedSets.NeighborSets {
			out[ns.NeighborSetName] = ns.NeighborInfoList
		}
		return out
	}
	if diff := cmp.Diff(map[string][]string{
		"vipspeaker-pool-a-peers": {"198.18.0.1/32", "2001:db8:18::1/128"},
		"vipspeaker-pool-b-peers": {poolNobody}, // eth1's router not heard: b goes nowhere
	}, neighbors(cfg)); diff != "" {
		t.Errorf("neighbor sets (-want +got):\n%s", diff)
	}
	var v6 []oc.Prefix
	for _, ps := range cfg.set.DefinedSets.PrefixSets {
		if ps.PrefixSetName == "vipspeaker-pool-a-v6" {
			v6 = ps.PrefixList
		}
	}
	if len(v6) != 1 || v6[0].MasklengthRange != "120..128" {
		t.Errorf("pool a's IPv6 prefix set: %+v, want 2001:db8:100::/120 with lengths 120..128", v6)
	}

	// eth1's router becomes known: the policy in force is stale until it
	// is built again
	s.cur = cfg
	if s.poolPeersStaleLocked() {
		t.Fatal("stale before anything changed")
	}
	s.linkLocal["eth1"] = netip.MustParseAddr("fe80::1").WithZone("eth1")
	if !s.poolPeersStaleLocked() {
		t.Fatal("not stale after eth1's router was heard")
	}
	if got := neighbors(build())["vipspeaker-pool-b-peers"]; !slices.Equal(got, []string{"fe80::1/128"}) {
		t.Errorf("pool b's neighbors once eth1's router is known: %v", got)
	}
}
