package allocator

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vipspeaker/vipspeaker/config"
)

// Family is an IP family.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// FamilyOf is the family of a.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// Port is one port of a Service, for the sharing rules.
type Port struct {
	Protocol string // TCP, UDP, SCTP; empty means TCP
	Port     int32
}

func (p Port) String() string { return fmt.Sprintf("%s/%d", cmp.Or(p.Protocol, "TCP"), p.Port) }

// Request is what one Service asks for.
type Request struct {
	// Service is "namespace/name"; Namespace its namespace.
	Service   string
	Namespace string
	// Families wanted, in order of preference (no duplicates). Empty: the
	// families of Addresses, else IPv4.
	Families []Family
	// RequireAll: every family must get an address (RequireDualStack).
	RequireAll bool
	// Pool is the pool asked for; empty: any auto-assign pool.
	Pool string
	// Addresses wanted exactly; empty: any.
	Addresses []netip.Addr
	// SharingKey lets Services with the same key share an address.
	SharingKey string
	Ports      []Port
	// Current are the addresses the Service holds now (its status).
	Current []netip.Addr
}

// Assignment is the result of Assign.
type Assignment struct {
	// Addrs, IPv4 before IPv6.
	Addrs []netip.Addr
	// Pool is the pool they came from.
	Pool string
	// Changed reports whether Addrs differ from Request.Current.
	Changed bool
}

// Reason says why an assignment failed, in words fit for an Event.
type Reason string

const (
	ReasonUnknownPool  Reason = "UnknownPool"
	ReasonNotInPool    Reason = "AddressNotInPool"
	ReasonWrongFamily  Reason = "WrongFamily"
	ReasonNamespace    Reason = "NamespaceNotAllowed"
	ReasonInUse        Reason = "AddressInUse"
	ReasonNoPool       Reason = "NoSuitablePool"
	ReasonExhausted    Reason = "PoolExhausted"
	ReasonMixedPools   Reason = "AddressesInDifferentPools"
	ReasonInvalidInput Reason = "InvalidRequest"
)

// Error is a failed assignment.
type Error struct {
	Reason Reason
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func errorf(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...)}
}

// holder is one Service using an address.
type holder struct {
	key   string
	ports []Port
}

type addrUse struct {
	pool    string
	holders map[string]holder // by Service
}

type svcUse struct {
	addrs []netip.Addr
	pool  string
}

// Allocator is the bookkeeping of which Service holds which address.
type Allocator struct {
	pools  []config.Pool
	byAddr map[netip.Addr]*addrUse
	bySvc  map[string]*svcUse
	// cursor remembers where the last free-address search of a pool and
	// family ended, so a long run of allocations does not rescan the used
	// start of the pool every time; Release moves it back to a freed
	// address, so the lowest free address is always the next one given.
	cursor map[cursorKey]netip.Addr
}

type cursorKey struct {
	pool string
	fam  Family
}

// New returns an allocator over pools (copied).
func New(pools []config.Pool) *Allocator {
	a := &Allocator{byAddr: map[netip.Addr]*addrUse{}, bySvc: map[string]*svcUse{}, cursor: map[cursorKey]netip.Addr{}}
	a.SetPools(pools)
	return a
}

// SetPools replaces the pools. Holdings stay; the next Assign of each
// Service checks them against the new pools.
func (a *Allocator) SetPools(pools []config.Pool) {
	a.pools = slices.Clone(pools)
	clear(a.cursor)
}

// Pools returns the pools in force.
func (a *Allocator) Pools() []config.Pool { return a.pools }

func (a *Allocator) pool(name string) *config.Pool {
	for i := range a.pools {
		if a.pools[i].Name == name {
			return &a.pools[i]
		}
	}
	return nil
}

func (a *Allocator) poolOf(addr netip.Addr) *config.Pool {
	for i := range a.pools {
		if a.pools[i].Contains(addr) {
			return &a.pools[i]
		}
	}
	return nil
}

func allows(p *config.Pool, ns string) bool {
	return len(p.Namespaces) == 0 || slices.Contains(p.Namespaces, ns)
}

// Holding returns the addresses and pool a Service holds.
func (a *Allocator) Holding(service string) ([]netip.Addr, string) {
	u := a.bySvc[service]
	if u == nil {
		return nil, ""
	}
	return slices.Clone(u.addrs), u.pool
}

// Holders returns the Services holding addr, sorted.
func (a *Allocator) Holders(addr netip.Addr) []string {
	u := a.byAddr[addr]
	if u == nil {
		return nil
	}
	out := make([]string, 0, len(u.holders))
	for s := range u.holders {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// InUse counts the addresses of pool held, per family.
func (a *Allocator) InUse(pool string) (v4, v6 int) {
	for addr, u := range a.byAddr {
		if u.pool != pool {
			continue
		}
		if addr.Is4() {
			v4++
		} else {
			v6++
		}
	}
	return v4, v6
}

// Release frees every address the Service holds. It reports whether it held
// any.
func (a *Allocator) Release(service string) bool {
	u := a.bySvc[service]
	if u == nil {
		return false
	}
	for _, addr := range u.addrs {
		if au := a.byAddr[addr]; au != nil {
			delete(au.holders, service)
			if len(au.holders) == 0 {
				delete(a.byAddr, addr)
				a.rewind(au.pool, addr)
			}
		}
	}
	delete(a.bySvc, service)
	return true
}

// rewind moves a pool's search cursor back to a freed address below it, so
// the next Service gets the lowest free address, as with MetalLB. Every
// address before the cursor is in use; that stays true. Reusing freed
// addresses first also keeps the set of prefixes ever announced as small
// as the peak in use (GoBGP keeps a little state per prefix it has seen).
func (a *Allocator) rewind(pool string, addr netip.Addr) {
	ck := cursorKey{pool: pool, fam: FamilyOf(addr)}
	if c, ok := a.cursor[ck]; ok && addr.Less(c) {
		a.cursor[ck] = addr
	}
}

// clash reports why the Service may not use addr with key and ports, or "".
func (a *Allocator) clash(addr netip.Addr, service, key string, ports []Port) string {
	u := a.byAddr[addr]
	if u == nil {
		return ""
	}
	for other, h := range u.holders {
		if other == service {
			continue
		}
		if key == "" || h.key != key {
			if h.key == "" {
				return fmt.Sprintf("%s is in use by %s", addr, other)
			}
			return fmt.Sprintf("%s is in use by %s (sharing key %q)", addr, other, h.key)
		}
		for _, p := range ports {
			for _, q := range h.ports {
				if cmp.Or(p.Protocol, "TCP") == cmp.Or(q.Protocol, "TCP") && p.Port == q.Port {
					return fmt.Sprintf("%s is shared with %s, which also uses port %s", addr, other, p)
				}
			}
		}
	}
	return ""
}

func (r *Request) families() []Family {
	if len(r.Families) > 0 {
		return r.Families
	}
	var fams []Family
	for _, addr := range r.Addresses {
		if f := FamilyOf(addr); !slices.Contains(fams, f) {
			fams = append(fams, f)
		}
	}
	if len(fams) == 0 {
		fams = []Family{IPv4}
	}
	return fams
}

// Assign gives the Service addresses per the rules of the package
// documentation, replacing what it held. On error the Service keeps what it
// held before (the caller decides whether to Release it).
func (a *Allocator) Assign(r Request) (Assignment, error) {
	fams := r.families()
	if r.Service == "" {
		return Assignment{}, errorf(ReasonInvalidInput, "request names no service")
	}
	var (
		addrs []netip.Addr
		pool  string
		err   *Error
	)
	switch {
	case len(r.Addresses) > 0:
		addrs, pool, err = a.requested(r, fams)
	default:
		addrs, pool = a.keepCurrent(r, fams)
		if addrs == nil {
			addrs, pool, err = a.fresh(r, fams)
		}
	}
	if err != nil {
		return Assignment{}, err
	}
	sortAddrs(addrs)
	cur := slices.Clone(r.Current)
	sortAddrs(cur)
	res := Assignment{Addrs: addrs, Pool: pool, Changed: !slices.Equal(addrs, cur)}
	a.commit(r, addrs, pool)
	return res, nil
}

func sortAddrs(as []netip.Addr) {
	slices.SortFunc(as, func(x, y netip.Addr) int {
		return cmp.Or(cmp.Compare(x.BitLen(), y.BitLen()), x.Compare(y))
	})
}

func (a *Allocator) commit(r Request, addrs []netip.Addr, pool string) {
	a.Release(r.Service)
	h := holder{key: r.SharingKey, ports: slices.Clone(r.Ports)}
	for _, addr := range addrs {
		u := a.byAddr[addr]
		if u == nil {
			u = &addrUse{pool: pool, holders: map[string]holder{}}
			a.byAddr[addr] = u
		}
		u.holders[r.Service] = h
	}
	a.bySvc[r.Service] = &svcUse{addrs: slices.Clone(addrs), pool: pool}
}

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
		if !allows(p, r.Namespace) {
			return nil, "", errorf(ReasonNamespace, "pool %q does not allow namespace %q", p.Name, r.Namespace)
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
		if q == nil || (p != nil && q != p) || !allows(q, r.Namespace) {
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
		if !allows(p, r.Namespace) {
			return nil, "", errorf(ReasonNamespace, "pool %q does not allow namespace %q", p.Name, r.Namespace)
		}
		cands = []*config.Pool{p}
	} else {
		for i := range a.pools {
			p := &a.pools[i]
			if p.AutoAssign && allows(p, r.Namespace) {
				cands = append(cands, p)
			}
		}
		if len(cands) == 0 {
			return nil, "", errorf(ReasonNoPool, "no pool with auto-assign allows namespace %q", r.Namespace)
		}
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

// Keep records that the Service holds r.Current, with its sharing key and
// ports, without checking pools: used when the Service cannot be served
// now (bad annotation, no valid configuration) so its addresses are not
// given to anyone else. Addresses another Service holds incompatibly are
// left out; Keep returns what was recorded.
func (a *Allocator) Keep(r Request) []netip.Addr {
	var kept []netip.Addr
	for _, addr := range r.Current {
		if a.clash(addr, r.Service, r.SharingKey, r.Ports) == "" {
			kept = append(kept, addr)
		}
	}
	pool := ""
	if len(kept) > 0 {
		if p := a.poolOf(kept[0]); p != nil {
			pool = p.Name
		}
	}
	a.commit(r, kept, pool)
	if len(kept) == 0 {
		delete(a.bySvc, r.Service)
	}
	return kept
}
