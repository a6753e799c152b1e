package routing

import (
	"net/netip"
)

// kernel is what the table needs from rtnetlink. The Linux implementation
// wraps a netlink handle bound to one namespace; unit tests use a fake.
type kernel interface {
	// ensureLink makes sure the interface exists and is up. kind is
	// "dummy" or "ifb"; when dummy is refused as unknown, the
	// implementation falls back to ifb and reports the kind it used;
	// setUp says the link had to be set up.
	ensureLink(name, kind string) (index int, usedKind string, created, setUp bool, err error)
	// linkIndex returns the interface's index, or 0 when it is absent.
	linkIndex(name string) (int, error)
	// listAddrs returns the host addresses (/32, /128, global unicast) on
	// the interface.
	listAddrs(index int) ([]netip.Addr, error)
	// addAddr adds a host address; an existing one is not an error.
	addAddr(index int, a netip.Addr) error
	// delAddr removes a host address; an absent one is not an error.
	delAddr(index int, a netip.Addr) error
	// deleteLink removes the interface; an absent one is not an error.
	deleteLink(name string) error
	// watch delivers link and address changes of the interface until
	// stop is closed. Errors (lost events) come as a change with Resync.
	watch(name string, stop <-chan struct{}) (<-chan change, error)
	close() error
}

// change is one kernel notification about our interface.
type change struct {
	// Index is the interface the change is about (0 for Resync).
	Index int
	// Resync: events may have been lost, compare everything.
	Resync bool
	// LinkGone: the interface was deleted.
	LinkGone bool
	// LinkDown: the interface went administratively down.
	LinkDown bool
	// AddrRemoved is set when an address left the interface.
	AddrRemoved netip.Addr
	// AddrAdded is set when an address appeared on the interface.
	AddrAdded netip.Addr
}

// isHostAddr reports whether a is the kind of address the table owns.
func isHostAddr(a netip.Addr, bits int) bool {
	if !a.IsValid() || bits != a.BitLen() {
		return false
	}
	return a.IsGlobalUnicast() && !a.IsLinkLocalUnicast()
}
