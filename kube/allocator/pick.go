package allocator

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"strings"

	"github.com/vipspeaker/vipspeaker/config"
)

// requested checks the addresses asked for.
func (a *Allocator) requested(r Request, fams []Family) ([]netip.Addr, string, *Error) {
	seen := map[Family]netip.Addr{}
	var poolName string
	for _, addr := range r.Addresses {
		f := FamilyOf(addr)
		if !slices.Contains(fams, f) {
			return nil, "", errorf(ReasonWrongFamily, "%s is an %s address, but the service's ipFamilies are %s", addr, f, famList(fams))
		}
		if prev, dup := seen[f]; dup {
			return nil, "", errorf(ReasonWrongFamily, "%s and %s are both %s; a service gets one address per family", prev, addr, f)
		}
		seen[f] = addr
		var p *config.Pool
		if r.Pool != "" {
			p = a.pool(r.Pool)
			if p == nil {
				return nil, "", errorf(ReasonUnknownPool, "pool %q does not exist", r.Pool)
			}
			if !p.Contains(addr) {
				return nil, "", errorf(ReasonNotInPool, "%s is not an address of pool %q", addr, r.Pool)
			}
		} else {
			p = a.poolOf(addr)
			if p == nil {
				return nil, "", errorf(ReasonNotInPool, "%s is not an address of any pool", addr)
			}
		}
		if err := serves(p, r); err != nil {
			return nil, "", err
		}
		if poolName != "" && poolName != p.Name {
			return nil, "", errorf(ReasonMixedPools, "the requested addresses are in different pools (%q and %q)", poolName, p.Name)
		}
		poolName = p.Name
		if why := a.clash(addr, r.Service, r.SharingKey, r.Ports); why != "" {
			return nil, "", errorf(ReasonInUse, "%s", why)
		}
	}
	if r.RequireAll {
		for _, f := range fams {
			if _, ok := seen[f]; !ok {
				return nil, "", errorf(ReasonWrongFamily, "the service requires dual-stack but no %s address was requested", f)
			}
		}
	}
	return slices.Clone(r.Addresses), poolName, nil
}

// keepCurrent returns the Service's current addresses (completed with a
// missing best-effort or required family where the pool has one) when they
// still fit the request, else nil.
func (a *Allocator) keepCurrent(r Request, fams []Family) ([]netip.Addr, string) {
	if len(r.Current) == 0 {
		return nil, ""
	}
	var (
		p    *config.Pool
		have = map[Family]bool{}
	)
	for _, addr := range r.Current {
		f := FamilyOf(addr)
		if !slices.Contains(fams, f) || have[f] {
			return nil, ""
		}
		have[f] = true
		q := a.poolOf(addr)
		if q == nil || (p != nil && q != p) || !keeps(q, r.Namespace) {
			return nil, ""
		}
		if r.Pool != "" && q.Name != r.Pool {
			return nil, ""
		}
		if r.Pool == "" && !q.AutoAssign {
			// It was asked for by address or pool once; without either
			// it would not be given now.
			return nil, ""
		}
		if a.clash(addr, r.Service, r.SharingKey, r.Ports) != "" {
			return nil, ""
		}
		p = q
	}
	if !have[fams[0]] {
		// The first family is required: start over so the pool choice
		// considers it.
		return nil, ""
	}
	addrs := slices.Clone(r.Current)
	for _, f := range fams {
		if have[f] {
			continue
		}
		if addr, ok := a.pick(p, f, r); ok {
			addrs = append(addrs, addr)
		} else if r.RequireAll {
			return nil, ""
		}
	}
	return addrs, p.Name
}

// fresh picks addresses for a Service that holds nothing usable.
func (a *Allocator) fresh(r Request, fams []Family) ([]netip.Addr, string, *Error) {
	var cands []*config.Pool
	if r.Pool != "" {
		p := a.pool(r.Pool)
		if p == nil {
			return nil, "", errorf(ReasonUnknownPool, "pool %q does not exist", r.Pool)
		}
		if err := serves(p, r); err != nil {
			return nil, "", err
		}
		cands = []*config.Pool{p}
	} else {
		for i := range a.pools {
			p := &a.pools[i]
			if p.AutoAssign && serves(p, r) == nil {
				cands = append(cands, p)
			}
		}
		if len(cands) == 0 {
			return nil, "", errorf(ReasonNoPool, "no pool with auto-assign serves this Service (namespace %q, its labels)", r.Namespace)
		}
		// Lower priority first; pools without one after, in file order.
		slices.SortStableFunc(cands, func(x, y *config.Pool) int {
			px, py := x.Priority, y.Priority
			if px == 0 {
				px = math.MaxInt
			}
			if py == 0 {
				py = math.MaxInt
			}
			return cmp.Compare(px, py)
		})
	}
	need := fams[:1]
	if r.RequireAll {
		need = fams
	}
	hasFams := func(p *config.Pool, fs []Family) bool {
		v4, v6 := Size(p)
		for _, f := range fs {
			if (f == IPv4 && v4 == 0) || (f == IPv6 && v6 == 0) {
				return false
			}
		}
		return true
	}
	// Pass 1: pools with every wanted family; pass 2 (best effort only):
	// pools with the required ones.
	passes := [][]Family{fams}
	if len(need) < len(fams) {
		passes = append(passes, need)
	}
	anyFit := false
	for _, want := range passes {
		for _, p := range cands {
			if !hasFams(p, want) {
				continue
			}
			anyFit = true
			var addrs []netip.Addr
			ok := true
			for _, f := range want {
				addr, found := a.pick(p, f, r)
				if !found {
					ok = false
					break
				}
				addrs = append(addrs, addr)
			}
			if ok {
				return addrs, p.Name, nil
			}
		}
	}
	switch {
	case !anyFit && r.Pool != "":
		return nil, "", errorf(ReasonWrongFamily, "pool %q has no %s addresses", r.Pool, famList(need))
	case !anyFit:
		return nil, "", errorf(ReasonNoPool, "no auto-assign pool allowed for namespace %q has %s addresses", r.Namespace, famList(need))
	case r.Pool != "":
		return nil, "", errorf(ReasonExhausted, "pool %q has no free %s address", r.Pool, famList(need))
	default:
		return nil, "", errorf(ReasonExhausted, "no free %s address in any pool allowed for namespace %q", famList(need), r.Namespace)
	}
}

// pick finds an address of family f in p for the request: one already
// shared under its key first, then a free one.
func (a *Allocator) pick(p *config.Pool, f Family, r Request) (netip.Addr, bool) {
	if r.SharingKey != "" {
		var best netip.Addr
		for addr, u := range a.byAddr {
			if u.pool != p.Name || FamilyOf(addr) != f || !p.Contains(addr) {
				continue
			}
			shared := false
			for _, h := range u.holders {
				if h.key == r.SharingKey {
					shared = true
					break
				}
			}
			if shared && a.clash(addr, r.Service, r.SharingKey, r.Ports) == "" {
				if !best.IsValid() || addr.Less(best) {
					best = addr
				}
			}
		}
		if best.IsValid() {
			return best, true
		}
	}
	ck := cursorKey{pool: p.Name, fam: f}
	start := a.cursor[ck]
	free := func(addr netip.Addr) bool {
		if _, used := a.byAddr[addr]; used {
			return false
		}
		return p.Contains(addr) && !networkOrBroadcast(p, addr) // avoid-buggy-ips
	}
	blocks := p.Blocks()
	// From the cursor to the end of the pool, then from its start up to
	// the cursor.
	for _, b := range blocks {
		if FamilyOf(b.First) != f || (start.IsValid() && b.Last.Less(start)) {
			continue
		}
		from := b.First
		if start.IsValid() && from.Less(start) {
			from = start
		}
		for addr := range (config.Range{First: from, Last: b.Last}).All() {
			if free(addr) {
				a.cursor[ck] = addr
				return addr, true
			}
		}
	}
	if start.IsValid() {
		for _, b := range blocks {
			if FamilyOf(b.First) != f || !b.First.Less(start) {
				continue
			}
			for addr := range b.All() {
				if !addr.Less(start) {
					break
				}
				if free(addr) {
					a.cursor[ck] = addr
					return addr, true
				}
			}
		}
	}
	return netip.Addr{}, false
}

// networkOrBroadcast reports whether addr is the first (network) or last
// (broadcast) address of one of the pool's IPv4 CIDRs of /30 or wider.
// Auto-assignment skips them: some clients and middleboxes refuse or
// mishandle such a destination. A Service may still ask for one by
// address, and a pool that lists the addresses as a range
// ("203.0.113.0-203.0.113.255") hands them all out. A /31 or /32 has no
// network or broadcast address; IPv6 has no broadcast.
func networkOrBroadcast(p *config.Pool, addr netip.Addr) bool {
	if !addr.Is4() {
		return false
	}
	for _, pf := range p.Prefixes {
		if pf.Addr().Is4() && pf.Bits() <= 30 && pf.Contains(addr) {
			r := config.PrefixRange(pf)
			return addr == r.First || addr == r.Last
		}
	}
	return false
}

// Size counts the addresses of p that auto-assignment may hand out, per
// family: config.Pool.Size without the network and broadcast addresses of
// its IPv4 CIDRs (saturated like it for huge IPv6 pools).
func Size(p *config.Pool) (v4, v6 uint64) {
	v4, v6 = p.Size()
	for _, pf := range p.Prefixes {
		if !pf.Addr().Is4() || pf.Bits() > 30 {
			continue
		}
		r := config.PrefixRange(pf)
		for _, a := range []netip.Addr{r.First, r.Last} {
			if p.Contains(a) {
				v4--
			}
		}
	}
	return v4, v6
}

func famList(fs []Family) string {
	var s []string
	for _, f := range fs {
		s = append(s, f.String())
	}
	return strings.Join(s, " and ")
}
