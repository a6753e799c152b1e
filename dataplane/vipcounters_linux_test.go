package dataplane

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
)

// TestVIPCountersCountAdoptAndRemove, in a node namespace reached from a
// client namespace over a veth pair: pings to two VIPs (IPv4 and IPv6)
// show as exactly those packets and bytes in the nftables counters; a
// third address on the node, not a VIP, and the node's own pings to a
// VIP (loopback) are not counted. A second VIPCounters (the restarted
// agent) adopts the table with its counts; a VIP removed from the set
// leaves the other's count running; RemoveStale finds and deletes a table
// left behind; Remove leaves no table behind.
func TestVIPCountersCountAdoptAndRemove(t *testing.T) {
	nstest.RequireRoot(t)
	node, client := nstest.New(t), nstest.New(t)
	run(t, "ip", "link", "add", "eth0", "netns", node.Name, "type", "veth", "peer", "name", "eth0", "netns", client.Name)
	for _, c := range [][]string{
		{"ip", "-n", node.Name, "link", "set", "eth0", "up"},
		{"ip", "-n", client.Name, "link", "set", "eth0", "up"},
		{"ip", "-n", node.Name, "addr", "add", "198.18.0.2/24", "dev", "eth0"},
		{"ip", "-n", client.Name, "addr", "add", "198.18.0.1/24", "dev", "eth0"},
		{"ip", "-n", node.Name, "addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad"},
		{"ip", "-n", client.Name, "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad"},
		{"ip", "-n", node.Name, "addr", "add", "203.0.113.7/32", "dev", "lo"},
		{"ip", "-n", node.Name, "addr", "add", "203.0.113.8/32", "dev", "lo"},
		{"ip", "-n", node.Name, "addr", "add", "2001:db8:1::7/128", "dev", "lo", "nodad"},
		{"ip", "-n", client.Name, "route", "add", "203.0.113.0/24", "via", "198.18.0.2"},
		{"ip", "-n", client.Name, "route", "add", "2001:db8:1::/64", "via", "2001:db8::2"},
	} {
		run(t, c[0], c[1:]...)
	}
	vip4, vip6 := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8:1::7")
	ping := func(ns *nstest.NS, n string, dst netip.Addr) {
		t.Helper()
		if out, err := tryRun(20*time.Second, "ip", "netns", "exec", ns.Name, "ping", "-c", n, "-i", "0.05", "-W", "2", dst.String()); err != nil {
			t.Fatalf("ping %s: %v\n%s", dst, err, out)
		}
	}
	newCounters := func() *VIPCounters {
		c, err := NewVIPCounters(VIPCountersOptions{Enter: node.Do})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	want := func(c *VIPCounters, w map[netip.Addr]Traffic) {
		t.Helper()
		got, err := c.Traffic()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(w) {
			t.Errorf("counted VIPs %v; want %v", got, w)
		}
		for a, tr := range w {
			if got[a] != tr {
				t.Errorf("%s: %+v; want %+v", a, got[a], tr)
			}
		}
	}
	c := newCounters()
	if err := c.Set([]netip.Addr{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	ping(client, "5", vip4)
	ping(client, "3", vip6)
	ping(client, "4", netip.MustParseAddr("203.0.113.8")) // on the node, not counted
	ping(node, "2", vip4)                                 // the node itself: loopback
	// 56 bytes of data, 8 of ICMP, the IP header (20 or 40).
	want(c, map[netip.Addr]Traffic{vip4: {5, 5 * 84}, vip6: {3, 3 * 104}})

	// The restarted agent: the counts carry over.
	c = newCounters()
	if err := c.Set([]netip.Addr{vip6, vip4}); err != nil {
		t.Fatal(err)
	}
	want(c, map[netip.Addr]Traffic{vip4: {5, 5 * 84}, vip6: {3, 3 * 104}})
	if err := c.Set([]netip.Addr{vip4}); err != nil {
		t.Fatal(err)
	}
	ping(client, "2", vip4)
	want(c, map[netip.Addr]Traffic{vip4: {7, 7 * 84}})

	// A table left behind is found and removed by an agent that does not
	// count with nftables.
	if found, err := newCounters().RemoveStale(); err != nil || !found {
		t.Fatalf("RemoveStale: found %v, %v; want the table", found, err)
	}
	if found, err := newCounters().RemoveStale(); err != nil || found {
		t.Fatalf("RemoveStale again: found %v, %v; want nothing", found, err)
	}
	if err := c.Set([]netip.Addr{vip4}); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := node.Do(func() error {
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		tabs, err := conn.ListTables()
		if err != nil {
			return err
		}
		for _, tab := range tabs {
			t.Errorf("table %v %s left behind", tab.Family, tab.Name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
