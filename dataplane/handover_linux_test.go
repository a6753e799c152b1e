package dataplane

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/routing"
)

// TestHandoverKeepsConnectionsOfTheDrainingNode: on a flat segment a
// client holds TCP connections to a VIP served by node 0 (the draining
// node). Its neighbour entry then moves to node 1, as after a layer2
// handover or a router's next-hop change. Without a handover the next
// segment reaches node 1, which knows nothing of the connection: reset.
// With node 1's Handover pointed at node 0, the same happens to a fresh
// connection and it goes on answering from node 0; a new connection is
// served by node 1 itself; the metric counts the forwarded segments. With
// the target cleared, the tables are gone and a moved connection is reset
// again.
func TestHandoverKeepsConnectionsOfTheDrainingNode(t *testing.T) {
	nstest.RequireRoot(t)
	l := newL2Lab(t, 2)
	vip := netip.MustParseAddr("203.0.113.10")
	for i, n := range l.nodes {
		who := []string{"old", "new"}[i]
		var ln net.Listener
		if err := n.Do(func() (err error) {
			ln, err = net.Listen("tcp", vip.String()+":8080")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go serveLines(ln, who)
	}
	pin := func(node int) {
		t.Helper()
		run(t, "ip", "-n", l.client.Name, "neigh", "replace", vip.String(), "lladdr", l.macs[node], "dev", "br0", "nud", "permanent")
	}
	// dial opens a connection from the client to the VIP, with node 0
	// answering, and checks the first line.
	dial := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		pin(0)
		var c net.Conn
		if err := l.client.Do(func() (err error) {
			c, err = net.DialTimeout("tcp", vip.String()+":8080", 3*time.Second)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		r := bufio.NewReader(c)
		if got, err := exchange(c, r, "one"); err != nil || got != "old one" {
			t.Fatalf("first line: %q, %v; want \"old one\"", got, err)
		}
		return c, r
	}

	// Without a handover: the moved connection is reset.
	c, r := dial()
	pin(1)
	if got, err := exchange(c, r, "two"); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("moved connection without a handover: %q, %v; want a reset", got, err)
	}

	table, err := routing.New(routing.Options{Kind: "ifb", NetnsPath: l.nodes[1].Path(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	reg := prometheus.NewRegistry()
	h, err := NewHandover(HandoverOptions{Enter: l.nodes[1].Do, Logger: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- table.Run(ctx) }()
	<-table.Ready()
	if err := table.Set(ctx, []routing.VIP{{Addr: vip}}); err != nil {
		t.Fatal(err)
	}
	go func() { done <- h.Run(ctx, table) }()
	h.SetTargets([]netip.Addr{netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("198.18.0.10")})
	waitFor(t, 5*time.Second, "handover table in node 1", func() bool { return tableThere(l.nodes[1], nftables.TableFamilyIPv4) })
	if tableThere(l.nodes[1], nftables.TableFamilyIPv6) {
		t.Error("an ip6 table without an IPv6 VIP")
	}

	c, r = dial()
	pin(1)
	for _, line := range []string{"two", "three"} {
		if got, err := exchange(c, r, line); err != nil || got != "old "+line {
			t.Fatalf("moved connection with the handover: %q, %v; want \"old %s\"", got, err, line)
		}
	}
	var c2 net.Conn
	if err := l.client.Do(func() (err error) {
		c2, err = net.DialTimeout("tcp", vip.String()+":8080", 3*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := exchange(c2, bufio.NewReader(c2), "hello"); err != nil || got != "new hello" {
		t.Fatalf("new connection during the handover: %q, %v; want \"new hello\"", got, err)
	}
	if n := testutil.ToFloat64(handoverCollector{h}); n < 2 {
		t.Errorf("vipspeaker_handover_forwarded_packets_total = %v; want at least the two segments sent", n)
	}

	h.SetTargets(nil)
	waitFor(t, 5*time.Second, "handover table gone", func() bool { return !tableThere(l.nodes[1], nftables.TableFamilyIPv4) })
	c, r = dial()
	pin(1)
	if got, err := exchange(c, r, "four"); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("moved connection after the handover ended: %q, %v; want a reset", got, err)
	}
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// serveLines answers each line of each connection with who and the line.
func serveLines(ln net.Listener, who string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			s := bufio.NewScanner(c)
			for s.Scan() {
				if _, err := c.Write([]byte(who + " " + s.Text() + "\n")); err != nil {
					return
				}
			}
		}()
	}
}

// exchange sends a line and reads the answer.
func exchange(c net.Conn, r *bufio.Reader, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	got, err := r.ReadString('\n')
	return strings.TrimSpace(got), err
}

func tableThere(ns *nstest.NS, fam nftables.TableFamily) bool {
	found := false
	_ = ns.Do(func() error {
		conn, err := nftables.New()
		if err != nil {
			return err
		}
		_, err = conn.ListTableOfFamily(DefaultHandoverTable, fam)
		found = err == nil
		return nil
	})
	return found
}
