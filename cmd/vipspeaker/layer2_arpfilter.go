package main

import (
	"net/netip"
	"sync"

	"github.com/vipspeaker/vipspeaker/dataplane"
	"github.com/vipspeaker/vipspeaker/routing"
)

// arpFilterState feeds the ARP filter (dataplane.ARPFilter): every VIP of
// the table goes into its input set (no kernel answers ARP for a VIP; the
// owner's responder does), the layer2 VIPs this node does not own into its
// output set (the kernel sends no ARP with them as sender). The first Set
// waits for the first owned set, which the controller applies only once the
// VIP table has settled: until then the table a previous agent left stays
// in force, so a restart has no moment where the kernels answer.
type arpFilterState struct {
	f *dataplane.ARPFilter

	mu     sync.Mutex
	all    []netip.Addr
	layer2 []netip.Addr
	owned  map[netip.Addr]bool // nil until the first owned set
}

// vipsChanged takes the table's VIPs (all) and its layer2 VIPs (current).
func (s *arpFilterState) vipsChanged(all map[netip.Addr]bool, current map[netip.Addr]routing.VIP) {
	if s.f == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = s.all[:0]
	for a := range all {
		s.all = append(s.all, a)
	}
	s.layer2 = s.layer2[:0]
	for a := range current {
		s.layer2 = append(s.layer2, a)
	}
	s.syncLocked()
}

// ownedChanged takes the VIPs this node owns (the controller's Apply).
func (s *arpFilterState) ownedChanged(owned map[netip.Addr][]string) {
	if s.f == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.owned = make(map[netip.Addr]bool, len(owned))
	for a := range owned {
		s.owned[a] = true
	}
	s.syncLocked()
}

func (s *arpFilterState) syncLocked() {
	if s.owned == nil {
		return
	}
	var notOwned []netip.Addr
	for _, a := range s.layer2 {
		if !s.owned[a] {
			notOwned = append(notOwned, a)
		}
	}
	_ = s.f.Set(s.all, notOwned) // failures are logged by the filter; the next change retries
}

// exit removes the filter when the agent leaves for good (its VIPs are
// being removed) and leaves it for the next agent otherwise.
func (s *arpFilterState) exit(removeOnExit bool) error {
	if s.f == nil || !removeOnExit {
		return nil
	}
	return s.f.Remove()
}
