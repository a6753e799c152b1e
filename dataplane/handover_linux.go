package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vipspeaker/vipspeaker/routing"
)

// DefaultHandoverTable is the name of the nftables tables (families ip and
// ip6) Handover owns while a node drains. Tables of different families do
// not collide with the counters' (inet) and the ARP filter's (arp).
const DefaultHandoverTable = "vipspeaker"

// HandoverOptions configure a Handover. The zero value means defaults.
type HandoverOptions struct {
	Logger *slog.Logger
	// Table is the nftables tables' name; default DefaultHandoverTable.
	Table string
	// Enter runs fn in the node's network namespace; nil runs it in the
	// caller's.
	Enter func(fn func() error) error
	// Registerer, when set, gets vipspeaker_handover_forwarded_packets_total.
	Registerer prometheus.Registerer
}

// Handover keeps the TCP connections of a draining node alive after its
// VIPs' traffic has moved to this node. When a node is cordoned, the
// others take over its VIPs (the router's next hops, the layer2 owner's
// ARP answer), and the packets of connections the draining node carried
// arrive here, where conntrack knows nothing of them: kube-proxy would
// send them to some backend that answers with a reset. With a target set,
// Handover owns, per address family with a VIP:
//
//	table ip vipspeaker {
//	  set vips { type ipv4_addr }  # the node's VIPs
//	  chain handover { type filter hook prerouting priority mangle
//	    ip daddr @vips meta l4proto tcp tcp flags & syn == 0
//	      ct state new,invalid counter dup to TARGET device IFACE drop }
//	}
//
// A TCP segment without SYN that conntrack has not seen belongs to a
// connection opened elsewhere: it goes, unchanged, to the draining node on
// the link (whose conntrack entry and kube-proxy NAT carry it on, and whose
// answers go to the client directly) and is dropped here. New connections
// (SYN) and the connections this node carries are untouched. Priority
// mangle (-150) runs after conntrack (-200) and before kube-proxy's NAT
// (-100). Only a target on a directly connected subnet is used: a copy
// sent through a router would come back by the router's own route for the
// VIP. Without a target the tables are gone: nothing is matched.
type Handover struct {
	log   *slog.Logger
	table string
	enter func(func() error) error

	mu      sync.Mutex
	targets []netip.Addr
	vips    map[netip.Addr]bool
	kick    chan struct{}
	applied string // description of what is in the kernel ("" none)
	lastErr string
	base    uint64 // packets forwarded by tables since removed
}

// NewHandover validates opts and registers the metric; it touches nothing
// in the kernel.
func NewHandover(opts HandoverOptions) (*Handover, error) {
	log, table, enter, err := nftOwner(opts.Logger, "handover", "handover", opts.Table, DefaultHandoverTable, opts.Enter)
	if err != nil {
		return nil, err
	}
	h := &Handover{log: log, table: table, enter: enter, vips: map[netip.Addr]bool{}, kick: make(chan struct{}, 1)}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(handoverCollector{h}); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// SetTargets names the draining node's addresses (at most one per family
// is used; nil: no node drains). It returns at once; Run applies it.
func (h *Handover) SetTargets(addrs []netip.Addr) {
	h.mu.Lock()
	h.targets = slices.Clone(addrs)
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// Run follows the VIP table and keeps the tables as the targets and VIPs
// say until ctx ends, then removes them (a restarting agent's successor
// puts them back if a node still drains).
func (h *Handover) Run(ctx context.Context, table interface {
	Subscribe() *routing.Subscription
}) error {
	sub := table.Subscribe()
	defer sub.Close()
	defer h.set(nil, nil)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.Ready():
			h.mu.Lock()
			for _, ev := range sub.Next() {
				if ev.Kind == routing.Removed {
					delete(h.vips, ev.VIP.Addr)
				} else {
					h.vips[ev.VIP.Addr.Unmap()] = true
				}
			}
			h.mu.Unlock()
		case <-h.kick:
		}
		h.mu.Lock()
		targets, vips := slices.Clone(h.targets), make([]netip.Addr, 0, len(h.vips))
		for a := range h.vips {
			vips = append(vips, a)
		}
		h.mu.Unlock()
		h.set(targets, vips)
	}
}

// handoverFamily is one address family's part of the tables.
type handoverFamily struct {
	family  nftables.TableFamily
	target  netip.Addr
	oif     int
	ifname  string
	vips    []netip.Addr
	addrOff uint32
	keyType nftables.SetDatatype
}

func (f handoverFamily) String() string {
	return fmt.Sprintf("%s via %s: %d VIPs", f.target, f.ifname, len(f.vips))
}

// set makes the kernel hold the tables for targets and vips (none when
// either is empty).
func (h *Handover) set(targets, vips []netip.Addr) {
	slices.SortFunc(vips, netip.Addr.Compare)
	var fams []handoverFamily
	var was, now string
	err := h.enter(func() error {
		var err error
		fams, err = h.families(targets, vips)
		if err != nil {
			return err
		}
		desc := fmt.Sprint(fams)
		if len(fams) == 0 {
			desc = ""
		}
		h.mu.Lock()
		same := desc == h.applied
		h.mu.Unlock()
		if same {
			return nil
		}
		if err := h.apply(fams); err != nil {
			return err
		}
		h.mu.Lock()
		was, now = h.applied, desc
		h.applied = desc
		h.mu.Unlock()
		return nil
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.lastErr = ""
		switch {
		case was == now:
		case now == "":
			h.log.Info("handover ended: no draining node to forward to", "was", was, "forwarded_packets", h.base)
		default:
			h.log.Info("handover: TCP segments of connections this node has not seen go to the draining node", "to", now)
		}
		return
	}
	if msg := err.Error(); msg != h.lastErr {
		h.lastErr = msg
		h.log.Error("cannot forward a draining node's connections to it", "targets", targets, "error", err)
	}
}

// families resolves, per family, the first target on a directly connected
// subnet and the VIPs of that family.
func (h *Handover) families(targets, vips []netip.Addr) ([]handoverFamily, error) {
	if len(targets) == 0 || len(vips) == 0 {
		return nil, nil
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, err
	}
	defer nl.Close()
	var out []handoverFamily
	for _, is4 := range []bool{true, false} {
		f := handoverFamily{family: nftables.TableFamilyIPv4, addrOff: 16, keyType: nftables.TypeIPAddr}
		if !is4 {
			f.family, f.addrOff, f.keyType = nftables.TableFamilyIPv6, 24, nftables.TypeIP6Addr
		}
		for _, a := range vips {
			if a.Is4() == is4 {
				f.vips = append(f.vips, a)
			}
		}
		for _, t := range targets {
			t = t.Unmap()
			if t.Is4() != is4 || len(f.vips) == 0 {
				continue
			}
			rs, err := nl.RouteGet(t.AsSlice())
			if err != nil || len(rs) == 0 || rs[0].Gw != nil || rs[0].Type == unix.RTN_LOCAL {
				h.log.Debug("handover target not on a directly connected subnet; not used", "target", t, "error", err)
				continue
			}
			l, err := nl.LinkByIndex(rs[0].LinkIndex)
			if err != nil {
				continue
			}
			f.target, f.oif, f.ifname = t, rs[0].LinkIndex, l.Attrs().Name
			out = append(out, f)
			break
		}
	}
	return out, nil
}

// apply replaces the tables with fams in one transaction.
func (h *Handover) apply(fams []handoverFamily) error {
	conn, err := nftables.New()
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.base += h.readForwarded(conn)
	h.mu.Unlock()
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		t := &nftables.Table{Family: fam, Name: h.table}
		conn.AddTable(t) // so the delete cannot fail for want of the table
		conn.DelTable(t)
	}
	for _, f := range fams {
		t := conn.AddTable(&nftables.Table{Family: f.family, Name: h.table})
		set := &nftables.Set{Table: t, Name: "vips", KeyType: f.keyType}
		els := make([]nftables.SetElement, 0, len(f.vips))
		for _, a := range f.vips {
			els = append(els, nftables.SetElement{Key: a.AsSlice()})
		}
		if err := conn.AddSet(set, els); err != nil {
			return fmt.Errorf("set vips: %w", err)
		}
		accept := nftables.ChainPolicyAccept
		ch := conn.AddChain(&nftables.Chain{Name: "handover", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &accept})
		conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.addrOff, Len: uint32(len(f.target.AsSlice()))},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x02}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW | expr.CtStateBitINVALID), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Counter{},
			&expr.Immediate{Register: 1, Data: f.target.AsSlice()},
			&expr.Immediate{Register: 2, Data: binaryutil.NativeEndian.PutUint32(uint32(f.oif))},
			&expr.Dup{RegAddr: 1, RegDev: 2, IsRegDevSet: true},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("update nftables tables ip/ip6 %s: %w", h.table, err)
	}
	return nil
}

// readForwarded sums the packets the tables' rules have forwarded (0 when
// there are none).
func (h *Handover) readForwarded(conn *nftables.Conn) uint64 {
	var n uint64
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		t := &nftables.Table{Family: fam, Name: h.table}
		rules, err := conn.GetRules(t, &nftables.Chain{Name: "handover", Table: t})
		if err != nil {
			continue
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if c, ok := e.(*expr.Counter); ok {
					n += c.Packets
				}
			}
		}
	}
	return n
}

// forwarded returns the packets forwarded since the agent started.
func (h *Handover) forwarded() uint64 {
	var n uint64
	_ = h.enter(func() error {
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		n = h.readForwarded(conn)
		return nil
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.base + n
}

var descHandoverPackets = prometheus.NewDesc("vipspeaker_handover_forwarded_packets_total",
	"TCP segments of connections this node had not seen, sent on to the draining node that carried them (nftables, while a node drains).",
	nil, nil)

type handoverCollector struct{ h *Handover }

func (k handoverCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descHandoverPackets }

func (k handoverCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descHandoverPackets, prometheus.CounterValue, float64(k.h.forwarded()))
}
