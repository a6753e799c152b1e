package dataplane

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// DefaultVIPCountersTable is the name of the nftables table (family inet)
// VIPCounters owns. The ARP filter's table has the same name in the arp
// family; tables of different families do not collide.
const DefaultVIPCountersTable = "vipspeaker"

// VIPCountersOptions configure VIPCounters. The zero value means defaults.
type VIPCountersOptions struct {
	Logger *slog.Logger
	// Table is the nftables table's name (family inet); default
	// DefaultVIPCountersTable.
	Table string
	// Enter runs fn in the network namespace to count in; nil runs it in
	// the caller's.
	Enter func(fn func() error) error
	// Registerer, when set, gets vipspeaker_vip_receive_{packets,bytes}_total
	// and vipspeaker_vip_receive_path{path="nftables"}.
	Registerer prometheus.Registerer
}

// Traffic is what a VIP received.
type Traffic struct{ Packets, Bytes uint64 }

// VIPCounters counts each VIP's received traffic with nftables, for nodes
// where the XDP fast path does not run. It owns one table:
//
//	table inet vipspeaker {
//	  set vips4 { type ipv4_addr; counter }   # the node's IPv4 VIPs
//	  set vips6 { type ipv6_addr; counter }   # and IPv6 VIPs
//	  chain prerouting { type filter hook prerouting priority raw; policy accept
//	    meta iiftype != loopback meta nfproto ipv4 ip daddr @vips4
//	    meta iiftype != loopback meta nfproto ipv6 ip6 daddr @vips6 }
//	}
//
// A packet whose destination is in a set adds to that element's counter
// (packets, and bytes from the IP header on), one hash lookup per packet
// whatever the number of VIPs. The rules only match: nothing is dropped or
// changed. Priority raw (-300) counts before any filter of another table
// can drop the packet. Loopback is left out, so the node's own connections
// to its VIPs do not count (XDP sees none of them either).
//
// Set adds and deletes only the elements that changed: the other VIPs'
// counters keep running. An agent that restarts finds the table, keeps
// its counters and adopts it (the first Set makes the sets and chain what
// they should be, in one transaction); Remove deletes it (the agent
// leaves for good).
type VIPCounters struct {
	log   *slog.Logger
	table string
	enter func(func() error) error

	mu      sync.Mutex
	applied []netip.Addr
	ok      bool
	lastErr string
}

// NewVIPCounters validates opts and registers the metrics. It touches
// nothing in the kernel.
func NewVIPCounters(opts VIPCountersOptions) (*VIPCounters, error) {
	log, table, enter, err := nftOwner(opts.Logger, "vipcounters", "VIP counters", opts.Table, DefaultVIPCountersTable, opts.Enter)
	if err != nil {
		return nil, err
	}
	c := &VIPCounters{log: log, table: table, enter: enter}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(vipCountersCollector{c}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *VIPCounters) sets() (*nftables.Table, *nftables.Set, *nftables.Set) {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: c.table}
	return t,
		&nftables.Set{Table: t, Name: "vips4", KeyType: nftables.TypeIPAddr, Counter: true},
		&nftables.Set{Table: t, Name: "vips6", KeyType: nftables.TypeIP6Addr, Counter: true}
}

// Set makes the counted VIPs exactly vips. An unchanged Set after a
// successful one does nothing; failures are logged once until the error
// changes.
func (c *VIPCounters) Set(vips []netip.Addr) error {
	want := make([]netip.Addr, 0, len(vips))
	for _, a := range vips {
		want = append(want, a.Unmap())
	}
	slices.SortFunc(want, netip.Addr.Compare)
	want = slices.Compact(want)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ok && slices.Equal(want, c.applied) {
		return nil
	}
	err := c.enter(func() error { return c.apply(want) })
	if err != nil {
		c.ok = false
		if msg := err.Error(); msg != c.lastErr {
			c.lastErr = msg
			c.log.Error("cannot count VIP traffic with nftables", "table", "inet "+c.table, "err", err)
		}
		return err
	}
	if !c.ok {
		c.log.Info("nftables counts each VIP's received traffic", "table", "inet "+c.table, "vips", len(want))
	}
	c.ok, c.lastErr, c.applied = true, "", want
	return nil
}

// apply makes table, sets and chain what they should be and the sets'
// elements want, in one transaction; elements already there keep their
// counters.
func (c *VIPCounters) apply(want []netip.Addr) error {
	conn, err := nftables.New()
	if err != nil {
		return err
	}
	t, s4, s6 := c.sets()
	have := map[netip.Addr]bool{}
	if tr, err := c.read(conn); err == nil { // an error: no table yet
		for a := range tr {
			have[a] = true
		}
	}
	conn.AddTable(t)
	for _, s := range []*nftables.Set{s4, s6} {
		if err := conn.AddSet(s, nil); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	accept := nftables.ChainPolicyAccept
	ch := conn.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept})
	conn.FlushChain(ch)
	conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: countMatch(unix.NFPROTO_IPV4, 16, 4, s4)})
	conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: countMatch(unix.NFPROTO_IPV6, 24, 16, s6)})
	var add4, add6, del4, del6 []nftables.SetElement
	for _, a := range want {
		if have[a] {
			delete(have, a)
			continue
		}
		if a.Is4() {
			add4 = append(add4, nftables.SetElement{Key: a.AsSlice()})
		} else {
			add6 = append(add6, nftables.SetElement{Key: a.AsSlice()})
		}
	}
	for a := range have {
		if a.Is4() {
			del4 = append(del4, nftables.SetElement{Key: a.AsSlice()})
		} else {
			del6 = append(del6, nftables.SetElement{Key: a.AsSlice()})
		}
	}
	for _, op := range []struct {
		f   func(*nftables.Set, []nftables.SetElement) error
		s   *nftables.Set
		els []nftables.SetElement
	}{{conn.SetDeleteElements, s4, del4}, {conn.SetDeleteElements, s6, del6}, {conn.SetAddElements, s4, add4}, {conn.SetAddElements, s6, add6}} {
		if len(op.els) == 0 {
			continue
		}
		if err := op.f(op.s, op.els); err != nil {
			return fmt.Errorf("set %s: %w", op.s.Name, err)
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("update nftables table inet %s: %w", c.table, err)
	}
	return nil
}

// countMatch is "not from loopback, of protocol family proto, whose
// destination (len bytes at off in the network header) is in set".
func countMatch(proto byte, off, n uint32, set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFTYPE, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint16(unix.ARPHRD_LOOPBACK)},
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
	}
}

// read returns the counters of the table's elements.
func (c *VIPCounters) read(conn *nftables.Conn) (map[netip.Addr]Traffic, error) {
	_, s4, s6 := c.sets()
	out := map[netip.Addr]Traffic{}
	for _, s := range []*nftables.Set{s4, s6} {
		els, err := conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("read set inet %s %s: %w", c.table, s.Name, err)
		}
		for _, e := range els {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				continue
			}
			var tr Traffic
			if e.Counter != nil {
				tr = Traffic{Packets: e.Counter.Packets, Bytes: e.Counter.Bytes}
			}
			out[a] = tr
		}
	}
	return out, nil
}

// Traffic returns each counted VIP's packets and bytes.
func (c *VIPCounters) Traffic() (map[netip.Addr]Traffic, error) {
	var out map[netip.Addr]Traffic
	err := c.enter(func() error {
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		out, err = c.read(conn)
		return err
	})
	return out, err
}

// Remove deletes the table; a table that is not there is no error.
func (c *VIPCounters) Remove() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.enter(func() error {
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		t, _, _ := c.sets()
		conn.AddTable(t) // so the delete cannot fail for want of the table
		conn.DelTable(t)
		return conn.Flush()
	})
	if err != nil {
		return fmt.Errorf("remove nftables table inet %s: %w", c.table, err)
	}
	c.ok, c.applied = false, nil
	c.log.Info("VIP counters removed", "table", "inet "+c.table)
	return nil
}

// RemoveStale deletes the table a previous agent left when this one does
// not count with nftables (the fast path runs now, or the fallback is
// off). It reports whether there was one.
func (c *VIPCounters) RemoveStale() (bool, error) {
	found := false
	err := c.enter(func() error {
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		if _, err := conn.ListTableOfFamily(c.table, nftables.TableFamilyINet); err != nil {
			return nil // not there
		}
		found = true
		t, _, _ := c.sets()
		conn.DelTable(t)
		return conn.Flush()
	})
	if err != nil {
		return found, fmt.Errorf("remove nftables table inet %s: %w", c.table, err)
	}
	return found, nil
}

var (
	descNFTPackets = prometheus.NewDesc("vipspeaker_vip_receive_packets_total",
		"IP packets addressed to the VIP that reached the node's IP stack on any interface but loopback (nftables, prerouting).",
		[]string{"vip"}, nil)
	descNFTBytes = prometheus.NewDesc("vipspeaker_vip_receive_bytes_total",
		"Bytes of IP packets (IP header included) addressed to the VIP that reached the node's IP stack on any interface but loopback (nftables, prerouting).",
		[]string{"vip"}, nil)
	descNFTPath = prometheus.NewDesc("vipspeaker_vip_receive_path",
		"1 for the path that counts vipspeaker_vip_receive_*: xdp (the fast path, on its interfaces) or nftables (prerouting, every interface but loopback).",
		[]string{"path"}, nil)
)

// vipCountersCollector reads the sets at scrape time; the counters live in
// the kernel and survive agent restarts.
type vipCountersCollector struct{ c *VIPCounters }

func (k vipCountersCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descNFTPackets
	ch <- descNFTBytes
	ch <- descNFTPath
}

func (k vipCountersCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descNFTPath, prometheus.GaugeValue, 1, "nftables")
	k.c.mu.Lock()
	ok := k.c.ok
	k.c.mu.Unlock()
	if !ok {
		return // no table yet, or removed: nothing counted
	}
	tr, err := k.c.Traffic()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descNFTPackets, err)
		return
	}
	for a, v := range tr {
		ch <- prometheus.MustNewConstMetric(descNFTPackets, prometheus.CounterValue, float64(v.Packets), a.String())
		ch <- prometheus.MustNewConstMetric(descNFTBytes, prometheus.CounterValue, float64(v.Bytes), a.String())
	}
}
