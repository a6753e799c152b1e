package lab

import (
	"fmt"
	"strings"
)

// The config fixtures of the lab's topologies: the agents' gobgp.conf (and
// gobgpd's), the router's FRR bgpd config and standalone Service manifests,
// each built from the handful of knobs the suites vary. Zero values leave a
// setting out, so the daemon's own default applies.

// GoBGPConf is a gobgp.conf (GoBGP's TOML), for a vipspeaker agent or for
// gobgpd.
type GoBGPConf struct {
	AS int
	// RouterID "" leaves it out (the agent then uses the node's address).
	RouterID string
	// MultiPath turns on global.use-multiple-paths.
	MultiPath bool
	Neighbors []GoBGPNeighbor
	// Extra is TOML appended after the neighbors: defined sets, policies,
	// [global.apply-policy.config], [zebra.config].
	Extra string
}

// GoBGPNeighbor is one [[neighbors]] entry of GoBGPConf.
type GoBGPNeighbor struct {
	Address string
	// Interface, instead of Address, makes an unnumbered neighbor
	// (neighbor-interface).
	Interface string
	PeerAS    int
	// Timers in seconds; 0 leaves GoBGP's default.
	ConnectRetry, HoldTime, KeepaliveInterval, IdleHoldTimeAfterReset int
	// GracefulRestart: graceful restart with restart-time 30, and
	// mp-graceful-restart on every family.
	GracefulRestart bool
	// BFD: single-hop BFD, 100 ms × 3 (LAB.md).
	BFD bool
	// Families are afi-safi names; nil means ipv4-unicast only, empty
	// (not nil) writes no afi-safis (GoBGP's default).
	Families []string
	// Extra is TOML inside this neighbor, after its config tables and
	// before its families (ebgp-multihop, transport, auth-password...).
	Extra string
}

// FastTimers are the lab's usual session timers: connect retry 1 s, hold
// 9 s, keepalive 3 s, idle hold after reset 1 s.
func (n GoBGPNeighbor) FastTimers() GoBGPNeighbor {
	n.ConnectRetry, n.HoldTime, n.KeepaliveInterval, n.IdleHoldTimeAfterReset = 1, 9, 3, 1
	return n
}

// BothFamilies are the afi-safi names of an IPv4 transport session that
// carries both families.
var BothFamilies = []string{"ipv4-unicast", "ipv6-unicast"}

func (c GoBGPConf) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global.config]\n  as = %d\n", c.AS)
	if c.RouterID != "" {
		fmt.Fprintf(&b, "  router-id = %q\n", c.RouterID)
	}
	if c.MultiPath {
		b.WriteString("\n[global.use-multiple-paths.config]\n  enabled = true\n")
	}
	for _, n := range c.Neighbors {
		b.WriteString("\n")
		n.write(&b)
	}
	if c.Extra != "" {
		b.WriteString("\n" + withNewline(c.Extra))
	}
	return b.String()
}

// String is the neighbor's [[neighbors]] table, to add a neighbor through
// GoBGPConf.Extra.
func (n GoBGPNeighbor) String() string {
	var b strings.Builder
	n.write(&b)
	return b.String()
}

func (n GoBGPNeighbor) write(b *strings.Builder) {
	key, addr := "neighbor-address", n.Address
	if n.Interface != "" {
		key, addr = "neighbor-interface", n.Interface
	}
	fmt.Fprintf(b, "[[neighbors]]\n  [neighbors.config]\n    %s = %q\n    peer-as = %d\n", key, addr, n.PeerAS)
	var timers []string
	for _, t := range []struct {
		key string
		v   int
	}{{"connect-retry", n.ConnectRetry}, {"hold-time", n.HoldTime}, {"keepalive-interval", n.KeepaliveInterval},
		{"idle-hold-time-after-reset", n.IdleHoldTimeAfterReset}} {
		if t.v != 0 {
			timers = append(timers, fmt.Sprintf("    %s = %d\n", t.key, t.v))
		}
	}
	if len(timers) > 0 {
		b.WriteString("  [neighbors.timers.config]\n" + strings.Join(timers, ""))
	}
	if n.BFD {
		b.WriteString("  [neighbors.bfd.config]\n    enabled = true\n    desired-minimum-tx-interval = 100000\n" +
			"    required-minimum-receive = 100000\n    detection-multiplier = 3\n")
	}
	if n.GracefulRestart {
		b.WriteString("  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 30\n")
	}
	b.WriteString(withNewline(n.Extra))
	fams := n.Families
	if fams == nil {
		fams = []string{"ipv4-unicast"}
	}
	for _, f := range fams {
		fmt.Fprintf(b, "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = %q\n", f)
		if n.GracefulRestart {
			b.WriteString("    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n")
		}
	}
}

// GoBGPZebra is the [zebra.config] table that makes GoBGP a client of
// FRR's zebra at socket (FRR 8.4: ZAPI version 6, LAB.md), taking
// connected routes.
func GoBGPZebra(socket string) string {
	return fmt.Sprintf("[zebra.config]\n  enabled = true\n  url = \"unix:%s\"\n  redistribute-route-type-list = [\"connect\"]\n"+
		"  version = 6\n  software-name = \"frr8.4\"\n", socket)
}

// FRRBGPConf is the router's bgpd config for FRRConfig.BGPd: one `router
// bgp` with no policy required on eBGP, the neighbors, and the IPv4 and
// IPv6 unicast families.
type FRRBGPConf struct {
	Hostname string // default "router"
	AS       int
	RouterID string
	// Global are more lines under `router bgp`, before the neighbors
	// ("bgp graceful-restart").
	Global    []string
	Neighbors []FRRNeighbor
	// MaximumPaths and MaximumPathsIBGP set ECMP in both families; 0
	// leaves FRR's default.
	MaximumPaths, MaximumPathsIBGP int
	// NoDefaultIPv4 writes `no bgp default ipv4-unicast`: only neighbors
	// with IPv4 set carry IPv4.
	NoDefaultIPv4 bool
}

// FRRNeighbor is one neighbor of FRRBGPConf.
type FRRNeighbor struct {
	Addr string
	AS   int
	// Timers is "KEEPALIVE HOLD" ("" for FRR's default); ConnectRetry in
	// seconds (0: FRR's 120 s).
	Timers       string
	ConnectRetry int
	// Lines are more lines under `router bgp`, each whole ("neighbor ADDR
	// bfd").
	Lines []string
	// IPv4 activates the neighbor in ipv4 unicast (needed only with
	// NoDefaultIPv4), IPv6 in ipv6 unicast; IPv4Lines and IPv6Lines go into
	// those families.
	IPv4, IPv6           bool
	IPv4Lines, IPv6Lines []string
}

func (c FRRBGPConf) String() string {
	host := c.Hostname
	if host == "" {
		host = "router"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults traditional\nhostname %s\nlog stdout informational\n!\nrouter bgp %d\n bgp router-id %s\n"+
		" no bgp ebgp-requires-policy\n no bgp network import-check\n", host, c.AS, c.RouterID)
	if c.NoDefaultIPv4 {
		b.WriteString(" no bgp default ipv4-unicast\n")
	}
	lines(&b, " ", c.Global)
	v6 := false
	for _, n := range c.Neighbors {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n", n.Addr, n.AS)
		if n.Timers != "" {
			fmt.Fprintf(&b, " neighbor %s timers %s\n", n.Addr, n.Timers)
		}
		if n.ConnectRetry != 0 {
			fmt.Fprintf(&b, " neighbor %s timers connect %d\n", n.Addr, n.ConnectRetry)
		}
		lines(&b, " ", n.Lines)
		v6 = v6 || n.IPv6 || len(n.IPv6Lines) > 0
	}
	family := func(afi string, activate func(FRRNeighbor) bool, more func(FRRNeighbor) []string) {
		fmt.Fprintf(&b, " address-family %s unicast\n", afi)
		if c.MaximumPaths != 0 {
			fmt.Fprintf(&b, "  maximum-paths %d\n", c.MaximumPaths)
		}
		if c.MaximumPathsIBGP != 0 {
			fmt.Fprintf(&b, "  maximum-paths ibgp %d\n", c.MaximumPathsIBGP)
		}
		for _, n := range c.Neighbors {
			if activate(n) {
				fmt.Fprintf(&b, "  neighbor %s activate\n", n.Addr)
			}
			lines(&b, "  ", more(n))
		}
		b.WriteString(" exit-address-family\n")
	}
	family("ipv4", func(n FRRNeighbor) bool { return c.NoDefaultIPv4 && n.IPv4 }, func(n FRRNeighbor) []string { return n.IPv4Lines })
	if v6 {
		family("ipv6", func(n FRRNeighbor) bool { return n.IPv6 }, func(n FRRNeighbor) []string { return n.IPv6Lines })
	}
	b.WriteString("!\n")
	return b.String()
}

// FRRFastBFD is bfdd's config for FRRConfig.BFDd: profile "fast", 100 ms
// × 3 (LAB.md). Neighbors use it with "neighbor ADDR bfd" and "neighbor
// ADDR bfd profile fast".
const FRRFastBFD = "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n !\n!\n"

// ServiceFile is a LoadBalancer Service manifest for an agent's services
// folder (standalone mode): its VIPs from the vipspeaker.io/addresses
// annotation, port 80.
type ServiceFile struct {
	Name      string
	Namespace string // default "demo"
	Addresses []string
	// Communities, comma separated, for vipspeaker.io/communities.
	Communities string
	// Class is spec.loadBalancerClass ("" for none).
	Class string
	// Pool names the pool (vipspeaker.io/pool; "" for none).
	Pool string
}

func (s ServiceFile) String() string {
	ns := s.Namespace
	if ns == "" {
		ns = "demo"
	}
	ann := fmt.Sprintf("    vipspeaker.io/addresses: %q\n", strings.Join(s.Addresses, ","))
	if s.Communities != "" {
		ann += fmt.Sprintf("    vipspeaker.io/communities: %q\n", s.Communities)
	}
	if s.Pool != "" {
		ann += fmt.Sprintf("    vipspeaker.io/pool: %s\n", s.Pool)
	}
	class := ""
	if s.Class != "" {
		class = "  loadBalancerClass: " + s.Class + "\n"
	}
	return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: %s\n  namespace: %s\n  annotations:\n%s"+
		"spec:\n  type: LoadBalancer\n%s  ports:\n  - port: 80\n", s.Name, ns, ann, class)
}

// IfbInterfaceTOML is the [interface] table of vipspeaker.toml for the
// lab's kernel, which has no dummy link type (LAB.md): kube-lb0 as ifb.
const IfbInterfaceTOML = "[interface]\nname = \"kube-lb0\"\nkind = \"ifb\"\n"

// AgentTOML is a vipspeaker.toml: default-class, kube-lb0 as ifb, the
// pools, [layer2], [membership], and Extra at the end.
type AgentTOML struct {
	// DefaultClass is "true" or "false" for default-class; "" leaves it
	// out.
	DefaultClass string
	// DummyInterface leaves [interface] out: the agent's default, kube-lb0
	// as dummy.
	DummyInterface bool
	Pools          []Pool
	Layer2         *Layer2TOML
	Membership     *Membership
	Extra          string
}

// Layer2TOML is the [layer2] table of AgentTOML; zero values leave a key
// out.
type Layer2TOML struct {
	GratuitousCount    int
	GratuitousInterval string // "100ms"
	FastPath           string // "auto", "xdp", "off"
	PinDir             string
}

// Membership is the [membership] table of AgentTOML; zero values leave a
// key out.
type Membership struct {
	Join       []string
	SecretFile string
}

// Pool is one [[pools]] entry of AgentTOML.
type Pool struct {
	Name      string
	Addresses []string
	// Manual: auto-assign = false (a Service asks for the pool by
	// annotation).
	Manual bool
	// Layer2Interfaces make it a layer2 pool answered on them.
	Layer2Interfaces []string
}

func (c AgentTOML) String() string {
	var b strings.Builder
	if c.DefaultClass != "" {
		fmt.Fprintf(&b, "default-class = %s\n\n", c.DefaultClass)
	}
	if !c.DummyInterface {
		b.WriteString(IfbInterfaceTOML)
	}
	for _, p := range c.Pools {
		fmt.Fprintf(&b, "\n[[pools]]\nname = %q\naddresses = %s\n", p.Name, tomlList(p.Addresses))
		if len(p.Layer2Interfaces) > 0 {
			b.WriteString("mode = \"layer2\"\n")
		}
		if p.Manual {
			b.WriteString("auto-assign = false\n")
		}
		if len(p.Layer2Interfaces) > 0 {
			fmt.Fprintf(&b, "  [pools.layer2]\n  interfaces = %s\n", tomlList(p.Layer2Interfaces))
		}
	}
	if l := c.Layer2; l != nil {
		b.WriteString("\n[layer2]\n")
		keys(&b, []string{"gratuitous-count", "gratuitous-interval", "fast-path", "pin-dir"},
			l.GratuitousCount, l.GratuitousInterval, l.FastPath, l.PinDir)
	}
	if m := c.Membership; m != nil {
		b.WriteString("\n[membership]\n")
		keys(&b, []string{"join", "secret-file"}, m.Join, m.SecretFile)
	}
	if c.Extra != "" {
		b.WriteString("\n" + withNewline(c.Extra))
	}
	return b.String()
}

// keys writes `name = value` for each value that is not zero: ints as
// numbers, strings quoted, string lists as TOML lists.
func keys(b *strings.Builder, names []string, values ...any) {
	for i, v := range values {
		switch v := v.(type) {
		case int:
			if v != 0 {
				fmt.Fprintf(b, "%s = %d\n", names[i], v)
			}
		case string:
			if v != "" {
				fmt.Fprintf(b, "%s = %q\n", names[i], v)
			}
		case []string:
			if v != nil {
				fmt.Fprintf(b, "%s = %s\n", names[i], tomlList(v))
			}
		}
	}
}

func lines(b *strings.Builder, indent string, ls []string) {
	for _, l := range ls {
		b.WriteString(indent + l + "\n")
	}
}

func withNewline(s string) string {
	if s != "" && !strings.HasSuffix(s, "\n") {
		return s + "\n"
	}
	return s
}

// GoBGPPolicy is a global export policy of GoBGP as TOML for
// GoBGPConf.Extra: its defined sets, the policy definition and
// [global.apply-policy.config] naming it.
type GoBGPPolicy struct {
	Name string
	// Default is default-export-policy: "accept-route" or "reject-route".
	Default       string
	PrefixSets    []GoBGPPrefixSet
	CommunitySets []GoBGPSet
	NeighborSets  []GoBGPSet
	Statements    []GoBGPStatement
}

// GoBGPPrefixSet is a prefix set of one prefix; MaskRange as
// "32..32".
type GoBGPPrefixSet struct{ Name, Prefix, MaskRange string }

// GoBGPSet is a community set or a neighbor set.
type GoBGPSet struct {
	Name    string
	Members []string
}

// GoBGPStatement is one statement: at most one set condition, a route
// disposition, and BGP actions.
type GoBGPStatement struct {
	Name string
	// PrefixSet, NeighborSet or CommunitySet is the condition; MatchOptions
	// its match-set-options ("any", "invert"; "" leaves it out).
	PrefixSet, NeighborSet, CommunitySet, MatchOptions string
	Disposition                                        string // "accept-route", "reject-route"
	// SetMED, SetLocalPref ("" / 0 for none) and AddCommunities (options
	// "add") are the BGP actions; Extra more TOML at the statement's end.
	SetMED         string
	SetLocalPref   int
	AddCommunities []string
	Extra          string
}

func (p GoBGPPolicy) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global.apply-policy.config]\n  export-policy-list = [%q]\n  default-export-policy = %q\n", p.Name, p.Default)
	for _, s := range p.PrefixSets {
		fmt.Fprintf(&b, "\n[[defined-sets.prefix-sets]]\n  prefix-set-name = %q\n  [[defined-sets.prefix-sets.prefix-list]]\n"+
			"    ip-prefix = %q\n    masklength-range = %q\n", s.Name, s.Prefix, s.MaskRange)
	}
	for _, s := range p.CommunitySets {
		fmt.Fprintf(&b, "\n[[defined-sets.bgp-defined-sets.community-sets]]\n  community-set-name = %q\n  community-list = %s\n", s.Name, tomlList(s.Members))
	}
	for _, s := range p.NeighborSets {
		fmt.Fprintf(&b, "\n[[defined-sets.neighbor-sets]]\n  neighbor-set-name = %q\n  neighbor-info-list = %s\n", s.Name, tomlList(s.Members))
	}
	fmt.Fprintf(&b, "\n[[policy-definitions]]\n  name = %q\n", p.Name)
	for _, s := range p.Statements {
		b.WriteString("  [[policy-definitions.statements]]\n")
		if s.Name != "" {
			fmt.Fprintf(&b, "    name = %q\n", s.Name)
		}
		for _, c := range []struct{ table, key, set string }{
			{"match-prefix-set", "prefix-set", s.PrefixSet},
			{"match-neighbor-set", "neighbor-set", s.NeighborSet},
			{"bgp-conditions.match-community-set", "community-set", s.CommunitySet},
		} {
			if c.set == "" {
				continue
			}
			fmt.Fprintf(&b, "    [policy-definitions.statements.conditions.%s]\n      %s = %q\n", c.table, c.key, c.set)
			if s.MatchOptions != "" {
				fmt.Fprintf(&b, "      match-set-options = %q\n", s.MatchOptions)
			}
		}
		fmt.Fprintf(&b, "    [policy-definitions.statements.actions]\n      route-disposition = %q\n", s.Disposition)
		if s.SetMED != "" || s.SetLocalPref != 0 {
			b.WriteString("    [policy-definitions.statements.actions.bgp-actions]\n")
			if s.SetMED != "" {
				fmt.Fprintf(&b, "      set-med = %q\n", s.SetMED)
			}
			if s.SetLocalPref != 0 {
				fmt.Fprintf(&b, "      set-local-pref = %d\n", s.SetLocalPref)
			}
		}
		if len(s.AddCommunities) > 0 {
			fmt.Fprintf(&b, "    [policy-definitions.statements.actions.bgp-actions.set-community]\n      options = \"add\"\n"+
				"      [policy-definitions.statements.actions.bgp-actions.set-community.set-community-method]\n"+
				"        communities-list = %s\n", tomlList(s.AddCommunities))
		}
		b.WriteString(withNewline(s.Extra))
	}
	return b.String()
}

func tomlList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
