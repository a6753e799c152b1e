package bgp

import (
	"net/netip"
	"strings"

	"github.com/osrg/gobgp/v4/pkg/config/oc"
)

// checkReferences checks names used before they are defined: peer groups,
// policies and defined sets. It works on the raw document so it can run
// before GoBGP's reader, which silently stops at an unknown peer group.
func checkReferences(v *validator, raw map[string]any) {
	names := func(list []map[string]any, kind string, path []string, key ...string) map[string]bool {
		seen := map[string]bool{}
		for i, e := range list {
			n := getString(e, key...)
			p := append(append(append([]string{}, path...), idx(i)), key...)
			if n == "" {
				v.add(v.at(p...), "%s %d has no %s", kind, i+1, key[len(key)-1])
				continue
			}
			if seen[n] {
				v.add(v.at(p...), "%s %q is defined twice", kind, n)
			}
			seen[n] = true
		}
		return seen
	}
	ds := asMap(getPath(raw, "defined-sets"))
	bds := asMap(getPath(ds, "bgp-defined-sets"))
	prefixSets := names(asList(getPath(ds, "prefix-sets")), "prefix-set", []string{"defined-sets", "prefix-sets"}, "prefix-set-name")
	neighborSets := names(asList(getPath(ds, "neighbor-sets")), "neighbor-set", []string{"defined-sets", "neighbor-sets"}, "neighbor-set-name")
	communitySets := names(asList(getPath(bds, "community-sets")), "community-set", []string{"defined-sets", "bgp-defined-sets", "community-sets"}, "community-set-name")
	extSets := names(asList(getPath(bds, "ext-community-sets")), "ext-community-set", []string{"defined-sets", "bgp-defined-sets", "ext-community-sets"}, "ext-community-set-name")
	largeSets := names(asList(getPath(bds, "large-community-sets")), "large-community-set", []string{"defined-sets", "bgp-defined-sets", "large-community-sets"}, "large-community-set-name")
	asPathSets := names(asList(getPath(bds, "as-path-sets")), "as-path-set", []string{"defined-sets", "bgp-defined-sets", "as-path-sets"}, "as-path-set-name")
	policyList := asList(getPath(raw, "policy-definitions"))
	policies := names(policyList, "policy-definition", []string{"policy-definitions"}, "name")
	pgList := asList(getPath(raw, "peer-groups"))
	peerGroups := names(pgList, "peer-group", []string{"peer-groups"}, "config", "peer-group-name")

	ref := func(defined map[string]bool, kind, name string, path ...string) {
		if name != "" && !defined[name] {
			v.add(v.at(path...), "%s %q is not defined", kind, name)
		}
	}
	applyPolicy := func(m map[string]any, path ...string) {
		for _, dir := range []string{"import-policy-list", "export-policy-list"} {
			for _, n := range getStrings(m, "apply-policy", "config", dir) {
				ref(policies, "policy", n, append(append([]string{}, path...), "apply-policy", "config", dir)...)
			}
		}
		for _, d := range []string{"default-import-policy", "default-export-policy"} {
			switch s := getString(m, "apply-policy", "config", d); s {
			case "", string(oc.DEFAULT_POLICY_TYPE_ACCEPT_ROUTE), string(oc.DEFAULT_POLICY_TYPE_REJECT_ROUTE):
			default:
				v.add(v.at(append(append([]string{}, path...), "apply-policy", "config", d)...), "%s %q: want accept-route or reject-route", d, s)
			}
		}
	}
	applyPolicy(asMap(getPath(raw, "global")), "global")
	for i, pg := range pgList {
		applyPolicy(pg, "peer-groups", idx(i))
	}
	for i, n := range asList(getPath(raw, "neighbors")) {
		if getString(n, "config", "neighbor-address") == "" && getString(n, "config", "neighbor-interface") == "" {
			v.add(v.at("neighbors", idx(i)), "neighbor %d: neighbor-address is missing", i+1)
		}
		applyPolicy(n, "neighbors", idx(i))
		ref(peerGroups, "peer-group", getString(n, "config", "peer-group"), "neighbors", idx(i), "config", "peer-group")
	}
	for i, d := range asList(getPath(raw, "dynamic-neighbors")) {
		ref(peerGroups, "peer-group", getString(d, "config", "peer-group"), "dynamic-neighbors", idx(i), "config", "peer-group")
	}
	for i, p := range policyList {
		for j, st := range asList(getPath(p, "statements")) {
			base := []string{"policy-definitions", idx(i), "statements", idx(j), "conditions"}
			c := asMap(getPath(st, "conditions"))
			at := func(keys ...string) []string { return append(append([]string{}, base...), keys...) }
			ref(prefixSets, "prefix-set", getString(c, "match-prefix-set", "prefix-set"), at("match-prefix-set", "prefix-set")...)
			ref(neighborSets, "neighbor-set", getString(c, "match-neighbor-set", "neighbor-set"), at("match-neighbor-set", "neighbor-set")...)
			ref(communitySets, "community-set", getString(c, "bgp-conditions", "match-community-set", "community-set"), at("bgp-conditions", "match-community-set", "community-set")...)
			ref(extSets, "ext-community-set", getString(c, "bgp-conditions", "match-ext-community-set", "ext-community-set"), at("bgp-conditions", "match-ext-community-set", "ext-community-set")...)
			ref(largeSets, "large-community-set", getString(c, "bgp-conditions", "match-large-community-set", "large-community-set"), at("bgp-conditions", "match-large-community-set", "large-community-set")...)
			ref(asPathSets, "as-path-set", getString(c, "bgp-conditions", "match-as-path-set", "as-path-set"), at("bgp-conditions", "match-as-path-set", "as-path-set")...)
			if cp := getString(c, "call-policy"); cp != "" {
				v.add(v.at(at("call-policy")...), "call-policy is not supported by GoBGP")
			}
		}
	}
}

// checkSemantics checks the decoded config.
func checkSemantics(v *validator, cfg *parsedConfig) {
	c := cfg.set
	g := &c.Global.Config
	if g.As == 0 {
		v.add(v.at("global", "config", "as"), "global.config.as: AS 0 is not a valid AS number")
	}
	if g.RouterId.IsValid() && !g.RouterId.Is4() {
		v.add(v.at("global", "config", "router-id"), "global.config.router-id %s: want an IPv4 address (or leave it empty for the node's own)", g.RouterId)
	}
	if g.RouterId.IsValid() && g.RouterId.IsUnspecified() {
		v.add(v.at("global", "config", "router-id"), "global.config.router-id 0.0.0.0 is not valid (leave it empty for the node's own)")
	}
	for _, section := range []struct {
		name string
		set  bool
	}{
		{"vrfs", len(c.Vrfs) > 0},
		{"bmp-servers", len(c.BmpServers) > 0},
		{"rpki-servers", len(c.RpkiServers) > 0},
		{"mrt-dump", len(c.MrtDump) > 0},
		{"collector", c.Collector.Config.Url != ""},
	} {
		if section.set {
			v.add(v.at(section.name), "%s is not supported by vipspeaker", section.name)
		}
	}

	seen := map[netip.Addr]int{}
	for i := range c.Neighbors {
		n := &c.Neighbors[i]
		path := []string{"neighbors", idx(i)}
		at := func(k ...string) int { return v.at(append(append([]string{}, path...), k...)...) }
		addr := n.Config.NeighborAddress
		name := addr.String()
		if !addr.IsValid() {
			if n.Config.NeighborInterface == "" {
				v.add(at("config", "neighbor-address"), "neighbor %d: neighbor-address is missing", i+1)
				continue
			}
			name = n.Config.NeighborInterface
		} else {
			if addr.IsUnspecified() || addr.IsMulticast() {
				v.add(at("config", "neighbor-address"), "neighbor %s: not a unicast address", addr)
			}
			if j, dup := seen[addr]; dup {
				v.add(at("config", "neighbor-address"), "neighbor %s is defined twice (first at line %d)", addr, v.at("neighbors", idx(j), "config", "neighbor-address"))
			}
			seen[addr] = i
		}
		if n.Config.PeerAs == 0 {
			v.add(at("config", "peer-as"), "neighbor %s: peer-as is missing or 0 (AS 0 is not a valid AS number)", name)
		}
		for j, af := range n.AfiSafis {
			switch af.Config.AfiSafiName {
			case oc.AFI_SAFI_TYPE_IPV4_UNICAST, oc.AFI_SAFI_TYPE_IPV6_UNICAST:
			default:
				v.add(at("afi-safis", idx(j), "config", "afi-safi-name"), "neighbor %s: afi-safi %q is not supported by vipspeaker (ipv4-unicast, ipv6-unicast)", name, af.Config.AfiSafiName)
			}
		}
		if la := n.Transport.Config.LocalAddress; la.IsValid() && addr.IsValid() && !la.IsUnspecified() && la.Is4() != addr.Is4() {
			v.add(at("transport", "config", "local-address"), "neighbor %s: local-address %s is not of the neighbor's family", name, la)
		}
		if (len(n.ApplyPolicy.Config.ImportPolicyList) > 0 || len(n.ApplyPolicy.Config.ExportPolicyList) > 0) && !n.RouteServer.Config.RouteServerClient {
			// GoBGP applies a neighbor's own policies only to route-server
			// clients; for any other neighbor they would silently do nothing
			v.add(at("apply-policy"), "neighbor %s: apply-policy on a neighbor only takes effect for route-server clients in GoBGP; use the global apply-policy with a neighbor-set condition", name)
		}
		if n.Bfd.Config.Enabled && n.EbgpMultihop.Config.Enabled {
			v.add(at("bfd", "config", "enabled"), "neighbor %s: BFD is single-hop only; it cannot be used with ebgp-multihop", name)
		}
		if pw := n.Config.AuthPassword; pw != "" {
			secret, file, err := readPassword(pw)
			if err != nil {
				v.add(at("config", "auth-password"), "neighbor %s: auth-password: %v", name, err)
			} else if file != "" {
				n.Config.AuthPassword = secret
				cfg.passwordFiles[name] = file
			}
		}
	}
	for i := range c.PeerGroups {
		pg := &c.PeerGroups[i]
		if pw := pg.Config.AuthPassword; pw != "" {
			secret, file, err := readPassword(pw)
			if err != nil {
				v.add(v.at("peer-groups", idx(i), "config", "auth-password"), "peer-group %s: auth-password: %v", pg.Config.PeerGroupName, err)
			} else if file != "" {
				pg.Config.AuthPassword = secret
				cfg.passwordFiles[pg.Config.PeerGroupName] = file
			}
		}
	}
	for i, d := range c.DynamicNeighbors {
		if !d.Config.Prefix.IsValid() {
			v.add(v.at("dynamic-neighbors", idx(i), "config", "prefix"), "dynamic-neighbor %d: prefix is missing", i+1)
		}
	}
	for i, ps := range c.DefinedSets.PrefixSets {
		for j, p := range ps.PrefixList {
			at := v.at("defined-sets", "prefix-sets", idx(i), "prefix-list", idx(j))
			if !p.IpPrefix.IsValid() {
				v.add(at, "prefix-set %s: ip-prefix is missing", ps.PrefixSetName)
				continue
			}
			if p.IpPrefix.Masked() != p.IpPrefix {
				v.add(at, "prefix-set %s: %s has host bits set (did you mean %s?)", ps.PrefixSetName, p.IpPrefix, p.IpPrefix.Masked())
			}
			if p.MasklengthRange != "" {
				if _, _, err := oc.ParseMaskLength(p.IpPrefix.String(), p.MasklengthRange); err != nil {
					v.add(at, "prefix-set %s: masklength-range %q: %v", ps.PrefixSetName, p.MasklengthRange, err)
				}
			}
		}
	}
	for i, ns := range c.DefinedSets.NeighborSets {
		for _, s := range ns.NeighborInfoList {
			if !isIP(s) {
				if _, err := netip.ParsePrefix(s); err != nil {
					v.add(v.at("defined-sets", "neighbor-sets", idx(i), "neighbor-info-list"), "neighbor-set %s: %q is not an address or prefix", ns.NeighborSetName, s)
				}
			}
		}
	}
	if z := c.Zebra.Config; z.Enabled && z.Version >= 6 && z.SoftwareName == "" {
		v.add(v.at("zebra", "config"), "zebra: software-name must be set for version %d (for FRR 8.4: \"frr8.4\")", z.Version)
	}
}

// checkPolicies converts the policies the way Apply will and reports what
// fails, at the policy's line.
func checkPolicies(v *validator, c *oc.BgpConfigSet) {
	for i := range c.PolicyDefinitions {
		if _, err := apiPolicy(&c.PolicyDefinitions[i]); err != nil {
			v.add(v.at("policy-definitions", idx(i)), "%v", err)
		}
	}
	if len(v.errs) > 0 {
		return
	}
	if err := policyEngineCheck(c); err != nil {
		line := v.at("policy-definitions")
		if len(c.PolicyDefinitions) == 0 {
			line = v.at("defined-sets")
		}
		// name the set or policy the engine complained about, if it did
		for i, ps := range c.DefinedSets.PrefixSets {
			if strings.Contains(err.Error(), ps.PrefixSetName) {
				line = v.at("defined-sets", "prefix-sets", idx(i))
			}
		}
		for _, kind := range []struct {
			key   string
			names []string
		}{
			{"community-sets", namesOf(c.DefinedSets.BgpDefinedSets.CommunitySets, func(s oc.CommunitySet) string { return s.CommunitySetName })},
			{"ext-community-sets", namesOf(c.DefinedSets.BgpDefinedSets.ExtCommunitySets, func(s oc.ExtCommunitySet) string { return s.ExtCommunitySetName })},
			{"large-community-sets", namesOf(c.DefinedSets.BgpDefinedSets.LargeCommunitySets, func(s oc.LargeCommunitySet) string { return s.LargeCommunitySetName })},
			{"as-path-sets", namesOf(c.DefinedSets.BgpDefinedSets.AsPathSets, func(s oc.AsPathSet) string { return s.AsPathSetName })},
		} {
			for i, n := range kind.names {
				if n != "" && strings.Contains(err.Error(), n) {
					line = v.at("defined-sets", "bgp-defined-sets", kind.key, idx(i))
				}
			}
		}
		v.add(line, "policy: %v", err)
	}
}

func namesOf[T any](l []T, name func(T) string) []string {
	out := make([]string, 0, len(l))
	for _, e := range l {
		out = append(out, name(e))
	}
	return out
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}
