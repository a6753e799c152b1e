package bpf

import (
	"bytes"
	"cmp"
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
// not attached layer2 interfaces are ignored. More than MaxOwned (VIP,
// interface) pairs is not an error: the map holds MaxOwned of them (those
// it held already first, then by address), the program passes the others'
// requests to the kernel, so the userspace responder, which owns the same
// set, answers them, and AnnounceOwned reports them missed. The number left
// out is logged and exported as vipspeaker_xdp_map_overflow{map="owned"}.
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
	total := len(keys)
	if total > MaxOwned {
		// The map holds MaxOwned pairs; the userspace responder answers
		// and announces the rest (the program passes their requests on,
		// and AnnounceOwned reports them missed). Which pairs stay in the
		// map is stable: those it holds now, then the others in address
		// order, so a growing set does not move VIPs between the paths.
		slices.SortFunc(keys, func(a, b vipKey) int {
			if ia, ib := f.ownedKeys[a], f.ownedKeys[b]; ia != ib {
				if ia {
					return -1
				}
				return 1
			}
			return compareKeys(a, b)
		})
		keys = keys[:MaxOwned]
		seen = make(map[vipKey]bool, len(keys))
		for _, k := range keys {
			seen[k] = true
		}
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
	f.setOverflowLocked(mapOwned, total-len(keys))
	return nil
}

// compareKeys orders map keys by address, then interface index.
func compareKeys(a, b vipKey) int {
	if c := bytes.Compare(a.Addr[:], b.Addr[:]); c != 0 {
		return c
	}
	return cmp.Compare(a.Ifindex, b.Ifindex)
}

// Maps that can overflow, the values of the map label of
// vipspeaker_xdp_map_overflow.
const (
	mapOwned   = "owned"
	mapCounted = "counted"
)

// setOverflowLocked records how many entries did not fit in a map (for the
// metric) and logs when that changes.
func (f *FastPath) setOverflowLocked(m string, n int) {
	was := f.overflow[m]
	f.overflow[m] = n
	switch {
	case n > 0 && n != was && m == mapOwned:
		f.log.Warn("XDP owned-VIP map full: the userspace responder answers and announces the (VIP, interface) pairs past it",
			"capacity", MaxOwned, "past", n)
	case n > 0 && n != was:
		f.log.Warn("XDP VIP counter map full: VIPs past it are not counted", "capacity", MaxOwned, "past", n)
	case n == 0 && was > 0:
		f.log.Info("XDP map holds every entry again", "map", m)
	}
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
