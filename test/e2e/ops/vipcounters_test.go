package ops_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// TestVIPCountersWithoutXDP: an agent with [layer2] fast-path = "off"
// counts each VIP's received traffic with nftables. A client sends 7
// pings to one VIP, 3 to another and 4 to an IPv6 VIP: the metrics
// (vipspeaker_vip_receive_{packets,bytes}_total{vip}) and `vipspeaker
// status` show exactly those, and vipspeaker_vip_receive_path says
// nftables. A restarted agent keeps the counts (it adopts the table); a
// removed Service's VIP leaves the metrics; an agent leaving for good
// (--remove-vips-on-exit) leaves no table behind; with [vip-counters]
// fallback = "off" nothing counts, and the table a restarted agent left is
// removed.
func TestVIPCountersWithoutXDP(t *testing.T) {
	t.Parallel()
	nstest.RequireRoot(t)
	l := lab.New(t)
	node, client := l.MustHost("node"), l.MustHost("client")
	l.MustLink(node, "eth1", []string{"198.18.8.1/30", "2001:db8:8::1/64"}, client, "eth0", []string{"198.18.8.2/30", "2001:db8:8::2/64"})
	const vipA, vipB, vip6 = "198.51.100.7", "198.51.100.8", "2001:db8:200::7"
	client.MustRun("ip", "route", "add", "198.51.100.0/24", "via", "198.18.8.1")
	client.MustRun("ip", "-6", "route", "add", "2001:db8:200::/64", "via", "2001:db8:8::1")
	bin := lab.Vipspeaker(t)
	a, err := lab.NewAgent(node, bin)
	if err != nil {
		t.Fatal(err)
	}
	toml := func(extra string) string {
		return lab.AgentTOML{
			Pools:  []lab.Pool{{Name: "web", Addresses: []string{"198.51.100.0/24", "2001:db8:200::/64"}}},
			Layer2: &lab.Layer2TOML{FastPath: "off"},
			Extra:  extra,
		}.String()
	}
	for _, err := range []error{
		a.WriteConfig("vipspeaker.toml", toml("")),
		a.WriteService(lab.ServiceFile{Name: "a", Pool: "web", Addresses: []string{vipA, vip6}}),
		a.WriteService(lab.ServiceFile{Name: "b", Pool: "web", Addresses: []string{vipB}}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	start := func(extra ...string) *lab.Process {
		t.Helper()
		p, err := a.Start(extra...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	stop := func(p *lab.Process) {
		t.Helper()
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("the agent did not stop:\n%s", lab.Tail(p.Log(), 20))
		}
	}
	// want: VIP -> packets; each ping is 56 bytes of data, 8 of ICMP and
	// the IP header.
	expect := func(p *lab.Process, want map[string]int) {
		t.Helper()
		lab.Eventually(t, 20*time.Second, 200*time.Millisecond, func() error {
			if p.Exited() {
				return fmt.Errorf("%w: the agent exited:\n%s", lab.ErrGiveUp, lab.Tail(p.Log(), 20))
			}
			m, err := node.Metrics()
			if err != nil {
				return err
			}
			if v := lab.MetricSum(m, "vipspeaker_vip_receive_path", map[string]string{"path": "nftables"}); v != 1 {
				return fmt.Errorf("vipspeaker_vip_receive_path{path=\"nftables\"} = %v, want 1", v)
			}
			for _, vip := range []string{vipA, vipB, vip6} {
				n, ok := want[vip]
				present := strings.Contains(m, `vipspeaker_vip_receive_packets_total{vip="`+vip+`"}`)
				if present != ok {
					return fmt.Errorf("%s: counted %v, want %v", vip, present, ok)
				}
				hdr := 20
				if strings.Contains(vip, ":") {
					hdr = 40
				}
				pk := lab.MetricSum(m, "vipspeaker_vip_receive_packets_total", map[string]string{"vip": vip})
				by := lab.MetricSum(m, "vipspeaker_vip_receive_bytes_total", map[string]string{"vip": vip})
				if pk != float64(n) || by != float64(n*(56+8+hdr)) {
					return fmt.Errorf("%s: %v packets, %v bytes; want %d and %d", vip, pk, by, n, n*(56+8+hdr))
				}
			}
			return nil
		})
	}
	ping := func(vip string, n int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if out, err := client.Run(ctx, "ping", "-n", "-q", "-c", strconv.Itoa(n), "-i", "0.1", "-W", "2", vip); err != nil {
			t.Fatalf("ping %s: %v\n%s", vip, err, out)
		}
	}
	hasTable := func() bool {
		return strings.Contains(node.MustRun("nft", "list", "tables"), "table inet vipspeaker")
	}

	p := start()
	expect(p, map[string]int{vipA: 0, vipB: 0, vip6: 0})
	ping(vipA, 7)
	ping(vipB, 3)
	ping(vip6, 4)
	want := map[string]int{vipA: 7, vipB: 3, vip6: 4}
	expect(p, want)
	status, err := node.Run(context.Background(), bin, "status", "--run-dir", a.RunDir)
	if err != nil {
		t.Fatalf("vipspeaker status: %v\n%s", err, status)
	}
	for vip, n := range want {
		// ADDRESS SERVICE MODE POOL ROLE OWNER RX-PACKETS RX-BYTES
		if row := fields(status, vip); len(row) < 2 || row[len(row)-2] != strconv.Itoa(n) {
			t.Errorf("vipspeaker status, %s: row %q, want %d received packets\n%s", vip, row, n, status)
		}
	}

	// A restart: the next agent adopts the table and its counts.
	stop(p)
	if !hasTable() {
		t.Fatal("the table went with a restarting agent")
	}
	p = start("--remove-vips-on-exit")
	expect(p, want)
	if err := a.RemoveService("b"); err != nil {
		t.Fatal(err)
	}
	delete(want, vipB)
	expect(p, want)

	// Leaving for good: no table left.
	stop(p)
	if hasTable() {
		t.Errorf("table inet vipspeaker left behind:\n%s", node.MustRun("nft", "list", "ruleset"))
	}

	// fallback = "off": no counters, and the table an earlier agent left
	// (restarted, not gone for good) is removed at start.
	p = start()
	expect(p, map[string]int{vipA: 0, vip6: 0})
	stop(p)
	if !hasTable() {
		t.Fatal("the table went with a restarting agent")
	}
	if err := a.WriteConfig("vipspeaker.toml", toml("[vip-counters]\nfallback = \"off\"\n")); err != nil {
		t.Fatal(err)
	}
	p = start()
	// The new agent is up once it serves its metrics and applied the
	// Services (vipspeaker_vips); by then it has decided how to count.
	var m string
	lab.Eventually(t, 20*time.Second, 200*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("%w: the agent exited:\n%s", lab.ErrGiveUp, lab.Tail(p.Log(), 20))
		}
		var err error
		if m, err = node.Metrics(); err != nil {
			return err
		}
		if v := lab.MetricSum(m, "vipspeaker_vips", nil); v != 2 {
			return fmt.Errorf("vipspeaker_vips = %v, want 2", v)
		}
		return nil
	})
	if strings.Contains(m, "vipspeaker_vip_receive") {
		t.Errorf("with fallback off, VIP receive metrics:\n%s", m)
	}
	if hasTable() {
		t.Errorf("with fallback off, table inet vipspeaker exists")
	}
}
