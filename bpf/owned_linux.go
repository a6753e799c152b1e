package bpf

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
)

// vipKey is struct vip_key of xdp.c (bpf2go does not see it: the inner
// map is declared by sizes).
type vipKey struct {
	Ifindex uint32
	Addr    [16]byte
}

// ensureOwnedSet puts an empty owned set in slot 0 when there is none (a
// first load; a restart finds the previous agent's set there).
func (f *FastPath) ensureOwnedSet() error {
	var id ebpf.MapID
	if err := f.objs.VsOwned.Lookup(uint32(0), &id); err == nil && id != 0 {
		return nil
	}
	set, err := ebpf.NewMap(f.inner)
	if err != nil {
		return fmt.Errorf("%w: create owned set: %w", ErrNotSupported, err)
	}
	if err := f.objs.VsOwned.Put(uint32(0), set); err != nil {
		set.Close()
		return fmt.Errorf("install owned set: %w", err)
	}
	f.keepOwnedSet(set, map[vipKey]bool{})
	return nil
}

// keepOwnedSet records the set now in the owned slot and its keys,
// closing the previous one's descriptor (the kernel frees a replaced set
// once no program run uses it).
func (f *FastPath) keepOwnedSet(set *ebpf.Map, keys map[vipKey]bool) {
	if f.ownedSet != nil {
		_ = f.ownedSet.Close()
	}
	f.ownedSet, f.ownedKeys = set, keys
}

// openOwnedSet returns a descriptor of the set in the owned slot, for the
// caller to close: a duplicate of the one this process keeps, or, for a
// set a previous agent pinned, one opened by ID (CAP_SYS_ADMIN).
func (f *FastPath) openOwnedSet() (*ebpf.Map, error) {
	if f.ownedSet != nil {
		set, err := f.ownedSet.Clone()
		if err != nil {
			return nil, fmt.Errorf("open owned set: %w", err)
		}
		return set, nil
	}
	var id ebpf.MapID
	if err := f.objs.VsOwned.Lookup(uint32(0), &id); err != nil {
		return nil, fmt.Errorf("read owned set: %w", err)
	}
	set, err := ebpf.NewMapFromID(id)
	if err != nil {
		return nil, fmt.Errorf("open owned set (the previous agent's, by ID; needs CAP_SYS_ADMIN until this agent sets its own): %w", err)
	}
	return set, nil
}

// SetOwned replaces the set of VIPs answered, each with the interfaces it
// is answered on (the same shape as dataplane's Responder.SetOwned). The new
// set is built aside and swapped in with one map update, so the program
// sees either the whole old set or the whole new one. Interfaces that are
// not attached layer2 interfaces are ignored.
func (f *FastPath) SetOwned(owned map[netip.Addr][]string) error {
	cp := make(map[netip.Addr][]string, len(owned))
	for a, ifs := range owned {
		cp[a] = slices.Clone(ifs)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errClosed
	}
	f.owned = cp
	return f.applyOwnedLocked()
}

// applyOwnedLocked builds the owned set from f.owned and swaps it in.
func (f *FastPath) applyOwnedLocked() error {
	owned := f.owned
	var keys []vipKey
	seen := map[vipKey]bool{}
	for a, ifs := range owned {
		if !a.IsValid() {
			continue
		}
		for _, n := range ifs {
			at := f.ifaces[n]
			if at == nil || at.flags&flagAnswer == 0 {
				continue
			}
			k := vipKey{Ifindex: uint32(at.index), Addr: key16(a)}
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	if len(keys) > MaxOwned {
		return fmt.Errorf("set owned VIPs: %d (VIP, interface) pairs, at most %d", len(keys), MaxOwned)
	}
	set, err := ebpf.NewMap(f.inner)
	if err != nil {
		return fmt.Errorf("create owned set: %w", err)
	}
	one := uint8(1)
	for _, k := range keys {
		if err := set.Put(&k, &one); err != nil {
			set.Close()
			return fmt.Errorf("fill owned set: %w", err)
		}
	}
	if err := f.objs.VsOwned.Put(uint32(0), set); err != nil {
		set.Close()
		return fmt.Errorf("swap owned set: %w", err)
	}
	f.keepOwnedSet(set, seen)
	return nil
}

// Owned returns the owned set in the map now: each VIP with the indexes
// (sorted) of the interfaces it is answered on while the lease is valid.
func (f *FastPath) Owned() (map[netip.Addr][]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errClosed
	}
	set, err := f.openOwnedSet()
	if err != nil {
		return nil, err
	}
	defer set.Close()
	out := map[netip.Addr][]int{}
	var (
		k vipKey
		v uint8
	)
	it := set.Iterate()
	for it.Next(&k, &v) {
		a := addrFrom16(k.Addr)
		out[a] = append(out[a], int(k.Ifindex))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read owned set: %w", err)
	}
	for a := range out {
		slices.Sort(out[a])
	}
	return out, nil
}

// ownedSetLocked opens the owned set in slot 0 and says whether the lease
// is valid now.
func (f *FastPath) ownedSetLocked() (*ebpf.Map, bool, error) {
	set, err := f.openOwnedSet()
	if err != nil {
		return nil, false, err
	}
	d, err := f.leaseLocked()
	if err != nil {
		set.Close()
		return nil, false, err
	}
	return set, d > 0, nil
}
