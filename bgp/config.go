package bgp

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/osrg/gobgp/v4/pkg/config/oc"
	"github.com/pelletier/go-toml/v2"
)

// ConfigError is one problem of a config file, at a line.
type ConfigError struct {
	File string
	Line int
	Msg  string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// parsedConfig is a parsed and fully validated gobgp.conf.
type parsedConfig struct {
	File string
	set  *oc.BgpConfigSet
	// passwordFiles maps a neighbor address (or peer-group name) to the file
	// its auth-password was read from, for log messages.
	passwordFiles map[string]string
	pos           *positions
	// filled by the server before the config runs
	routerIDChosen bool
	nh6            netip.Addr
}

// Validate checks a gobgp.conf (its name is used in the messages) exactly as
// Server.Apply does before it touches anything, and returns every problem
// found as a *ConfigError ("file:line: problem"). Nil means valid.
//
// An auth-password of the form secret:NAME/KEY is checked for its form only:
// offline no Secret can be read (the agent in cluster mode reads it).
func Validate(file string, data []byte) []error {
	data, errs := ResolvePasswordRefs(file, data, func(string, string) (string, error) { return "secret-not-read-offline", nil })
	if len(errs) > 0 {
		return errs
	}
	_, errs = parseConfig(file, data)
	return errs
}

// defaultDeferral is the graceful-restart deferral-time (seconds) used when
// gobgp.conf does not set one.
const defaultDeferral = 10

// emptyRouterID matches `router-id = ""` (only [global.config] has the key).
var emptyRouterID = regexp.MustCompile(`(?m)^([ \t]*)router-id[ \t]*=[ \t]*(""|'')[ \t]*(#.*)?$`)

// blankEmptyRouterID turns an explicitly empty router-id into a comment, so
// it means what leaving it out means (the node's own address) — GoBGP's
// reader would refuse the empty string. Lines keep their numbers.
func blankEmptyRouterID(data []byte) []byte {
	return emptyRouterID.ReplaceAll(data, []byte("${1}# router-id empty: the node's own address"))
}

// viperMu serialises GoBGP's config reader: it keeps a package-level map of
// peer-group member fields.
var viperMu sync.Mutex

type validator struct {
	file string
	pos  *positions
	errs []error
}

func (v *validator) add(line int, format string, args ...any) {
	v.errs = append(v.errs, &ConfigError{File: v.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) at(path ...string) int { return v.pos.line(path...) }

func idx(i int) string { return strconv.Itoa(i) }

// parseConfig reads and validates data. Either the config or errors is
// returned, never both.
func parseConfig(file string, data []byte) (*parsedConfig, []error) {
	v := &validator{file: file}
	data = blankEmptyRouterID(data)

	// 1. syntax, with the decoder's own position
	var raw map[string]any
	if err := toml.Unmarshal(data, &raw); err != nil {
		var de *toml.DecodeError
		line := 1
		if errors.As(err, &de) {
			line, _ = de.Position()
		}
		v.add(line, "invalid TOML: %s", tomlMessage(err))
		return nil, v.errs
	}
	v.pos = indexPositions(data)

	// 2. every key must be one gobgpd knows
	checkKeys(v, reflect.TypeFor[oc.BgpConfigSet](), raw, nil)
	if len(v.errs) > 0 {
		return nil, v.errs
	}

	// 3. references first: GoBGP's reader stops quietly at an unknown
	// peer group
	checkReferences(v, raw)
	if len(v.errs) > 0 {
		return nil, v.errs
	}

	// 4. GoBGP's own reader (types, addresses, defaults)
	viperMu.Lock()
	set, err := oc.ReadConfig(bytes.NewReader(data), "toml")
	viperMu.Unlock()
	if err != nil {
		readerErrors(v, err)
		return nil, v.errs
	}

	// GoBGP fills the default global families from a map: put them in a
	// stable order so two reads of one file compare equal
	sort.Slice(set.Global.AfiSafis, func(i, j int) bool {
		return set.Global.AfiSafis[i].Config.AfiSafiName < set.Global.AfiSafis[j].Config.AfiSafiName
	})

	// A speaker that only originates routes has nothing to wait for after
	// a restart but its peers' End-of-RIB; GoBGP's default deferral of
	// 360 s would hold our routes back that long from every peer whenever
	// one graceful-restart peer is down. Unless the file says otherwise,
	// wait at most defaultDeferral.
	for i := range set.Neighbors {
		n := &set.Neighbors[i]
		if n.GracefulRestart.Config.Enabled && !v.pos.has("neighbors", idx(i), "graceful-restart", "config", "deferral-time") {
			n.GracefulRestart.Config.DeferralTime = defaultDeferral
		}
	}

	// 5. what the reader accepts but a running speaker must not
	cfg := &parsedConfig{File: file, set: set, passwordFiles: map[string]string{}, pos: v.pos}
	checkSemantics(v, cfg)
	if len(v.errs) > 0 {
		return nil, v.errs
	}

	// 6. policies as GoBGP's policy engine sees them
	checkPolicies(v, set)
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return cfg, nil
}

func tomlMessage(err error) string {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		return de.Error()
	}
	return err.Error()
}

// checkKeys walks the decoded document beside GoBGP's config types and
// reports keys that have no field (gobgpd's reader rejects them too, but
// without a line).
func checkKeys(v *validator, t reflect.Type, val any, path []string) {
	switch t.Kind() {
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			if t == reflect.TypeFor[netip.Addr]() || t == reflect.TypeFor[netip.Prefix]() {
				return
			}
			v.add(v.at(path...), "%s: want a table", strings.Join(path, "."))
			return
		}
		fields := make(map[string]reflect.StructField, t.NumField())
		for i := range t.NumField() {
			f := t.Field(i)
			if tag := f.Tag.Get("mapstructure"); tag != "" {
				fields[strings.ToLower(tag)] = f
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := append(append([]string{}, path...), k)
			f, ok := fields[strings.ToLower(k)]
			if !ok {
				where := "top level"
				if len(path) > 0 {
					where = "[" + strings.Join(path, ".") + "]"
				}
				v.add(v.at(p...), "unknown key %q in %s", k, where)
				continue
			}
			checkKeys(v, f.Type, m[k], p)
		}
	case reflect.Slice:
		if t.Elem().Kind() != reflect.Struct {
			return
		}
		var list []any
		switch l := val.(type) {
		case []any:
			list = l
		case []map[string]any:
			for _, e := range l {
				list = append(list, e)
			}
		default:
			v.add(v.at(path...), "%s: want an array of tables", strings.Join(path, "."))
			return
		}
		for i, e := range list {
			checkKeys(v, t.Elem(), e, append(append([]string{}, path...), idx(i)))
		}
	}
}

// GoBGP's reader (viper + mapstructure) names the failing field as
// 'neighbors[0].config.neighbor-address'.
var fieldRE = regexp.MustCompile(`'([a-z0-9\-\[\]\.]+)'`)

func readerErrors(v *validator, err error) {
	msg := err.Error()
	found := false
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "*"))
		m := fieldRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		found = true
		v.add(v.pos.lineDotted(m[1]), "%s", strings.TrimSpace(l))
	}
	if !found {
		v.add(1, "%s", msg)
	}
}

func asMap(x any) map[string]any {
	m, _ := x.(map[string]any)
	return m
}

func asList(x any) []map[string]any {
	switch l := x.(type) {
	case []any:
		out := make([]map[string]any, 0, len(l))
		for _, e := range l {
			out = append(out, asMap(e))
		}
		return out
	case []map[string]any:
		return l
	}
	return nil
}

func getPath(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		mm := asMap(cur)
		if mm == nil {
			return nil
		}
		var next any
		for kk, vv := range mm {
			if strings.EqualFold(kk, k) {
				next = vv
			}
		}
		cur = next
	}
	return cur
}

func getString(m map[string]any, keys ...string) string {
	s, _ := getPath(m, keys...).(string)
	return s
}

func getStrings(m map[string]any, keys ...string) []string {
	var out []string
	if l, ok := getPath(m, keys...).([]any); ok {
		for _, e := range l {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

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

// readPassword resolves an auth-password: an absolute path names a file (a
// mounted Secret) holding the password; secret:NAME/KEY names a Kubernetes
// Secret, which only the agent in cluster mode reads (it replaces the
// reference before the file gets here, see ResolvePasswordRefs); anything
// else is the password.
func readPassword(pw string) (secret, file string, err error) {
	if strings.HasPrefix(pw, secretRefPrefix) {
		return "", "", fmt.Errorf("%q names a Kubernetes Secret: only the agent in cluster mode reads it (through the API server); here give the password or the absolute path of a file holding it", pw)
	}
	if !strings.HasPrefix(pw, "/") {
		return pw, "", nil
	}
	b, err := os.ReadFile(pw)
	if err != nil {
		return "", "", fmt.Errorf("read password file: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", "", fmt.Errorf("password file %s is empty", pw)
	}
	if len(s) > 80 {
		return "", "", fmt.Errorf("password in %s is longer than the 80 bytes TCP MD5 allows", pw)
	}
	return s, pw, nil
}

// secretRefPrefix starts an auth-password naming a key of a Kubernetes
// Secret in the agent's namespace: secret:NAME/KEY (config.ParseSecretRef
// reads the same form in vipspeaker.toml).
const secretRefPrefix = "secret:"

var (
	// passwordRefRE finds auth-password = "secret:..." (or '...') on a line.
	passwordRefRE = regexp.MustCompile(`(auth-password[ \t]*=[ \t]*)(?:"secret:([^"\\]*)"|'secret:([^']*)')`)
	secretNameRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	secretKeyRE   = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
)

// ResolvePasswordRefs replaces every auth-password = "secret:NAME/KEY" of a
// gobgp.conf (file names it in messages) with the value resolve returns for
// that Secret and key, quoted for TOML, so every line keeps its number. The
// errors (a malformed reference, what resolve returned) are *ConfigError at
// the reference's line; they never hold a value. Cluster mode resolves
// through the API server; Validate with a stand-in, since offline nothing
// can be read.
func ResolvePasswordRefs(file string, data []byte, resolve func(name, key string) (string, error)) ([]byte, []error) {
	if !bytes.Contains(data, []byte(secretRefPrefix)) {
		return data, nil
	}
	var errs []error
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, line := range lines {
		if !bytes.Contains(line, []byte(secretRefPrefix)) {
			continue
		}
		lines[i] = passwordRefRE.ReplaceAllFunc(line, func(m []byte) []byte {
			sub := passwordRefRE.FindSubmatch(m)
			ref := string(sub[2])
			if len(sub[3]) > 0 {
				ref = string(sub[3])
			}
			name, key, ok := strings.Cut(ref, "/")
			if !ok || len(name) > 253 || !secretNameRE.MatchString(name) || len(key) > 253 || !secretKeyRE.MatchString(key) {
				errs = append(errs, &ConfigError{File: file, Line: i + 1, Msg: fmt.Sprintf("auth-password: %q: want secret:NAME/KEY (a Secret of the agent's namespace and one of its keys)", secretRefPrefix+ref)})
				return m
			}
			v, err := resolve(name, key)
			if err == nil && v == "" {
				err = errors.New("the value is empty")
			}
			if err == nil && len(v) > 80 {
				err = errors.New("the value is longer than the 80 bytes TCP MD5 allows")
			}
			if err != nil {
				errs = append(errs, &ConfigError{File: file, Line: i + 1, Msg: fmt.Sprintf("auth-password: %s%s: %v", secretRefPrefix, ref, err)})
				return m
			}
			return append(slices.Clone(sub[1]), tomlQuote(v)...)
		})
	}
	if len(errs) > 0 {
		return data, errs
	}
	return bytes.Join(lines, nil), nil
}

// tomlQuote writes s as a TOML basic string.
func tomlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
