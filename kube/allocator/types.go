package allocator

import (
	"cmp"
	"fmt"
	"net/netip"
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
	// Labels are the Service's labels (pools' service-selector).
	Labels map[string]string
	// NamespaceLabels are the labels of the Service's Namespace (pools'
	// namespace-selector); only read when a pool has one.
	NamespaceLabels map[string]string
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
	ReasonSelector     Reason = "ServiceNotSelected"
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
