package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/vipspeaker/vipspeaker/routing"
)

// The file as written. Pointers tell "absent" (default) from zero.
type fileConfig struct {
	DefaultClass bool              `toml:"default-class"`
	Interface    fileInterface     `toml:"interface"`
	Pools        []filePool        `toml:"pools"`
	Layer2       fileLayer2        `toml:"layer2"`
	Membership   fileMembership    `toml:"membership"`
	PeerNodes    []filePeerNodes   `toml:"peer-nodes"`
	Import       fileImport        `toml:"import-to-kernel"`
	VIPCounters  fileVIPCounters   `toml:"vip-counters"`
	ControlPlane *fileControlPlane `toml:"control-plane"`
}

type fileVIPCounters struct {
	Fallback *string `toml:"fallback"`
}

type fileInterface struct {
	Name *string `toml:"name"`
	Kind *string `toml:"kind"`
}

type filePool struct {
	Name          string            `toml:"name"`
	Addresses     []string          `toml:"addresses"`
	Mode          *string           `toml:"mode"`
	AutoAssign    *bool             `toml:"auto-assign"`
	AvoidBuggyIPs bool              `toml:"avoid-buggy-ips"`
	Namespaces    []string          `toml:"namespaces"`
	NamespaceSel  string            `toml:"namespace-selector"`
	ServiceSel    string            `toml:"service-selector"`
	Priority      *int64            `toml:"priority"`
	Layer2        filePoolLayer2    `toml:"layer2"`
	Advertise     filePoolAdvertise `toml:"advertise"`
}

type filePoolLayer2 struct {
	Interfaces []string `toml:"interfaces"`
}

type fileLayer2 struct {
	GratuitousCount    *int64  `toml:"gratuitous-count"`
	GratuitousInterval *string `toml:"gratuitous-interval"`
	FastPath           *string `toml:"fast-path"`
	PinDir             string  `toml:"pin-dir"`
}

type fileMembership struct {
	Join       []string `toml:"join"`
	SecretFile string   `toml:"secret-file"`
}

type filePeerNodes struct {
	Neighbors    []string `toml:"neighbors"`
	NodeSelector string   `toml:"node-selector"`
}

type validator struct {
	file    string
	pos     *positions
	errs    []error
	entries []poolEntry
}

// errorf records a problem of field; the line is that of the first known of
// field and alsoAt (or of the nearest known parent).
func (v *validator) errorf(field string, alsoAt []string, format string, args ...any) {
	paths := append([]string{field}, alsoAt...)
	v.errs = append(v.errs, &Error{
		File:  v.file,
		Line:  v.pos.lineOf(paths...),
		Field: field,
		Msg:   fmt.Sprintf(format, args...),
	})
}

type fileImport struct {
	Enabled bool   `toml:"enabled"`
	Table   *int64 `toml:"table"`
}

func (v *validator) build(raw *fileConfig) *Config {
	cfg := Default()
	cfg.DefaultClass = raw.DefaultClass
	cfg.ImportToKernel.Enabled = raw.Import.Enabled
	if t := raw.Import.Table; t != nil {
		// 0 is "unspecified" to the kernel, 253-255 are its own tables
		// (default, main, local): main (254) is allowed, the others not.
		if *t <= 0 || *t > 0xFFFFFFFF || *t == 253 || *t == 255 {
			v.errorf("import-to-kernel.table", nil, "%d is not a routing table for imported routes (1..2^32-1, not 253 or 255)", *t)
		} else {
			cfg.ImportToKernel.Table = int(*t)
		}
	}

	if raw.Interface.Name != nil {
		cfg.Interface.Name = *raw.Interface.Name
		if err := checkIfName(cfg.Interface.Name); err != nil {
			v.errorf("interface.name", nil, "%v", err)
		}
	}
	if raw.Interface.Kind != nil {
		switch k := InterfaceKind(*raw.Interface.Kind); k {
		case KindDummy, KindIFB:
			cfg.Interface.Kind = k
		default:
			v.errorf("interface.kind", nil, "%q is not a link kind (dummy or ifb)", *raw.Interface.Kind)
		}
	}

	cfg.Pools = v.pools(raw.Pools)
	if cfg.ControlPlane = v.controlPlane(raw.ControlPlane); cfg.ControlPlane != nil && cfg.ControlPlane.Address.IsValid() {
		v.controlPlanePool(cfg)
	}
	v.overlaps(cfg.Pools)

	if c := raw.Layer2.GratuitousCount; c != nil {
		if *c < 0 || *c > 100 {
			v.errorf("layer2.gratuitous-count", nil, "%d is out of range 0..100", *c)
		} else {
			cfg.Layer2.GratuitousCount = int(*c)
		}
	}
	if s := raw.Layer2.GratuitousInterval; s != nil {
		d, err := time.ParseDuration(*s)
		switch {
		case err != nil:
			v.errorf("layer2.gratuitous-interval", nil, "%q is not a duration (like \"500ms\")", *s)
		case d < time.Millisecond || d > time.Minute:
			v.errorf("layer2.gratuitous-interval", nil, "%s is out of range 1ms..1m", d)
		default:
			cfg.Layer2.GratuitousInterval = d
		}
	}
	if s := raw.Layer2.FastPath; s != nil {
		switch f := FastPath(*s); f {
		case FastPathAuto, FastPathXDP, FastPathOff:
			cfg.Layer2.FastPath = f
		default:
			v.errorf("layer2.fast-path", nil, "%q is not auto, xdp or off", *s)
		}
	}
	if s := raw.VIPCounters.Fallback; s != nil {
		switch f := CountersFallback(*s); f {
		case CountersNFTables, CountersOff:
			cfg.VIPCounters.Fallback = f
		default:
			v.errorf("vip-counters.fallback", nil, "%q is not nftables or off", *s)
		}
	}
	if d := raw.Layer2.PinDir; d != "" {
		if !filepath.IsAbs(d) {
			v.errorf("layer2.pin-dir", nil, "%q is not an absolute path", d)
		} else {
			cfg.Layer2.PinDir = filepath.Clean(d)
		}
	}

	for i, j := range raw.Membership.Join {
		if err := checkJoin(j); err != nil {
			v.errorf(fmt.Sprintf("membership.join[%d]", i), nil, "%v", err)
		}
	}
	cfg.Membership.Join = raw.Membership.Join
	if s := raw.Membership.SecretFile; s != "" {
		ref, isRef, err := ParseSecretRef(s)
		switch {
		case err != nil:
			v.errorf("membership.secret-file", nil, "%v", err)
		case isRef:
			cfg.Membership.SecretRef = ref
		case !filepath.IsAbs(s):
			v.errorf("membership.secret-file", nil, "%q is not an absolute path (or secret:NAME/KEY in cluster mode)", s)
		}
	}
	cfg.Membership.SecretFile = raw.Membership.SecretFile

	cfg.PeerNodes = v.peerNodes(raw.PeerNodes)
	return cfg
}

func (v *validator) pools(raw []filePool) []Pool {
	var out []Pool
	names := map[string]int{}
	for i, rp := range raw {
		at := fmt.Sprintf("pools[%d]", i)
		p := Pool{Name: rp.Name, Mode: routing.ModeBGP, AutoAssign: true, AvoidBuggyIPs: rp.AvoidBuggyIPs}
		switch {
		case rp.Name == "":
			v.errorf(at+".name", nil, "missing pool name")
		default:
			if msgs := validation.IsDNS1123Subdomain(rp.Name); len(msgs) > 0 {
				v.errorf(at+".name", nil, "%q is not a valid name: %s", rp.Name, strings.Join(msgs, "; "))
			}
			if first, dup := names[rp.Name]; dup {
				v.errorf(at+".name", nil, "pool %q is already defined (line %d)", rp.Name, v.pos.lineOf(fmt.Sprintf("pools[%d].name", first)))
			} else {
				names[rp.Name] = i
			}
		}
		if len(rp.Addresses) == 0 {
			v.errorf(at+".addresses", nil, "a pool needs at least one address")
		}
		for j, s := range rp.Addresses {
			field := fmt.Sprintf("%s.addresses[%d]", at, j)
			pf, r, err := parseEntry(s)
			if err != nil {
				v.errorf(field, nil, "%v", err)
				continue
			}
			if pf.IsValid() {
				r = PrefixRange(pf)
			}
			if err := checkSpecial(r); err != nil {
				v.errorf(field, nil, "%q %v", s, err)
				continue
			}
			v.entries = append(v.entries, poolEntry{r: r, pool: i, order: len(v.entries), field: field, text: strings.TrimSpace(s)})
			if pf.IsValid() {
				p.Prefixes = append(p.Prefixes, pf)
			} else {
				p.Ranges = append(p.Ranges, r)
			}
		}
		if rp.Mode != nil {
			switch m := routing.Mode(*rp.Mode); m {
			case routing.ModeBGP, routing.ModeLayer2:
				p.Mode = m
			default:
				v.errorf(at+".mode", nil, "%q is not a mode (bgp or layer2)", *rp.Mode)
			}
		}
		if rp.AutoAssign != nil {
			p.AutoAssign = *rp.AutoAssign
		}
		seen := map[string]bool{}
		for j, ns := range rp.Namespaces {
			field := fmt.Sprintf("%s.namespaces[%d]", at, j)
			if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
				v.errorf(field, nil, "%q is not a namespace name: %s", ns, strings.Join(msgs, "; "))
			} else if seen[ns] {
				v.errorf(field, nil, "namespace %q is listed twice", ns)
			}
			seen[ns] = true
		}
		p.Namespaces = rp.Namespaces
		p.NamespaceSelector = v.selector(at+".namespace-selector", rp.NamespaceSel)
		p.ServiceSelector = v.selector(at+".service-selector", rp.ServiceSel)
		if pr := rp.Priority; pr != nil {
			if *pr < 1 || *pr > 1000000 {
				v.errorf(at+".priority", nil, "%d is not a priority (1..1000000, lower first; leave it out for last)", *pr)
			} else {
				p.Priority = int(*pr)
			}
		}
		for j, name := range rp.Layer2.Interfaces {
			if err := checkIfName(name); err != nil {
				v.errorf(fmt.Sprintf("%s.layer2.interfaces[%d]", at, j), nil, "%v", err)
			}
		}
		p.Layer2.Interfaces = rp.Layer2.Interfaces
		if p.Mode == routing.ModeLayer2 && len(rp.Layer2.Interfaces) == 0 {
			v.errorf(at+".layer2.interfaces", []string{at + ".layer2", at + ".mode"},
				"a layer2 pool needs [pools.layer2] interfaces (where ARP/NDP is answered)")
		}
		v.advertise(at, rp.Advertise, &p)
		out = append(out, p)
	}
	return out
}

// overlaps reports entries that share addresses, within a pool or across
// pools. Of each overlapping pair the one later in the file is blamed and the
// other named. Entries are swept in address order, so this stays cheap for
// pools listing many single addresses.
func (v *validator) overlaps(pools []Pool) {
	all := slices.Clone(v.entries)
	slices.SortStableFunc(all, func(a, b poolEntry) int { return compareRange(a.r, b.r) })
	var widest *poolEntry // entry reaching furthest so far, within the family
	for i := range all {
		e := &all[i]
		if widest != nil && widest.r.Overlaps(e.r) {
			first, second := widest, e
			if second.order < first.order {
				first, second = second, first
			}
			where := fmt.Sprintf("pool %q", pools[first.pool].Name)
			if first.pool == second.pool {
				where = "the same pool"
			}
			v.errorf(second.field, nil, "%s overlaps %s of %s (line %d)",
				second.text, first.text, where, v.pos.lineOf(first.field))
		}
		if widest == nil || widest.r.First.BitLen() != e.r.First.BitLen() || widest.r.Last.Compare(e.r.Last) < 0 {
			widest = e
		}
	}
}

// poolEntry is one parsed address entry, remembered for the overlap check.
type poolEntry struct {
	r     Range
	pool  int
	order int // position in the file
	field string
	text  string // as written
}

func checkIfName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is longer than 15 characters", name)
	case name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("%q is not a valid interface name", name)
	}
	return nil
}

func checkJoin(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("empty address")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a bare host or IP (IPv6 without brackets included).
		if strings.ContainsAny(s, " \t/") {
			return fmt.Errorf("%q is not host or host:port", s)
		}
		return nil
	}
	if host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not 1..65535", s, port)
	}
	return nil
}

func (v *validator) peerNodes(raw []filePeerNodes) []PeerNodes {
	var out []PeerNodes
	seen := map[netip.Addr]string{}
	for i, rp := range raw {
		at := fmt.Sprintf("peer-nodes[%d]", i)
		pn := PeerNodes{NodeSelector: rp.NodeSelector}
		if len(rp.Neighbors) == 0 {
			v.errorf(at+".neighbors", nil, "needs at least one neighbor address")
		}
		for j, s := range rp.Neighbors {
			field := fmt.Sprintf("%s.neighbors[%d]", at, j)
			a, err := parseAddr(strings.TrimSpace(s))
			if err != nil {
				v.errorf(field, nil, "%v", err)
				continue
			}
			if prev, dup := seen[a]; dup {
				v.errorf(field, nil, "neighbor %s is already restricted by %s (line %d); use one selector such as \"zone in (a,b)\"",
					a, prev, v.pos.lineOf(prev))
				continue
			}
			seen[a] = field
			pn.Neighbors = append(pn.Neighbors, a)
		}
		if strings.TrimSpace(rp.NodeSelector) == "" {
			v.errorf(at+".node-selector", nil, "needs a label selector (an empty one matches every node)")
		} else if _, err := labels.Parse(rp.NodeSelector); err != nil {
			v.errorf(at+".node-selector", nil, "%q is not a label selector: %v", rp.NodeSelector, err)
		}
		out = append(out, pn)
	}
	return out
}
