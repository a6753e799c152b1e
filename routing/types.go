package routing

import (
	"net/netip"
	"slices"
)

// Mode says how a VIP reaches the network.
type Mode string

const (
	ModeBGP    Mode = "bgp"
	ModeLayer2 Mode = "layer2"
)

// Attrs are what the table keeps beside an address. They never reach the
// kernel; they travel to the subscribers with the address.
type Attrs struct {
	// Service is "namespace/name" of the Service (or Services, comma
	// separated and sorted) that wants this VIP.
	Service string
	// Mode is bgp (the default when empty) or layer2.
	Mode Mode
	// Pool the address came from, when known.
	Pool string
	// Communities are BGP standard communities ("65000:100") and
	// LargeCommunities large ones ("65000:1:2"), from the Service's
	// vipspeaker.io/communities annotation.
	Communities      []string
	LargeCommunities []string
	// LocalPref is the LOCAL_PREF the pool asks for (iBGP peers only);
	// 0: none set.
	LocalPref uint32
	// AggregateBits, when set and shorter than the address, makes the BGP
	// path announce the covering prefix of that length instead of the
	// host route (a pool's aggregation-length, for Services whose traffic
	// any node can take).
	AggregateBits int
	// Weight, when not 0, is this node's share of the VIP's traffic
	// relative to the other nodes announcing it: the ready endpoints of its
	// Services on this node (a pool's weighted-by-endpoints, Local
	// Services). BGP carries it as the link-bandwidth extended community,
	// which routers turn into next-hop weights.
	Weight uint32
	// Prepend, when not 0, repeats the speaker's AS that many times in the
	// path's AS_PATH, so routers prefer other nodes' paths (the
	// control-plane VIP of a node whose health check fails).
	Prepend int
}

// Equal reports whether two attribute sets are the same.
func (a Attrs) Equal(b Attrs) bool {
	return a.Service == b.Service && a.Mode == b.Mode && a.Pool == b.Pool &&
		slices.Equal(a.Communities, b.Communities) &&
		slices.Equal(a.LargeCommunities, b.LargeCommunities) &&
		a.LocalPref == b.LocalPref && a.AggregateBits == b.AggregateBits &&
		a.Weight == b.Weight && a.Prepend == b.Prepend
}

// VIP is one address of the table: an IPv4 /32 or IPv6 /128 host address.
type VIP struct {
	Addr  netip.Addr
	Attrs Attrs
}

// Prefix is the VIP as a host prefix (/32 or /128).
func (v VIP) Prefix() netip.Prefix {
	return netip.PrefixFrom(v.Addr, v.Addr.BitLen())
}

// AnnouncedPrefix is what a BGP path for the VIP announces: the covering
// prefix of AggregateBits when that is set and shorter, else the host
// prefix.
func (v VIP) AnnouncedPrefix() netip.Prefix {
	if b := v.Attrs.AggregateBits; b > 0 && b < v.Addr.BitLen() {
		return netip.PrefixFrom(v.Addr, b).Masked()
	}
	return v.Prefix()
}

// EventKind says what happened to a VIP.
type EventKind int

const (
	// Added: the VIP is now on the interface (also sent for every VIP
	// present when a subscription starts).
	Added EventKind = iota + 1
	// Removed: the VIP is gone from the table.
	Removed
	// Changed: same address, new attributes.
	Changed
)

func (k EventKind) String() string {
	switch k {
	case Added:
		return "added"
	case Removed:
		return "removed"
	case Changed:
		return "changed"
	}
	return "unknown"
}

// Event is one change of the table.
type Event struct {
	Kind EventKind
	VIP  VIP
}

// Union is want with every VIP of have that want lacks added, with its
// current attributes (so a VIP is never withdrawn for lack of information).
func Union(want, have []VIP) []VIP {
	seen := make(map[netip.Addr]bool, len(want))
	for _, v := range want {
		seen[v.Addr] = true
	}
	for _, v := range have {
		if !seen[v.Addr] {
			want = append(want, v)
		}
	}
	return want
}

// PoolPeers names the BGP neighbors a pool's paths go to (a pool's
// [pools.advertise] peers): its host routes and covering prefixes, which
// lie within Prefixes, are sent to these neighbors only.
type PoolPeers struct {
	Pool string
	// Prefixes cover exactly the pool's addresses.
	Prefixes []netip.Prefix
	// Peers are gobgp.conf neighbors as written there: a neighbor-address,
	// or the interface of a neighbor-interface (unnumbered) neighbor.
	Peers []string
}

// Equal reports whether two pools' peer lists are the same.
func (p PoolPeers) Equal(o PoolPeers) bool {
	return p.Pool == o.Pool && slices.Equal(p.Prefixes, o.Prefixes) && slices.Equal(p.Peers, o.Peers)
}
