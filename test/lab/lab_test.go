package lab_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// namespaces lists `ip netns list`.
func namespaces(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func withPrefix(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

// gone reports whether pid no longer runs (missing or a zombie).
func gone(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
			return nil
		}
	}
	return fmt.Errorf("pid %d still runs: %s", pid, s)
}

func TestLinkPingIPv4IPv6(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	a, b := l.MustHost("a"), l.MustHost("b")
	l.MustLink(a, "eth0", []string{"198.18.0.1/30", "2001:db8:18::1/64"},
		b, "eth0", []string{"198.18.0.2/30", "2001:db8:18::2/64"})

	for _, c := range []struct {
		from *lab.Host
		to   string
	}{
		{a, "198.18.0.2"}, {b, "198.18.0.1"},
		{a, "2001:db8:18::2"}, {b, "2001:db8:18::1"},
	} {
		if err := c.from.Ping(c.to); err != nil {
			t.Error(err)
		}
	}
	// The link is exactly between a and b: an address nobody holds does
	// not answer.
	if err := a.Ping("198.18.0.3"); err == nil {
		t.Error("ping 198.18.0.3 from a: got a reply from an address nobody holds")
	}
}

func TestBridgeThreeHosts(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	sw := l.MustHost("sw")
	l.MustBridge(sw, "br0", nil)
	hosts := map[string]*lab.Host{}
	for i, n := range []string{"n1", "n2", "n3"} {
		h := l.MustHost(n)
		l.MustLinkToBridge(h, "eth0", []string{
			fmt.Sprintf("198.18.1.%d/24", i+1),
			fmt.Sprintf("2001:db8:18:1::%d/64", i+1),
		}, sw, "br0")
		hosts[n] = h
	}
	for i, from := range []string{"n1", "n2", "n3"} {
		for j := range 3 {
			if i == j {
				continue
			}
			for _, to := range []string{fmt.Sprintf("198.18.1.%d", j+1), fmt.Sprintf("2001:db8:18:1::%d", j+1)} {
				if err := hosts[from].Ping(to); err != nil {
					t.Error(err)
				}
			}
		}
	}
	// n1 learnt the MACs of both other hosts on the one segment.
	out := hosts["n1"].MustRun("ip", "neigh", "show", "dev", "eth0")
	for _, want := range []string{"198.18.1.2", "198.18.1.3"} {
		if !strings.Contains(out, want) {
			t.Errorf("n1 neighbour table lacks %s:\n%s", want, out)
		}
	}
}

func TestRouterForwardingAndECMP(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	a, r, b := l.MustHost("a"), l.MustHost("r"), l.MustHost("b")
	// a has two links to r; b one.
	l.MustLink(a, "up0", []string{"198.18.4.2/30"}, r, "a0", []string{"198.18.4.1/30"})
	l.MustLink(a, "up1", []string{"198.18.4.6/30"}, r, "a1", []string{"198.18.4.5/30"})
	l.MustLink(b, "eth0", []string{"198.18.4.10/30", "2001:db8:18:4::2/64"}, r, "b0", []string{"198.18.4.9/30", "2001:db8:18:4::1/64"})
	l.MustLink(a, "up2", []string{"2001:db8:18:5::2/64"}, r, "a2", []string{"2001:db8:18:5::1/64"})

	if got, err := r.ReadSysctl("net.ipv4.ip_forward"); err != nil || got != "0" {
		t.Fatalf("ip_forward of a new host = %q, %v; want 0", got, err)
	}
	if err := b.AddRoute("default", "198.18.4.9"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddRoute("default6", "2001:db8:18:4::1"); err != nil {
		t.Fatal(err)
	}
	if err := a.AddRoute("198.18.4.8/30", "198.18.4.1", "198.18.4.5"); err != nil {
		t.Fatal(err)
	}
	if err := a.AddRoute("2001:db8:18:4::/64", "2001:db8:18:5::1"); err != nil {
		t.Fatal(err)
	}
	rt, ok, err := a.KernelRoute("198.18.4.8/30")
	if err != nil || !ok {
		t.Fatalf("route 198.18.4.8/30 on a: found %v, %v", ok, err)
	}
	want := []netip.Addr{netip.MustParseAddr("198.18.4.1"), netip.MustParseAddr("198.18.4.5")}
	if diff := cmp.Diff(want, rt.Gateways, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("ECMP gateways (-want +got):\n%s", diff)
	}

	// Without forwarding r drops a's packets to b.
	if err := a.Ping("198.18.4.10"); err == nil {
		t.Fatal("ping through r without forwarding: got a reply")
	}
	if err := r.EnableForwarding(); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"198.18.4.10", "2001:db8:18:4::2"} {
		if err := a.Ping(to); err != nil {
			t.Error(err)
		}
	}
}

func TestProcessLogStopAndTeardown(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	h := l.MustHost("h")
	other := l.MustHost("other")

	p, err := h.Start("talker", []string{"sh", "-c", "echo hello; exec sleep 300"})
	if err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(p.Log(), "hello\n") {
			return fmt.Errorf("log of talker: %q", p.Log())
		}
		return nil
	})
	// It runs inside h's namespace.
	var nsSt, procSt syscall.Stat_t
	if err := syscall.Stat(h.NetnsPath(), &nsSt); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", p.PID()), &procSt); err != nil {
		t.Fatal(err)
	}
	if nsSt.Ino != procSt.Ino {
		t.Errorf("talker's network namespace is inode %d, host h's is %d", procSt.Ino, nsSt.Ino)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Fatal("talker still running after Stop")
	}
	var ee *exec.ExitError
	if err := p.Wait(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("talker exit = %v, want killed by SIGTERM", err)
	}

	// Processes the lab knows, and one that escaped into its own session.
	sleeper, err := other.Start("sleeper", []string{"sleep", "300"})
	if err != nil {
		t.Fatal(err)
	}
	out := h.MustRun("sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!")
	escaped, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("pid of escaped sleep: %q", out)
	}
	if err := gone(escaped); err == nil {
		t.Fatalf("escaped sleep %d is not running", escaped)
	}
	if got := withPrefix(namespaces(t), l.Prefix()); len(got) != 2 {
		t.Fatalf("namespaces of the lab before teardown: %v, want 2", got)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := withPrefix(namespaces(t), l.Prefix()); len(got) != 0 {
		t.Errorf("namespaces left after teardown: %v", got)
	}
	for _, pid := range []int{sleeper.PID(), escaped} {
		lab.Eventually(t, 2*time.Second, 20*time.Millisecond, func() error { return gone(pid) })
	}
	if _, err := os.Stat(l.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lab folder %s after teardown: %v", l.Dir(), err)
	}
	if _, err := h.Start("late", []string{"true"}); err == nil {
		t.Error("Start on a closed lab succeeded")
	}
}

func TestSweepStale(t *testing.T) {
	nstest.RequireRoot(t)
	// A PID that is surely dead: a process we started and reaped.
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	dead := c.Process.Pid
	if err := syscall.Kill(dead, 0); !errors.Is(err, syscall.ESRCH) {
		t.Skipf("pid %d was reused already", dead)
	}
	name := fmt.Sprintf("vl%d-1-stale", dead)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	// A leftover daemon inside it, not our child any more.
	out, err := exec.Command("sh", "-c", "ip netns exec "+name+" setsid sleep 300 >/dev/null 2>&1 & echo $!").CombinedOutput()
	if err != nil {
		t.Fatalf("start leftover: %v: %s", err, out)
	}
	leftover, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	frrDir := filepath.Join("/var/run/frr", name)
	if err := os.MkdirAll(frrDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(frrDir) })
	// A namespace of a live process (this one) stays.
	live := fmt.Sprintf("vl%d-999999-live", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", live).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", live).Run() })

	lab.New(t)

	ns := namespaces(t)
	if got := withPrefix(ns, name); len(got) != 0 {
		t.Errorf("stale namespace %s survived New", name)
	}
	if got := withPrefix(ns, live); len(got) != 1 {
		t.Errorf("namespace %s of a live process was swept", live)
	}
	if leftover > 0 {
		lab.Eventually(t, 2*time.Second, 20*time.Millisecond, func() error { return gone(leftover) })
	}
	if _, err := os.Stat(frrDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale FRR folder %s: %v", frrDir, err)
	}
}

// TestPersistentHelper is run by TestPersistentTeardownFromAnotherProcess
// in a child process; it builds a persistent lab and exits, leaving the lab
// running.
func TestPersistentHelper(t *testing.T) {
	name, dir := os.Getenv("LAB_HELPER_NAME"), os.Getenv("LAB_HELPER_DIR")
	if name == "" {
		return // only a helper for TestPersistentTeardownFromAnotherProcess
	}
	l, err := lab.NewPersistent(name, dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.Host("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Host("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Link(a, "eth0", []string{"198.18.6.1/30"}, b, "eth0", []string{"198.18.6.2/30"}); err != nil {
		t.Fatal(err)
	}
	p, err := a.Start("sleeper", []string{"sleep", "300"})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("PID %d\n", p.PID())
}

// persistentHelper runs TestPersistentHelper in a child process.
func persistentHelper(name, dir string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestPersistentHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "LAB_HELPER_NAME="+name, "LAB_HELPER_DIR="+dir)
	return cmd
}

func TestPersistentTeardownFromAnotherProcess(t *testing.T) {
	nstest.RequireRoot(t)
	name := fmt.Sprintf("vlp%d", os.Getpid())
	dir := filepath.Join(t.TempDir(), "state")
	t.Cleanup(func() { _ = lab.Teardown(name, dir) })

	out, err := persistentHelper(name, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var pid int
	for _, line := range strings.Split(string(out), "\n") {
		if _, err := fmt.Sscanf(line, "PID %d", &pid); err == nil {
			break
		}
	}
	if pid == 0 {
		t.Fatalf("helper printed no PID:\n%s", out)
	}
	// The creator is gone; its lab is not.
	if err := gone(pid); err == nil {
		t.Fatalf("process %d of the persistent lab died with its creator", pid)
	}
	if got := withPrefix(namespaces(t), name+"-"); len(got) != 2 {
		t.Fatalf("namespaces of the persistent lab: %v, want 2", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil || !strings.Contains(string(b), strconv.Itoa(pid)) {
		t.Fatalf("lab.json does not record pid %d: %v\n%s", pid, err, b)
	}

	// Building it again tears the first one down first.
	out, err = persistentHelper(name, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("helper again: %v\n%s", err, out)
	}
	first := pid
	pid = 0
	for _, line := range strings.Split(string(out), "\n") {
		if _, err := fmt.Sscanf(line, "PID %d", &pid); err == nil {
			break
		}
	}
	lab.Eventually(t, 2*time.Second, 20*time.Millisecond, func() error { return gone(first) })
	if err := gone(pid); err == nil {
		t.Fatalf("process %d of the second persistent lab is not running", pid)
	}
	if got := withPrefix(namespaces(t), name+"-"); len(got) != 2 {
		t.Fatalf("namespaces of the second persistent lab: %v, want 2", got)
	}

	if err := lab.Teardown(name, dir); err != nil {
		t.Fatal(err)
	}
	if got := withPrefix(namespaces(t), name+"-"); len(got) != 0 {
		t.Errorf("namespaces left after Teardown: %v", got)
	}
	lab.Eventually(t, 2*time.Second, 20*time.Millisecond, func() error { return gone(pid) })
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state folder after Teardown: %v", err)
	}
	// Teardown of a lab that is gone is fine.
	if err := lab.Teardown(name, dir); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
}

func requireFRR(t *testing.T) {
	t.Helper()
	if err := lab.HaveFRR(); err != nil {
		nstest.Skip(t, "%v", err)
	}
}

func requireBIRD(t *testing.T) {
	t.Helper()
	if err := lab.HaveBIRD(); err != nil {
		nstest.Skip(t, "%v", err)
	}
}

// frrBGPConf is bgpd's config for one eBGP neighbor.
func frrBGPConf(as int, routerID, peer string, peerAS int) string {
	return lab.FRRBGPConf{Hostname: "frr", AS: as, RouterID: routerID,
		Neighbors: []lab.FRRNeighbor{{Addr: peer, AS: peerAS, Timers: "3 9", ConnectRetry: 5}}}.String()
}

func TestFRRAndBIRDPeer(t *testing.T) {
	t.Parallel()
	requireFRR(t)
	requireBIRD(t)
	l := lab.New(t)
	fh, bh := l.MustHost("frr"), l.MustHost("bird")
	l.MustLink(fh, "eth0", []string{"198.18.2.1/30", "2001:db8:18:2::1/64"},
		bh, "eth0", []string{"198.18.2.2/30", "2001:db8:18:2::2/64"})

	// One IPv4 session and one IPv6 session.
	frr, err := fh.StartFRR(lab.FRRConfig{BGPd: frrBGPConf(65001, "198.18.2.1", "198.18.2.2", 65002) + `
router bgp 65001
 neighbor 2001:db8:18:2::2 remote-as 65002
 neighbor 2001:db8:18:2::2 timers 3 9
 neighbor 2001:db8:18:2::2 timers connect 5
 address-family ipv6 unicast
  neighbor 2001:db8:18:2::2 activate
 exit-address-family
!
`})
	if err != nil {
		t.Fatal(err)
	}
	bird, err := bh.StartBIRD(`
log stderr all;
router id 198.18.2.2;
protocol device {}
protocol static vips {
	ipv4;
	route 198.51.100.0/24 blackhole;
}
protocol static vips6 {
	ipv6;
	route 2001:db8:100::/48 blackhole;
}
protocol bgp frr {
	local 198.18.2.2 as 65002;
	neighbor 198.18.2.1 as 65001;
	connect retry time 2;
	ipv4 {
		import all;
		export where source = RTS_STATIC;
	};
}
protocol bgp frr6 {
	local 2001:db8:18:2::2 as 65002;
	neighbor 2001:db8:18:2::1 as 65001;
	connect retry time 2;
	ipv6 {
		import all;
		export where source = RTS_STATIC;
	};
}
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, peer := range []string{"198.18.2.2", "2001:db8:18:2::2"} {
		if err := frr.WaitEstablished(peer, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"frr", "frr6"} {
		if err := bird.WaitEstablished(p, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	vip := netip.MustParsePrefix("198.51.100.0/24")
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		rs, err := frr.RoutesIPv4()
		if err != nil {
			return err
		}
		if nh := rs[vip]; len(nh) != 1 || nh[0] != netip.MustParseAddr("198.18.2.2") {
			return fmt.Errorf("FRR's BGP table: %v = %v, want next hop 198.18.2.2 (all: %v)", vip, nh, rs)
		}
		return nil
	})
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		r, ok, err := fh.KernelRoute(vip.String())
		if err != nil {
			return err
		}
		if !ok || r.Protocol != "bgp" || len(r.Gateways) != 1 || r.Gateways[0].String() != "198.18.2.2" {
			return fmt.Errorf("FRR's kernel route to %v: %+v (found %v), want bgp via 198.18.2.2", vip, r, ok)
		}
		return nil
	})
	paths, err := frr.BGPRoutes("ipv4")
	if err != nil {
		t.Fatal(err)
	}
	if p := paths[vip]; len(p) != 1 || !p[0].Best || p[0].ASPath != "65002" {
		t.Errorf("FRR's paths for %v: %+v, want one best path with AS path 65002", vip, p)
	}

	vip6 := netip.MustParsePrefix("2001:db8:100::/48")
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		rs, err := frr.RoutesIPv6()
		if err != nil {
			return err
		}
		if nh := rs[vip6]; !slices.Contains(nh, netip.MustParseAddr("2001:db8:18:2::2")) {
			return fmt.Errorf("FRR's BGP table: %v = %v, want next hop 2001:db8:18:2::2 (all: %v)", vip6, nh, rs)
		}
		return nil
	})
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		r, ok, err := fh.KernelRoute(vip6.String())
		if err != nil {
			return err
		}
		if !ok || r.Protocol != "bgp" || len(r.Devs) != 1 || r.Devs[0] != "eth0" {
			return fmt.Errorf("FRR's kernel route to %v: %+v (found %v), want bgp via eth0", vip6, r, ok)
		}
		return nil
	})
	// The BIRD side sees FRR as up too, through birdc.
	out, err := bird.Birdc("show protocols all frr")
	if err != nil || !strings.Contains(out, "Established") {
		t.Errorf("birdc show protocols all frr: %v\n%s", err, out)
	}

	// FRR's folders go away with the lab.
	etc := frr.ConfigDir()
	if _, err := os.Stat(filepath.Join(etc, "bgpd.conf")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{etc, filepath.Join("/var/run/frr", fh.NetnsName())} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("FRR folder %s after teardown: %v", d, err)
		}
	}
	for _, p := range l.Processes() {
		if err := gone(p.PID()); err != nil {
			t.Errorf("%s: %v", p.Name(), err)
		}
	}
}

func TestGoBGPdPeersWithFRR(t *testing.T) {
	t.Parallel()
	requireFRR(t)
	nstest.RequireRoot(t)
	if _, _, err := lab.GoBGPBinaries(); err != nil {
		nstest.Skip(t, "gobgpd from the module proxy: %v", err)
	}
	l := lab.New(t)
	fh, gh := l.MustHost("frr"), l.MustHost("gobgp")
	l.MustLink(fh, "eth0", []string{"198.18.3.1/30"}, gh, "eth0", []string{"198.18.3.2/30"})

	frr, err := fh.StartFRR(lab.FRRConfig{BGPd: frrBGPConf(65001, "198.18.3.1", "198.18.3.2", 65003)})
	if err != nil {
		t.Fatal(err)
	}
	g, err := gh.StartGoBGPd(lab.GoBGPConf{AS: 65003, RouterID: "198.18.3.2", Neighbors: []lab.GoBGPNeighbor{
		{Address: "198.18.3.1", PeerAS: 65001, ConnectRetry: 2, HoldTime: 9, KeepaliveInterval: 3}}}.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := g.WaitEstablished("198.18.3.1", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := frr.WaitEstablished("198.18.3.2", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if out, err := g.CLI("global", "rib", "add", "203.0.113.7/32", "-a", "ipv4"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	vip := netip.MustParsePrefix("203.0.113.7/32")
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		rs, err := frr.RoutesIPv4()
		if err != nil {
			return err
		}
		if nh := rs[vip]; len(nh) != 1 || nh[0] != netip.MustParseAddr("198.18.3.2") {
			return fmt.Errorf("FRR's BGP table: %v = %v, want next hop 198.18.3.2", vip, nh)
		}
		return nil
	})
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		r, ok, err := fh.KernelRoute(vip.String())
		if err != nil {
			return err
		}
		if !ok || r.Protocol != "bgp" || len(r.Gateways) != 1 || r.Gateways[0].String() != "198.18.3.2" {
			return fmt.Errorf("FRR's kernel route to %v: %+v (found %v)", vip, r, ok)
		}
		return nil
	})
	// Withdrawn in gobgp: gone from FRR.
	if out, err := g.CLI("global", "rib", "del", "203.0.113.7/32", "-a", "ipv4"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if _, ok, err := fh.KernelRoute(vip.String()); err != nil || ok {
			return fmt.Errorf("FRR's kernel still routes %v (err %v)", vip, err)
		}
		return nil
	})
}

func TestEventuallyReportsLastError(t *testing.T) {
	n := 0
	err := lab.Poll(100*time.Millisecond, 10*time.Millisecond, func() error {
		n++
		return fmt.Errorf("attempt %d", n)
	})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("attempt %d", n)) || n < 2 {
		t.Errorf("Poll = %v after %d attempts, want the last attempt's error", err, n)
	}
	calls := 0
	err = lab.Poll(5*time.Second, 10*time.Millisecond, func() error {
		calls++
		return fmt.Errorf("dead: %w", lab.ErrGiveUp)
	})
	if !errors.Is(err, lab.ErrGiveUp) || calls != 1 {
		t.Errorf("Poll with ErrGiveUp = %v after %d calls, want at once", err, calls)
	}
}

func TestBuildBinaryAndDo(t *testing.T) {
	t.Parallel()
	bin, err := lab.BuildBinary("./test/lab/testdata/echoserver")
	if err != nil {
		t.Fatal(err)
	}
	again, err := lab.BuildBinary("./test/lab/testdata/echoserver")
	if err != nil || again != bin {
		t.Fatalf("second BuildBinary = %q, %v; want the cached %q", again, err, bin)
	}
	l := lab.New(t)
	a, b := l.MustHost("a"), l.MustHost("b")
	l.MustLink(a, "eth0", []string{"198.18.7.1/30"}, b, "eth0", []string{"198.18.7.2/30"})
	srv, err := b.Start("echo", []string{bin, "198.18.7.2:7000"})
	if err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if srv.Exited() {
			return fmt.Errorf("echoserver exited: %s: %w", srv.Log(), lab.ErrGiveUp)
		}
		if !strings.Contains(srv.Log(), "listening on 198.18.7.2:7000") {
			return fmt.Errorf("echoserver log: %q", srv.Log())
		}
		return nil
	})
	// A socket opened inside a reaches b over the link.
	var reply string
	err = a.Do(func() error {
		c, err := net.DialTimeout("tcp", "198.18.7.2:7000", 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprint(c, "hi\n"); err != nil {
			return err
		}
		reply, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	if err != nil || reply != "echo: hi\n" {
		t.Errorf("echo from a: %q, %v; want %q", reply, err, "echo: hi\n")
	}
	// A host with no link has no way to b: the socket really is a's.
	c := l.MustHost("c")
	err = c.Do(func() error {
		conn, err := net.DialTimeout("tcp", "198.18.7.2:7000", 300*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err
	})
	if err == nil {
		t.Error("reached b's server from host c, which has no link")
	}
}

// TestInterruptHelper is run by TestInterruptTearsDown in a child process:
// it builds a lab, says so, and waits to be interrupted.
func TestInterruptHelper(t *testing.T) {
	if os.Getenv("LAB_INTERRUPT_HELPER") == "" {
		return // only a helper for TestInterruptTearsDown
	}
	l := lab.New(t)
	a, b := l.MustHost("a"), l.MustHost("b")
	l.MustLink(a, "eth0", []string{"198.18.8.1/30"}, b, "eth0", []string{"198.18.8.2/30"})
	p, err := b.Start("sleeper", []string{"sleep", "300"})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %s %d\n", l.Prefix(), p.PID())
	time.Sleep(60 * time.Second)
	t.Error("not interrupted within 60s")
}

func TestInterruptTearsDown(t *testing.T) {
	nstest.RequireRoot(t)
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestInterruptHelper$")
	cmd.Env = append(os.Environ(), "LAB_INTERRUPT_HELPER=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var prefix string
	var pid int
	timeout := time.After(30 * time.Second)
	for prefix == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("helper ended without READY: %s", stderr.String())
			}
			if _, err := fmt.Sscanf(line, "READY %s %d", &prefix, &pid); err != nil {
				prefix = ""
			}
		case <-timeout:
			t.Fatal("helper not READY after 30s")
		}
	}
	if got := withPrefix(namespaces(t), prefix); len(got) != 2 {
		t.Fatalf("namespaces of the helper's lab: %v, want 2", got)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range lines { // drain, so the helper never blocks on stdout
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("helper exit = %v, want status 130; stderr:\n%s", err, stderr.String())
	}
	if got := withPrefix(namespaces(t), prefix); len(got) != 0 {
		t.Errorf("namespaces left after SIGINT: %v", got)
	}
	lab.Eventually(t, 2*time.Second, 20*time.Millisecond, func() error { return gone(pid) })
}
