package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
)

// SetCounted declares the VIPs whose traffic is counted (normally every
// VIP of the node, layer2 and BGP). Counters of VIPs already counted are
// kept; VIPs no longer named lose theirs. Past MaxOwned VIPs, those counted
// already stay counted, then others in address order up to MaxOwned; the
// rest are not counted (logged, and vipspeaker_xdp_map_overflow{map=
// "counted"}).
func (f *FastPath) SetCounted(vips []netip.Addr) error {
	want := map[[16]byte]bool{}
	for _, a := range vips {
		if a.IsValid() {
			want[key16(a)] = true
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errClosed
	}
	var (
		have []vipVipAddr
		k    vipVipAddr
	)
	var next vipVipAddr
	var cur any // nil: first key
	for i := 0; i <= MaxOwned; i++ {
		if err := f.objs.VsVipStats.NextKey(cur, &next); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				break
			}
			return fmt.Errorf("list counted VIPs: %w", err)
		}
		have = append(have, next)
		k = next
		cur = &k
	}
	total := len(want)
	if total > MaxOwned {
		counted := map[[16]byte]bool{}
		for _, h := range have {
			counted[h.Addr] = true
		}
		order := slices.Collect(maps.Keys(want))
		slices.SortFunc(order, func(a, b [16]byte) int {
			if ca, cb := counted[a], counted[b]; ca != cb {
				if ca {
					return -1
				}
				return 1
			}
			return bytes.Compare(a[:], b[:])
		})
		for _, a := range order[MaxOwned:] {
			delete(want, a)
		}
	}
	f.setOverflowLocked(mapCounted, total-len(want))
	for _, h := range have {
		if !want[h.Addr] {
			if err := f.objs.VsVipStats.Delete(&h); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("stop counting %s: %w", addrFrom16(h.Addr), err)
			}
		}
	}
	zero := make([]vipVipCounters, f.ncpu)
	for a := range want {
		key := vipVipAddr{Addr: a}
		if err := f.objs.VsVipStats.Update(&key, zero, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("count %s: %w", addrFrom16(a), err)
		}
	}
	return nil
}

// Traffic returns the counters of every counted VIP (summed over CPUs).
func (f *FastPath) Traffic() (map[netip.Addr]Traffic, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errClosed
	}
	return f.trafficLocked()
}

func (f *FastPath) trafficLocked() (map[netip.Addr]Traffic, error) {
	out := map[netip.Addr]Traffic{}
	var (
		k   vipVipAddr
		per []vipVipCounters
	)
	it := f.objs.VsVipStats.Iterate()
	for it.Next(&k, &per) {
		var t Traffic
		for _, c := range per {
			t.Packets += c.Packets
			t.Bytes += c.Bytes
		}
		out[addrFrom16(k.Addr)] = t
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read VIP counters: %w", err)
	}
	return out, nil
}

// SentCounts returns what the program sent on iface since it was first
// attached there (summed over CPUs; kept across agent restarts while the
// maps stay pinned): ARP replies, solicited neighbour advertisements, and
// gratuitous frames (gratuitous ARP in both forms and unsolicited NA). The
// dataplane adds these to its reply counters with path="xdp".
func (f *FastPath) SentCounts(iface string) (arpReplies, ndpAdverts, gratuitous uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, 0, 0, errClosed
	}
	a := f.ifaces[iface]
	if a == nil {
		return 0, 0, 0, fmt.Errorf("sent counts of %s: not attached", iface)
	}
	c, err := f.ifCounters(a.index)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("sent counts of %s: %w", iface, err)
	}
	return c.ArpReplies, c.NdpAdverts, c.Garp + c.Una, nil
}

func (f *FastPath) ifCounters(index int) (vipIfCounters, error) {
	var per []vipIfCounters
	if err := f.objs.VsIfStats.Lookup(uint32(index), &per); err != nil {
		return vipIfCounters{}, err
	}
	var s vipIfCounters
	for _, c := range per {
		s.ArpReplies += c.ArpReplies
		s.NdpAdverts += c.NdpAdverts
		s.Garp += c.Garp
		s.Una += c.Una
	}
	return s, nil
}
