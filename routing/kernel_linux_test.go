package routing

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
)

// These tests use the real kernel, each in a network namespace of its own.

func ipn(t *testing.T, ns *nstest.NS, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

type ipAddrJSON struct {
	IfName   string `json:"ifname"`
	LinkKind string `json:"link_type"`
	AddrInfo []struct {
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
		Tentative bool   `json:"tentative"`
		Scope     string `json:"scope"`
	} `json:"addr_info"`
}

// kernelVIPs lists the global addresses on dev as `ip addr` shows them.
func kernelVIPs(t *testing.T, ns *nstest.NS, dev string) []string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns.Name, "-j", "addr", "show", "dev", dev).CombinedOutput()
	if err != nil {
		return nil
	}
	var links []ipAddrJSON
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatalf("parse ip -j addr: %v\n%s", err, out)
	}
	var got []string
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if a.Scope == "global" {
				got = append(got, a.Local)
			}
		}
	}
	slices.Sort(got)
	return got
}

func startReal(t *testing.T, ns *nstest.NS, opts Options) (*Table, context.CancelFunc) {
	t.Helper()
	opts.NetnsPath = ns.Path()
	tb, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tb.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if err := tb.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-tb.Ready():
	case err := <-done:
		t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("table never became ready")
	}
	return tb, stop
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v", what, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestKernelAddRemoveIPv4IPv6(t *testing.T) {
	t.Parallel()
	ns := nstest.New(t)
	tb, _ := startReal(t, ns, Options{})
	ctx := context.Background()
	if err := tb.Set(ctx, vips("203.0.113.10", "2001:db8:100::10")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"2001:db8:100::10", "203.0.113.10"}, kernelVIPs(t, ns, "kube-lb0")); diff != "" {
		t.Errorf("kernel addresses (-want +got):\n%s", diff)
	}
	// IPv6 without DAD: usable at once, never tentative.
	var links []ipAddrJSON
	if err := json.Unmarshal([]byte(ipn(t, ns, "-j", "-6", "addr", "show", "dev", "kube-lb0")), &links); err != nil {
		t.Fatal(err)
	}
	for _, a := range links[0].AddrInfo {
		if a.Local == "2001:db8:100::10" && (a.Tentative || a.PrefixLen != 128) {
			t.Errorf("IPv6 VIP tentative=%v prefixlen=%d, want a /128 without DAD", a.Tentative, a.PrefixLen)
		}
	}
	// The kernel treats the VIPs as local addresses.
	if out := ipn(t, ns, "route", "get", "203.0.113.10"); !strings.HasPrefix(out, "local 203.0.113.10") {
		t.Errorf("route get 203.0.113.10 = %q, want a local route", out)
	}
	if out := ipn(t, ns, "-6", "route", "get", "2001:db8:100::10"); !strings.HasPrefix(out, "local 2001:db8:100::10") {
		t.Errorf("route get 2001:db8:100::10 = %q, want a local route", out)
	}
	if err := tb.Set(ctx, vips("2001:db8:100::10")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"2001:db8:100::10"}, kernelVIPs(t, ns, "kube-lb0")); diff != "" {
		t.Errorf("after removal (-want +got):\n%s", diff)
	}
	// The link type: dummy where the kernel has it, ifb where it has not.
	kind := linkKind(t, ns, "kube-lb0")
	if kind != "dummy" && kind != "ifb" {
		t.Errorf("kube-lb0 kind = %q, want dummy or ifb", kind)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func linkKind(t *testing.T, ns *nstest.NS, dev string) string {
	t.Helper()
	var links []struct {
		LinkInfo struct {
			InfoKind string `json:"info_kind"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal([]byte(ipn(t, ns, "-j", "-d", "link", "show", "dev", dev)), &links); err != nil {
		t.Fatal(err)
	}
	return links[0].LinkInfo.InfoKind
}

func TestKernelIfbFallback(t *testing.T) {
	t.Parallel()
	ns := nstest.New(t)
	probe := exec.Command("ip", "-n", ns.Name, "link", "add", "probe0", "type", "dummy")
	hasDummy := probe.Run() == nil
	if hasDummy {
		ipn(t, ns, "link", "del", "probe0")
	}
	tb, _ := startReal(t, ns, Options{Kind: "dummy"})
	if err := tb.Set(context.Background(), vips("198.51.100.1")); err != nil {
		t.Fatal(err)
	}
	want := "ifb"
	if hasDummy {
		want = "dummy"
	}
	if got := linkKind(t, ns, "kube-lb0"); got != want {
		t.Errorf("kube-lb0 is %q, want %q (kernel has dummy: %v)", got, want, hasDummy)
	}
	if diff := cmp.Diff([]string{"198.51.100.1"}, kernelVIPs(t, ns, "kube-lb0")); diff != "" {
		t.Errorf("kernel addresses (-want +got):\n%s", diff)
	}
}

// addrEvents records the address deletions the kernel reports in ns.
func addrEvents(t *testing.T, ns *nstest.NS) func() []string {
	t.Helper()
	ch := make(chan netlink.AddrUpdate, 1024)
	done := make(chan struct{})
	h := ns.Handle
	if err := netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		dels []string
	)
	go func() {
		for u := range ch {
			if !u.NewAddr {
				mu.Lock()
				dels = append(dels, u.LinkAddress.IP.String())
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { close(done) })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(dels)
	}
}

func TestKernelRestartAdoptsWithoutRemovals(t *testing.T) {
	t.Parallel()
	ns := nstest.New(t)
	want := vips("203.0.113.20", "203.0.113.21", "2001:db8:100::20")
	first, stopFirst := startReal(t, ns, Options{})
	if err := first.Set(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	stopFirst() // agent exits: VIPs stay
	if diff := cmp.Diff([]string{"2001:db8:100::20", "203.0.113.20", "203.0.113.21"}, kernelVIPs(t, ns, "kube-lb0")); diff != "" {
		t.Fatalf("VIPs after the first agent stopped (-want +got):\n%s", diff)
	}
	dels := addrEvents(t, ns)
	second, _ := startReal(t, ns, Options{})
	if diff := cmp.Diff([]string{"2001:db8:100::20", "203.0.113.20", "203.0.113.21"}, addrsOf(second.List())); diff != "" {
		t.Errorf("adopted table (-want +got):\n%s", diff)
	}
	if err := second.Set(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	// Let any event the kernel would send arrive.
	time.Sleep(100 * time.Millisecond)
	if got := dels(); len(got) != 0 {
		t.Errorf("restart removed addresses %v; want no removal", got)
	}
	if second.Writes() != 0 {
		t.Errorf("restart made %d netlink writes, want 0", second.Writes())
	}
	// Dropping one VIP afterwards removes exactly that one.
	if err := second.Set(context.Background(), want[:2]); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "removal event", func() bool { return len(dels()) == 1 })
	if got := dels(); got[0] != "2001:db8:100::20" {
		t.Errorf("removed %v, want [2001:db8:100::20]", got)
	}
}

func TestKernelRepairsAddressAndLink(t *testing.T) {
	t.Parallel()
	ns := nstest.New(t)
	tb, _ := startReal(t, ns, Options{Logger: testLogger(t)})
	sub := tb.Subscribe()
	defer sub.Close()
	want := []string{"2001:db8:100::30", "203.0.113.30"}
	if err := tb.Set(context.Background(), vips("203.0.113.30", "2001:db8:100::30")); err != nil {
		t.Fatal(err)
	}
	sub.Next()
	ipn(t, ns, "addr", "del", "203.0.113.30/32", "dev", "kube-lb0")
	eventually(t, 2*time.Second, "IPv4 VIP restored after ip addr del", func() bool {
		return cmp.Equal(want, kernelVIPs(t, ns, "kube-lb0"))
	})
	ipn(t, ns, "addr", "del", "2001:db8:100::30/128", "dev", "kube-lb0")
	eventually(t, 2*time.Second, "IPv6 VIP restored after ip addr del", func() bool {
		return cmp.Equal(want, kernelVIPs(t, ns, "kube-lb0"))
	})
	ipn(t, ns, "link", "del", "kube-lb0")
	eventually(t, 2*time.Second, "interface and VIPs restored after ip link del", func() bool {
		return cmp.Equal(want, kernelVIPs(t, ns, "kube-lb0"))
	})
	ipn(t, ns, "link", "set", "kube-lb0", "down")
	eventually(t, 2*time.Second, "interface up again", func() bool {
		return strings.Contains(ipn(t, ns, "link", "show", "kube-lb0"), ",UP")
	})
	for _, ev := range sub.Next() {
		if ev.Kind == Removed {
			t.Errorf("subscriber saw %v %v during repair; a repaired VIP must not be withdrawn for good", ev.Kind, ev.VIP.Addr)
		}
	}
}

func TestKernelLeavesOthersAlone(t *testing.T) {
	t.Parallel()
	ns := nstest.New(t)
	// Something else's interface with a host address, and a non-host
	// address on our own interface.
	ipn(t, ns, "link", "add", "other0", "type", "ifb")
	ipn(t, ns, "addr", "add", "203.0.113.40/32", "dev", "other0")
	ipn(t, ns, "link", "add", "kube-lb0", "type", "ifb")
	ipn(t, ns, "addr", "add", "198.18.5.1/24", "dev", "kube-lb0")
	tb, _ := startReal(t, ns, Options{})
	if err := tb.Set(context.Background(), vips("203.0.113.41")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"203.0.113.40"}, kernelVIPs(t, ns, "other0")); diff != "" {
		t.Errorf("other interface (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"198.18.5.1", "203.0.113.41"}, kernelVIPs(t, ns, "kube-lb0")); diff != "" {
		t.Errorf("kube-lb0 (-want +got):\n%s", diff)
	}
}

func TestKernelRemoveOnClose(t *testing.T) {
	t.Parallel()
	ns := nstest.New(t)
	tb, stop := startReal(t, ns, Options{RemoveOnClose: true, Interface: "vip-test0"})
	if err := tb.Set(context.Background(), vips("203.0.113.50")); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := exec.Command("ip", "-n", ns.Name, "link", "show", "vip-test0").Run(); err == nil {
		t.Error("vip-test0 still exists after Close with RemoveOnClose")
	}
}

func TestKernelManyVIPs(t *testing.T) {
	t.Parallel()
	ns := nstest.New(t)
	tb, _ := startReal(t, ns, Options{})
	var want []VIP
	for i := range 1000 {
		want = append(want, VIP{Addr: netip.AddrFrom4([4]byte{198, 51, byte(100 + i/256), byte(i % 256)})})
	}
	want = slices.DeleteFunc(want, func(v VIP) bool { return !v.Addr.IsGlobalUnicast() })
	if err := tb.Set(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	if got := len(kernelVIPs(t, ns, "kube-lb0")); got != len(want) {
		t.Errorf("kernel holds %d VIPs, want %d", got, len(want))
	}
}
