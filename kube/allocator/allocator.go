package allocator

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vipspeaker/vipspeaker/config"
)

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

// keeps reports whether a Service of namespace ns may keep an address of p
// it holds: its namespace is listed, or the pool has a namespace-selector
// (not checked again: relabelling a namespace never moves an address).
func keeps(p *config.Pool, ns string) bool {
	return len(p.Namespaces) == 0 || slices.Contains(p.Namespaces, ns) || p.NamespaceSelector != ""
}

// serves reports whether a new allocation for r may come from p: its
// namespace is allowed (listed or selected by its labels) and its labels
// match the service-selector. A Service keeps what it holds when its or its
// namespace's labels change (keepCurrent checks only the namespace list),
// so editing labels never moves an address.
func serves(p *config.Pool, r Request) *Error {
	if !p.AllowsNamespace(r.Namespace, r.NamespaceLabels) {
		if p.NamespaceSelector != "" {
			return errorf(ReasonNamespace, "pool %q does not allow namespace %q (not listed, labels do not match %q)", p.Name, r.Namespace, p.NamespaceSelector)
		}
		return errorf(ReasonNamespace, "pool %q does not allow namespace %q", p.Name, r.Namespace)
	}
	if !p.SelectsService(r.Labels) {
		return errorf(ReasonSelector, "pool %q serves only Services matching %q", p.Name, p.ServiceSelector)
	}
	return nil
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
