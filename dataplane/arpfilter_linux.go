package dataplane

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// DefaultARPFilterTable is the name of the nftables table (family arp) the
// ARP filter owns.
const DefaultARPFilterTable = "vipspeaker"

// The arp family's hooks (include/uapi/linux/netfilter_arp.h); nftables'
// ChainHookInput/Output are the inet family's numbers, which differ.
var (
	arpHookIn  = nftables.ChainHookRef(0) // NF_ARP_IN
	arpHookOut = nftables.ChainHookRef(1) // NF_ARP_OUT
)

// ARPFilterOptions configure an ARPFilter. The zero value means defaults.
type ARPFilterOptions struct {
	Logger *slog.Logger
	// Table is the nftables table's name (family arp); default
	// DefaultARPFilterTable.
	Table string
	// Enter runs fn in the network namespace of the layer2 interfaces, as
	// Options.Enter does for the Responder; nil runs it in the caller's.
	Enter func(fn func() error) error
}

// ARPFilter keeps the node's kernel silent about VIPs, the way
// arp_ignore=1 and arp_announce=2 do, but with CAP_NET_ADMIN alone: where
// /proc/sys is read-only (a container that is not privileged) those
// sysctls cannot be written. It owns one nftables table of the arp family:
//
//	table arp vipspeaker {
//	  set vips      { type ipv4_addr }  # the node's VIPs (kube-lb0)
//	  set not_owned { type ipv4_addr }  # layer2 VIPs another node owns
//	  chain input  { type filter hook input priority filter
//	                 arp htype 1 ptype ip hlen 6 plen 4 operation request
//	                 arp daddr ip @vips drop }
//	  chain output { type filter hook output priority filter
//	                 arp htype 1 ptype ip hlen 6 plen 4
//	                 arp saddr ip @not_owned drop }
//	}
//
// The input chain drops ARP requests for a VIP before the kernel's ARP code
// sees them (so no node's kernel answers; the owner's responder does). The
// arp input hook runs in arp_rcv, on the ARP handler's own reference to the
// frame; AF_PACKET sockets get theirs independently (packet_rcv, from the
// same protocol dispatch), and XDP runs before either, so the responder and
// the fast path still see every request (the kernel test checks the
// responder's answer with the filter in place). The output chain drops the ARP requests the kernel would send
// with a VIP this node does not own as sender address (arp_announce=0
// uses a packet's source address, e.g. a reset for a stale client's
// packet), which would point the neighbours' caches at the wrong node; the
// owner's own requests pass (they say the truth).
//
// Every Set rebuilds the whole table in one nftables transaction, so the
// kernel moves from the old rules to the new ones atomically: a table a
// previous agent left is replaced, with no moment without rules. Remove
// deletes the table (clean shutdown); an agent that restarts leaves it.
type ARPFilter struct {
	log   *slog.Logger
	table string
	enter func(func() error) error

	mu      sync.Mutex
	applied []netip.Addr // vips of the last successful Set
	notOwn  []netip.Addr
	ok      bool   // the last Set succeeded
	lastErr string // logged once until it changes
}

// NewARPFilter validates opts. It touches nothing in the kernel.
func NewARPFilter(opts ARPFilterOptions) (*ARPFilter, error) {
	log, table, enter, err := nftOwner(opts.Logger, "arpfilter", "arp filter", opts.Table, DefaultARPFilterTable, opts.Enter)
	if err != nil {
		return nil, err
	}
	f := &ARPFilter{log: log, table: table, enter: enter}
	return f, nil
}

// Set makes the table drop ARP requests for every IPv4 address in vips
// (the node's VIPs: no kernel answers for them; the owner's responder
// does) and the kernel's ARP packets whose sender is in notOwned (the
// layer2 VIPs another node owns). IPv6 addresses are ignored: the kernel
// answers a neighbour solicitation only for addresses on the receiving
// interface. An unchanged Set after a successful one does nothing.
func (f *ARPFilter) Set(vips, notOwned []netip.Addr) error {
	all, notOwn := ipv4Sorted(vips), ipv4Sorted(notOwned)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ok && slices.Equal(all, f.applied) && slices.Equal(notOwn, f.notOwn) {
		return nil
	}
	err := f.enter(func() error { return f.replace(all, notOwn) })
	if err != nil {
		f.ok = false
		if msg := err.Error(); msg != f.lastErr {
			f.lastErr = msg
			f.log.Error("cannot install the ARP filter; the kernel of every node holding a VIP may answer ARP for it", "table", "arp "+f.table, "err", err)
		}
		return err
	}
	if !f.ok {
		f.log.Info("ARP filter in place: the kernel does not answer ARP for VIPs; the responder does", "table", "arp "+f.table, "vips", len(all), "not_owned", len(notOwn))
	}
	f.ok, f.lastErr, f.applied, f.notOwn = true, "", all, notOwn
	return nil
}

// Remove deletes the table; a table that is not there is no error.
func (f *ARPFilter) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.enter(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		t := &nftables.Table{Family: nftables.TableFamilyARP, Name: f.table}
		c.AddTable(t) // so the delete cannot fail for want of the table
		c.DelTable(t)
		return c.Flush()
	})
	if err != nil {
		return fmt.Errorf("remove nftables table arp %s: %w", f.table, err)
	}
	f.ok, f.applied, f.notOwn = false, nil, nil
	f.log.Info("ARP filter removed", "table", "arp "+f.table)
	return nil
}

// replace rebuilds the table in one transaction.
func (f *ARPFilter) replace(vips, notOwned []netip.Addr) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyARP, Name: f.table}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	held := &nftables.Set{Table: t, Name: "vips", KeyType: nftables.TypeIPAddr}
	if err := c.AddSet(held, elements(vips)); err != nil {
		return fmt.Errorf("set vips: %w", err)
	}
	others := &nftables.Set{Table: t, Name: "not_owned", KeyType: nftables.TypeIPAddr}
	if err := c.AddSet(others, elements(notOwned)); err != nil {
		return fmt.Errorf("set not_owned: %w", err)
	}
	accept := nftables.ChainPolicyAccept
	in := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: arpHookIn, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	out := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: arpHookOut, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: arpMatch(arpOpRequest, arpTargetIP, held)})
	c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: arpMatch(0, arpSenderIP, others)})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("replace nftables table arp %s: %w", f.table, err)
	}
	return nil
}

// Offsets in an Ethernet/IPv4 ARP packet (RFC 826), from the ARP header.
const (
	arpOpRequest = 1
	arpSenderIP  = 14
	arpTargetIP  = 24
)

// arpMatch is "Ethernet/IPv4 ARP [with operation op] whose address at off
// is in set: drop" (op 0: any operation).
func arpMatch(op uint16, off uint32, set *nftables.Set) []expr.Any {
	load := func(o, n uint32) *expr.Payload {
		return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: o, Len: n}
	}
	eq := func(b ...byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b} }
	ex := []expr.Any{
		// hardware type 1, protocol 0x0800, lengths 6 and 4
		load(0, 6), eq(0x00, 0x01, 0x08, 0x00, 6, 4),
	}
	if op != 0 {
		ex = append(ex, load(6, 2), eq(byte(op>>8), byte(op)))
	}
	return append(ex,
		load(off, 4),
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
}

func elements(addrs []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, len(addrs))
	for i, a := range addrs {
		b := a.As4()
		out[i] = nftables.SetElement{Key: b[:]}
	}
	return out
}

// ipv4Sorted keeps the IPv4 addresses, unmapped, sorted, without repeats.
func ipv4Sorted(addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// nftOwner is what both nftables table owners (ARPFilter, VIPCounters)
// start from: a logger for their component, a table name the kernel
// accepts (what names it in the error), and the function that enters the
// node's network namespace.
func nftOwner(log *slog.Logger, component, what, table, defaultTable string, enter func(func() error) error) (*slog.Logger, string, func(func() error) error, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if table == "" {
		table = defaultTable
	}
	if len(table) > unix.NFT_TABLE_MAXNAMELEN-1 {
		return nil, "", nil, fmt.Errorf("%s table %q: longer than %d bytes", what, table, unix.NFT_TABLE_MAXNAMELEN-1)
	}
	if enter == nil {
		enter = func(fn func() error) error { return fn() }
	}
	return log.With("component", component), table, enter, nil
}
