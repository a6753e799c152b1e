package bpf_test

// Agent-level tests of the XDP fast path: the real vipspeaker binary in
// node namespaces on a lab bridge, a client namespace resolving and
// capturing. What the library-level test above cannot show: the agent's
// wiring (announcements through live frames, the BGP uplinks, restarts
// carried by the pinned program, the fallback without privileges).
//
// Pinning: `ip netns exec` (how the lab starts agents) gives each process a
// fresh /sys, so /sys/fs/bpf is never a bpf filesystem inside it, mounted
// or not. Each test therefore mounts its own bpf filesystem in a temporary
// folder (visible to the agents, which inherit the test's mounts) and
// points [layer2] pin-dir there; nothing of one test's pins is visible to
// another, and the mount goes with the test.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/vipspeaker/vipspeaker/bpf"
	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

const (
	agentVIP4 = "203.0.113.10"
	agentVIP6 = "2001:db8:100::1:10"
)

type agentLab struct {
	t      testing.TB
	l      *lab.Lab
	bin    string
	client *lab.Host
	nodes  []*lab.Host
	macs   []string
	agents []*lab.Process
	starts int
	svcDir string
	cfgDir string
	bpffs  string // the test's own bpf filesystem
	flags  []string
}

type labOpts struct {
	fastPath string // auto, xdp, off
	napi     bool   // give the bridge ports NAPI (live frames on veth need it)
}

// newAgentLab builds a client namespace with bridge br0 (198.18.2.1/24,
// 2001:db8:2::1/64, routes to the VIP ranges) and n node namespaces plugged
// into it (eth0 198.18.2.1x), a layer2 pool over 203.0.113.0/24,
// 198.51.100.0/24 and 2001:db8:100::/64, and the Service web with
// agentVIP4 and agentVIP6.
func newAgentLab(t testing.TB, n int, o labOpts) *agentLab {
	t.Helper()
	nstest.RequireRoot(t)
	for _, tool := range []string{"arping", "ndisc6", "ping", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			nstest.Skip(t, "%s not installed", tool)
		}
	}
	bin, err := lab.BuildBinary("./cmd/vipspeaker")
	if err != nil {
		t.Fatalf("build vipspeaker: %v", err)
	}
	l := lab.New(t)
	al := &agentLab{t: t, l: l, bin: bin, client: l.MustHost("client")}
	l.MustBridge(al.client, "br0", []string{"198.18.2.1/24", "2001:db8:2::1/64"})
	al.client.MustRun("ip", "route", "add", "203.0.113.0/24", "dev", "br0")
	al.client.MustRun("ip", "route", "add", "198.51.100.0/24", "dev", "br0")
	al.client.MustRun("ip", "-6", "route", "add", "2001:db8:100::/64", "dev", "br0")
	var join []string
	for i := range n {
		h := l.MustHost(fmt.Sprintf("node%d", i))
		l.MustLinkToBridge(h, "eth0", []string{fmt.Sprintf("198.18.2.%d/24", 10+i), fmt.Sprintf("2001:db8:2::%d/64", 10+i)}, al.client, "br0")
		al.nodes = append(al.nodes, h)
		al.macs = append(al.macs, strings.TrimSpace(h.MustRun("cat", "/sys/class/net/eth0/address")))
		join = append(join, fmt.Sprintf("%q", fmt.Sprintf("198.18.2.%d", 10+i)))
	}
	if o.napi {
		al.giveBridgePortsNAPI()
	}
	al.bpffs = lab.MountBPFFS(t)
	al.svcDir = filepath.Join(l.Dir(), "services")
	al.cfgDir = filepath.Join(l.Dir(), "config")
	for _, d := range []string{al.svcDir, al.cfgDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fp := o.fastPath
	if fp == "" {
		fp = "xdp"
	}
	writeAtomic(t, filepath.Join(al.cfgDir, "vipspeaker.toml"), fmt.Sprintf(`
[interface]
name = "kube-lb0"
kind = "ifb"

[[pools]]
name = "flat"
addresses = ["203.0.113.0/24", "198.51.100.0/24", "2001:db8:100::/64"]
mode = "layer2"
  [pools.layer2]
  interfaces = ["eth0"]

[layer2]
gratuitous-count = 3
gratuitous-interval = "100ms"
fast-path = %q
pin-dir = %q

[membership]
join = [%s]
`, fp, filepath.Join(al.bpffs, "vipspeaker"), strings.Join(join, ", ")))
	al.services(map[string][]string{"web": {agentVIP4, agentVIP6}})
	al.agents = make([]*lab.Process, n)
	return al
}

func writeAtomic(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// services writes one manifest file with a Service per entry (name →
// addresses), replacing the previous file.
func (al *agentLab) services(svcs map[string][]string) {
	var b strings.Builder
	for name, addrs := range svcs {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata:
  name: %s
  namespace: demo
  annotations:
    vipspeaker.io/pool: flat
    vipspeaker.io/addresses: "%s"
spec:
  type: LoadBalancer
  ports:
  - port: 80
`, name, strings.Join(addrs, ","))
	}
	writeAtomic(al.t, filepath.Join(al.svcDir, "services.yaml"), b.String())
}

// giveBridgePortsNAPI attaches a native XDP_PASS program to every bridge
// port in the client namespace: a veth end receives frames its peer sends
// with XDP (live frames, native XDP_TX) only when it runs NAPI (bpf/doc.go).
func (al *agentLab) giveBridgePortsNAPI() {
	t := al.t
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if bpf.Unsupported(err) {
		nstest.Skip(t, "XDP not available: %v", err)
	}
	if err != nil {
		t.Fatalf("load XDP_PASS program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	links, err := al.client.Netlink().LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, lk := range links {
		if lk.Type() != "veth" {
			continue
		}
		idx := lk.Attrs().Index
		var xl link.Link
		if err := al.client.Do(func() error {
			var err error
			xl, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx, Flags: link.XDPDriverMode})
			return err
		}); err != nil {
			t.Fatalf("XDP_PASS on bridge port %s: %v", lk.Attrs().Name, err)
		}
		t.Cleanup(func() { xl.Close() })
	}
}

// start runs node i's agent (argv prefixed with wrap, e.g. setpriv) and,
// unless it is expected to fail, waits for its layer2 responder.
func (al *agentLab) start(i int, wrap ...string) *lab.Process {
	al.t.Helper()
	p := al.spawn(i, wrap...)
	if err := lab.Poll(15*time.Second, 100*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("%w: exited", lab.ErrGiveUp)
		}
		if !strings.Contains(p.Log(), "answering ARP/NDP on layer2 interface") {
			return errors.New("no layer2 responder yet")
		}
		return nil
	}); err != nil {
		al.t.Fatalf("node%d's agent: %v. Log:\n%s", i, err, tail(p.Log(), 30))
	}
	return p
}

func (al *agentLab) spawn(i int, wrap ...string) *lab.Process {
	al.t.Helper()
	al.starts++
	argv := append(append([]string{}, wrap...), al.bin, "run", "--services-dir", al.svcDir, "--config-dir", al.cfgDir,
		"--run-dir", filepath.Join(al.l.Dir(), fmt.Sprintf("run-node%d", i)),
		"--node-name", fmt.Sprintf("node%d", i), "--log-level", "debug")
	argv = append(argv, al.flags...)
	p, err := al.nodes[i].Start(fmt.Sprintf("vipspeaker-%d", al.starts), argv)
	if err != nil {
		al.t.Fatal(err)
	}
	al.agents[i] = p
	return p
}

// stop sends SIGTERM to node i's agent and waits (bounded) for it to exit.
func (al *agentLab) stop(i int) {
	al.t.Helper()
	p := al.agents[i]
	if err := p.Signal(syscall.SIGTERM); err != nil {
		al.t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(15 * time.Second):
		al.t.Fatalf("node%d's agent still running 15s after SIGTERM", i)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func macsIn(out string) []string {
	seen := map[string]bool{}
	var ms []string
	for _, f := range strings.Fields(strings.ToLower(out)) {
		if hw, err := net.ParseMAC(f); err == nil && len(hw) == 6 && !seen[hw.String()] {
			seen[hw.String()] = true
			ms = append(ms, hw.String())
		}
	}
	return ms
}

func (al *agentLab) arping(addr string, n int) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, _ := al.client.Run(ctx, "arping", "-i", "br0", "-c", strconv.Itoa(n), "-W", "0.1", "-w", "3", "-r", addr)
	var got []string
	for _, line := range strings.Split(out, "\n") {
		if hw, err := net.ParseMAC(strings.TrimSpace(line)); err == nil && len(hw) == 6 {
			got = append(got, hw.String())
		}
	}
	return got
}

func (al *agentLab) ndisc(addr string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, _ := al.client.Run(ctx, "ndisc6", "-1", "-q", "-r", "2", "-w", "300", addr, "br0")
	return macsIn(out)
}

// owner waits until addr is answered by exactly one node and returns it.
func (al *agentLab) owner(addr string) int {
	al.t.Helper()
	idx := -1
	lab.Eventually(al.t, 20*time.Second, 200*time.Millisecond, func() error {
		got := macsIn(strings.Join(al.arping(addr, 2), " "))
		if len(got) != 1 {
			return fmt.Errorf("answers for %s from %v, want exactly one", addr, got)
		}
		for i, m := range al.macs {
			if m == got[0] {
				idx = i
				return nil
			}
		}
		return fmt.Errorf("%s answered by %s, not a node", addr, got[0])
	})
	return idx
}

// scrape returns the /metrics text of the agent on h.
func scrape(t testing.TB, h *lab.Host) string {
	t.Helper()
	out, err := tryScrape(h)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tryScrape(h *lab.Host) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Run(ctx, "curl", "-s", "--max-time", "3", "http://127.0.0.1:9472/metrics")
	if err != nil {
		return "", fmt.Errorf("scrape %s: %w", h.Name(), err)
	}
	return out, nil
}

var seriesRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)$`)

// sum adds the samples of family name whose labels include want.
func sum(text, name string, want map[string]string) float64 {
	var total float64
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		m := seriesRE.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil || m[1] != name {
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(m[3], ",") {
			k, v, ok := strings.Cut(kv, "=")
			if ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		if v, err := strconv.ParseFloat(m[4], 64); err == nil {
			total += v
		}
	}
	return total
}

// TestAgentResolvesThroughXDP: with fast-path = "xdp", the client's ARP
// requests and neighbour solicitations for the owned VIPs are answered by
// the XDP program: the agent's reply counters rise with path="xdp" by what
// the client sent, at the first scrape after the replies (they are read
// from the program's maps then), and not at all with path="userspace";
// vipspeaker_l2_fast_path_active is 1.
func TestAgentResolvesThroughXDP(t *testing.T) {
	t.Parallel()
	al := newAgentLab(t, 1, labOpts{})
	al.start(0)
	al.owner(agentVIP4)
	lab.Eventually(t, 10*time.Second, 200*time.Millisecond, func() error {
		if got := al.ndisc(agentVIP6); len(got) != 1 || got[0] != al.macs[0] {
			return fmt.Errorf("ndisc6 %s: %v, want %s", agentVIP6, got, al.macs[0])
		}
		return nil
	})
	before := scrape(t, al.nodes[0])

	const n = 5
	if got := al.arping(agentVIP4, n); len(got) != n {
		t.Fatalf("arping %s: %d replies %v, want %d", agentVIP4, len(got), got, n)
	}
	for range 3 {
		if got := al.ndisc(agentVIP6); len(got) != 1 || got[0] != al.macs[0] {
			t.Fatalf("ndisc6 %s: %v, want %s", agentVIP6, got, al.macs[0])
		}
	}
	delta := func(text, name, path string) float64 {
		return sum(text, name, map[string]string{"path": path}) - sum(before, name, map[string]string{"path": path})
	}
	// Read from the program's maps at scrape time: exact at once.
	now := scrape(t, al.nodes[0])
	if d := delta(now, "vipspeaker_arp_replies_sent_total", "xdp"); d != n {
		t.Errorf("ARP replies path=xdp rose by %v right after the replies, want %d", d, n)
	}
	if d := delta(now, "vipspeaker_ndp_advertisements_sent_total", "xdp"); d != 3 {
		t.Errorf("NDP advertisements path=xdp rose by %v right after the replies, want 3", d)
	}
	if v := sum(now, "vipspeaker_l2_fast_path_active", nil); v != 1 {
		t.Errorf("vipspeaker_l2_fast_path_active = %v while XDP answers, want 1", v)
	}
	for _, name := range []string{"vipspeaker_arp_replies_sent_total", "vipspeaker_ndp_advertisements_sent_total"} {
		if v := sum(now, name, map[string]string{"path": "userspace"}); v != 0 {
			t.Errorf("%s{path=userspace} = %v while XDP answers, want 0", name, v)
		}
	}
}

// capture counts, on the client's bridge, the gratuitous announcements
// from one MAC: per IPv4 VIP the gratuitous ARP requests and replies, per
// IPv6 VIP the unsolicited advertisements to all-nodes.
type capture struct {
	conn *packet.Conn
	mac  net.HardwareAddr
	mu   sync.Mutex
	req  map[netip.Addr]int
	rep  map[netip.Addr]int
	na   map[netip.Addr]int
	done chan struct{}
}

func startCapture(t *testing.T, h *lab.Host, ifname string, mac string) *capture {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	c := &capture{mac: hw, req: map[netip.Addr]int{}, rep: map[netip.Addr]int{}, na: map[netip.Addr]int{}, done: make(chan struct{})}
	if err := h.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c.conn, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
		return err
	}); err != nil {
		t.Fatalf("capture on %s: %v", ifname, err)
	}
	if rc, err := c.conn.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
		})
	}
	go c.read()
	t.Cleanup(func() { c.stop() })
	return c
}

func (c *capture) stop() {
	_ = c.conn.Close()
	<-c.done
}

func (c *capture) read() {
	defer close(c.done)
	b := make([]byte, 2048)
	for {
		n, _, err := c.conn.ReadFrom(b)
		if err != nil {
			return
		}
		f := b[:n]
		if n < 14 || net.HardwareAddr(f[6:12]).String() != c.mac.String() {
			continue
		}
		switch binary.BigEndian.Uint16(f[12:14]) {
		case unix.ETH_P_ARP:
			if n < 42 {
				continue
			}
			op := binary.BigEndian.Uint16(f[20:22])
			spa, _ := netip.AddrFromSlice(f[28:32])
			tpa, _ := netip.AddrFromSlice(f[38:42])
			if spa != tpa {
				continue
			}
			c.mu.Lock()
			if op == 1 {
				c.req[spa]++
			} else if op == 2 {
				c.rep[spa]++
			}
			c.mu.Unlock()
		case unix.ETH_P_IPV6:
			// IPv6 header 40, ICMPv6 type 136, target at 14+40+8.
			if n < 14+40+24 || f[14+6] != 58 || f[14+40] != 136 {
				continue
			}
			dst, _ := netip.AddrFromSlice(f[14+24 : 14+40])
			if dst != netip.MustParseAddr("ff02::1") {
				continue
			}
			target, _ := netip.AddrFromSlice(f[14+48 : 14+64])
			c.mu.Lock()
			c.na[target]++
			c.mu.Unlock()
		}
	}
}

func (c *capture) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range []map[netip.Addr]int{c.req, c.rep, c.na} {
		for _, v := range m {
			n += v
		}
	}
	return n
}

// liveFrames reports whether the kernel allows XDP live frames.
func liveFrames(t *testing.T) bool {
	t.Helper()
	ok, err := bpf.LiveFramesAllowed()
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestAgentTakeoverAnnouncesThroughXDP: a node taking over 250 VIPs (200
// IPv4, 50 IPv6) at once puts every VIP's gratuitous frames on the wire —
// gratuitous-count (3) ARP requests and replies per IPv4 VIP, 3 unsolicited
// NAs per IPv6 VIP, counted in a capture on the client's bridge — and they
// went through the XDP program's live frames:
// vipspeaker_gratuitous_sent_total{path="xdp"} rises by all of them,
// path="userspace" not at all (on a kernel that refuses live frames, the
// other way round).
func TestAgentTakeoverAnnouncesThroughXDP(t *testing.T) {
	t.Parallel()
	al := newAgentLab(t, 1, labOpts{napi: true})
	al.services(map[string][]string{})
	al.start(0)
	time.Sleep(500 * time.Millisecond)
	c := startCapture(t, al.client, "br0", al.macs[0])

	var v4, v6 []string
	a := netip.MustParseAddr("198.51.100.1")
	for range 200 {
		v4 = append(v4, a.String())
		a = a.Next()
	}
	b := netip.MustParseAddr("2001:db8:100::2:1")
	for range 50 {
		v6 = append(v6, b.String())
		b = b.Next()
	}
	start := time.Now()
	al.services(map[string][]string{"many": append(append([]string{}, v4...), v6...)})
	const rounds = 3
	want := rounds * (2*len(v4) + len(v6))
	lab.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		if n := c.total(); n < want {
			return fmt.Errorf("captured %d announcement frames, want %d", n, want)
		}
		return nil
	})
	t.Logf("%d announcement frames for %d VIPs captured %v after the Services were written", want, len(v4)+len(v6), time.Since(start))
	time.Sleep(300 * time.Millisecond) // anything extra shows now
	c.mu.Lock()
	for _, s := range v4 {
		a := netip.MustParseAddr(s)
		if c.req[a] != rounds || c.rep[a] != rounds {
			t.Errorf("%s: captured %d gratuitous requests and %d replies, want %d each", a, c.req[a], c.rep[a], rounds)
		}
	}
	for _, s := range v6 {
		a := netip.MustParseAddr(s)
		if c.na[a] != rounds {
			t.Errorf("%s: captured %d unsolicited NAs, want %d", a, c.na[a], rounds)
		}
	}
	c.mu.Unlock()
	if n := c.total(); n != want {
		t.Errorf("captured %d announcement frames in all, want %d", n, want)
	}
	// Where the kernel refuses live frames (bpf.LiveFramesAllowed) the
	// same frames go out through the packet sockets, and the metric says so.
	fast, other := "xdp", "userspace"
	if !liveFrames(t) {
		t.Log("this kernel refuses XDP live frames: the gratuitous rounds must all have gone through the packet sockets")
		fast, other = other, fast
	}
	lab.Eventually(t, 10*time.Second, 500*time.Millisecond, func() error {
		m, err := tryScrape(al.nodes[0])
		if err != nil {
			return err
		}
		if v := sum(m, "vipspeaker_gratuitous_sent_total", map[string]string{"path": fast}); v != float64(want) {
			return fmt.Errorf("gratuitous_sent_total{path=%s} = %v, want %d", fast, v, want)
		}
		if v := sum(m, "vipspeaker_gratuitous_sent_total", map[string]string{"path": other}); v != 0 {
			return fmt.Errorf("gratuitous_sent_total{path=%s} = %v, want 0 (all through %s)", other, v, fast)
		}
		return nil
	})
}

// startProber sends an ARP request for target from the client every
// interval (lab.ARPProber), stopped at the end of the test.
func startProber(t testing.TB, h *lab.Host, ifname string, src, target netip.Addr, every time.Duration) *lab.ARPProber {
	t.Helper()
	p, err := h.StartARPProber(ifname, src, target, every)
	if err != nil {
		t.Fatalf("prober on %s: %v", ifname, err)
	}
	t.Cleanup(func() { p.Stop(0) })
	return p
}

// stopProber stops p, waits grace for the last replies and returns what
// was sent, the replies by the MAC that sent them and the longest time
// between two replies.
func stopProber(p *lab.ARPProber, grace time.Duration) (sent int, replies map[string]int, maxGap time.Duration) {
	p.Stop(grace)
	replies = map[string]int{}
	var last time.Time
	for _, r := range p.Replies() {
		replies[r.MAC]++
		if !last.IsZero() {
			maxGap = max(maxGap, r.At.Sub(last))
		}
		last = r.At
	}
	return p.Sent(), replies, maxGap
}

// countLines counts the log lines containing every one of parts.
func countLines(log string, parts ...string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				all = false
				break
			}
		}
		if all {
			n++
		}
	}
	return n
}

// TestAgentRestartIsHitless: the owner's agent is stopped (SIGTERM) and
// started again while the client sends an ARP request for the VIP every
// 10 ms. The pinned XDP program answers through the gap (its lease renewed
// for the restart window), the other node holds off (restart window), so
// every request is answered, every answer carries the owner's MAC, and the
// other node never claims the VIP.
func TestAgentRestartIsHitless(t *testing.T) {
	t.Parallel()
	al := newAgentLab(t, 2, labOpts{})
	al.start(0)
	al.start(1)
	o := al.owner(agentVIP4)
	other := 1 - o
	if strings.Contains(al.agents[o].Log(), "pinning unavailable") {
		t.Fatalf("node%d's agent could not pin:\n%s", o, tail(al.agents[o].Log(), 20))
	}
	pins, _ := os.ReadDir(filepath.Join(al.bpffs, "vipspeaker", fmt.Sprintf("node%d", o)))
	if len(pins) == 0 {
		t.Fatalf("nothing pinned under %s", filepath.Join(al.bpffs, "vipspeaker", fmt.Sprintf("node%d", o)))
	}
	claimsBefore := countLines(al.agents[other].Log(), "owner of VIP: answering", "vip="+agentVIP4)

	pr := startProber(t, al.client, "br0", netip.MustParseAddr("198.18.2.1"), netip.MustParseAddr(agentVIP4), 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	stopAt := time.Now()
	al.stop(o)
	stopped := time.Since(stopAt)
	p := al.start(o)
	// Past the new agent's start-up (membership, gate, first owned set).
	lab.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		if countLines(p.Log(), "owner of VIP: answering", "vip="+agentVIP4) == 0 {
			return errors.New("the restarted agent does not own the VIP yet")
		}
		return nil
	})
	time.Sleep(time.Second)
	sent, replies, gap := stopProber(pr, 300*time.Millisecond)
	t.Logf("restart: stop took %v, back %v after SIGTERM; %d requests, replies %v, longest gap between replies %v",
		stopped, time.Since(stopAt), sent, replies, gap)
	total := 0
	for m, n := range replies {
		total += n
		if m != al.macs[o] {
			t.Errorf("%d replies from %s, not the owner node%d's %s", n, m, o, al.macs[o])
		}
	}
	if sent < 100 {
		t.Fatalf("only %d requests sent; the prober did not run", sent)
	}
	if total != sent {
		t.Errorf("%d requests, %d replies: %d unanswered through the restart", sent, total, sent-total)
	}
	if n := countLines(al.agents[other].Log(), "owner of VIP: answering", "vip="+agentVIP4); n != claimsBefore {
		t.Errorf("node%d claimed %s during node%d's restart", other, agentVIP4, o)
	}
	if got := al.arping(agentVIP4, 2); len(got) != 2 || got[0] != al.macs[o] {
		t.Errorf("after the restart %s answered by %v, want node%d's %s", agentVIP4, got, o, al.macs[o])
	}
}

// TestAgentGoneStopsAnswering: an owner whose agent is stopped and does
// not come back keeps answering (pinned program) through the restart
// window (15 s) while the other node holds off; once it lapses the old
// owner stops answering and the other node takes the VIP.
func TestAgentGoneStopsAnswering(t *testing.T) {
	t.Parallel()
	al := newAgentLab(t, 2, labOpts{})
	al.start(0)
	al.start(1)
	o := al.owner(agentVIP4)
	other := 1 - o
	al.stop(o)
	stopped := time.Now()
	var lastOld, firstNew time.Duration
	for time.Since(stopped) < 30*time.Second {
		got := al.arping(agentVIP4, 1)
		at := time.Since(stopped)
		for _, m := range got {
			switch m {
			case al.macs[o]:
				lastOld = at
			case al.macs[other]:
				if firstNew == 0 {
					firstNew = at
				}
			}
		}
		if firstNew > 0 && at > firstNew+3*time.Second {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("node%d stopped: its last answer %v later, node%d's first %v later", o, lastOld, other, firstNew)
	if firstNew == 0 {
		t.Fatalf("node%d never took %s over", other, agentVIP4)
	}
	if !strings.Contains(al.agents[other].Log(), "speaker restarting; keeping its VIPs") {
		t.Errorf("node%d did not hold node%d's VIPs for its announced restart window", other, o)
	}
	if firstNew < 10*time.Second {
		t.Errorf("node%d took over %v after the stop, inside the restart window (15 s)", other, firstNew)
	}
	if lastOld < 8*time.Second {
		t.Errorf("node%d's pinned program stopped answering %v after the stop, well before the window's end", o, lastOld)
	}
	if lastOld > firstNew+time.Second {
		t.Errorf("node%d still answered %v after the stop, %v after node%d took over", o, lastOld, lastOld-firstNew, other)
	}
}

// TestAgentFinalStopLeavesNothing: an agent stopped for good
// (--remove-vips-on-exit) detaches the XDP program from its interface and
// removes its pins.
func TestAgentFinalStopLeavesNothing(t *testing.T) {
	t.Parallel()
	al := newAgentLab(t, 1, labOpts{})
	al.flags = []string{"--remove-vips-on-exit"}
	listing := func() []string {
		var out []string
		_ = filepath.WalkDir(al.bpffs, func(p string, d os.DirEntry, err error) error {
			if err == nil && p != al.bpffs {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	// A fresh bpf filesystem holds the kernel's own iterator files.
	empty := listing()
	al.start(0)
	al.owner(agentVIP4)
	dir := filepath.Join(al.bpffs, "vipspeaker", "node0")
	xdpOn := func() bool {
		lk, err := al.nodes[0].Netlink().LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		return lk.Attrs().Xdp != nil && lk.Attrs().Xdp.Attached
	}
	if !xdpOn() {
		t.Fatal("no XDP program on eth0 while the agent runs")
	}
	if pins, _ := os.ReadDir(dir); len(pins) == 0 {
		t.Fatalf("nothing pinned in %s while the agent runs", dir)
	}
	al.stop(0)
	if xdpOn() {
		t.Error("an XDP program is still attached to eth0 after the final stop")
	}
	if left := listing(); !slices.Equal(left, empty) {
		t.Errorf("left in the bpf filesystem after the final stop: %v (a fresh one holds %v)", left, empty)
	}
}

var dropBPF = []string{"setpriv", "--bounding-set", "-bpf,-sys_admin,-perfmon", "--inh-caps", "-bpf,-sys_admin,-perfmon", "--"}

// TestAgentWithoutCapBPF: an agent without CAP_BPF, CAP_SYS_ADMIN and
// CAP_PERFMON and fast-path = "auto" says once why XDP is off and answers
// from userspace (path="userspace" rises); with fast-path = "xdp" it exits
// non-zero, naming the reason.
func TestAgentWithoutCapBPF(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("setpriv"); err != nil {
		nstest.Skip(t, "setpriv not installed")
	}
	al := newAgentLab(t, 1, labOpts{fastPath: "auto"})
	p := al.start(0, dropBPF...)
	if got := al.owner(agentVIP4); got != 0 {
		t.Fatalf("owner %d", got)
	}
	log := p.Log()
	if n := countLines(log, "XDP fast path not available"); n != 1 {
		t.Errorf("%d log lines say the fast path is not available, want 1:\n%s", n, tail(log, 30))
	}
	if countLines(log, "XDP fast path not available", "CAP_BPF") != 1 {
		t.Errorf("the fallback line does not name CAP_BPF:\n%s", tail(log, 30))
	}
	if got := al.arping(agentVIP4, 3); len(got) != 3 {
		t.Fatalf("arping: %v, want 3 replies", got)
	}
	lab.Eventually(t, 10*time.Second, 300*time.Millisecond, func() error {
		m, err := tryScrape(al.nodes[0])
		if err != nil {
			return err
		}
		if v := sum(m, "vipspeaker_arp_replies_sent_total", map[string]string{"path": "userspace"}); v < 3 {
			return fmt.Errorf("ARP replies path=userspace = %v, want ≥ 3", v)
		}
		if v := sum(m, "vipspeaker_arp_replies_sent_total", map[string]string{"path": "xdp"}); v != 0 {
			return fmt.Errorf("ARP replies path=xdp = %v without XDP", v)
		}
		if !strings.Contains(m, "\nvipspeaker_l2_fast_path_active 0\n") {
			return errors.New("vipspeaker_l2_fast_path_active is not 0 after the fallback")
		}
		return nil
	})
	al.stop(0)

	writeAtomic(t, filepath.Join(al.cfgDir, "vipspeaker.toml"),
		strings.Replace(readFile(t, filepath.Join(al.cfgDir, "vipspeaker.toml")), `fast-path = "auto"`, `fast-path = "xdp"`, 1))
	q := al.spawn(0, dropBPF...)
	select {
	case <-q.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("fast-path = xdp without CAP_BPF: the agent still runs after 20s:\n%s", tail(q.Log(), 20))
	}
	var ee *exec.ExitError
	if err := q.Wait(); !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Errorf("fast-path = xdp without CAP_BPF: exit %v, want a non-zero status", err)
	}
	if countLines(q.Log(), `fast-path = \"xdp\"`, "CAP_BPF") == 0 {
		t.Errorf("the agent's last words do not name the setting and CAP_BPF:\n%s", tail(q.Log(), 10))
	}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const uplinkGoBGP = `[global.config]
  as = 64512
  router-id = "198.18.8.1"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "%s"
    peer-as = 64513
  [neighbors.timers.config]
    connect-retry = 2
`

// TestAgentCountsBGPUplinkTraffic: on a node with only a BGP pool, the
// fast path counts each VIP's traffic on the interface the kernel routes
// the gobgp.conf neighbor through (found with a route lookup, recomputed
// when gobgp.conf changes): a router sending N pings to a VIP shows as
// exactly N packets and their bytes in vipspeaker_vip_receive_*_total, for
// IPv4 and IPv6. The uplink gets the program in generic mode. The neighbor
// needs no BGP session for this.
func TestAgentCountsBGPUplinkTraffic(t *testing.T) {
	t.Parallel()
	nstest.RequireRoot(t)
	bin, err := lab.BuildBinary("./cmd/vipspeaker")
	if err != nil {
		t.Fatalf("build vipspeaker: %v", err)
	}
	l := lab.New(t)
	node, router := l.MustHost("node"), l.MustHost("router")
	l.MustLink(node, "eth1", []string{"198.18.8.1/30", "2001:db8:8::1/64"}, router, "eth0", []string{"198.18.8.2/30", "2001:db8:8::2/64"})
	l.MustLink(node, "eth2", []string{"198.18.9.1/30"}, router, "eth1", []string{"198.18.9.2/30"})
	const vip4, vip6 = "198.51.100.7", "2001:db8:200::7"
	router.MustRun("ip", "route", "add", vip4+"/32", "via", "198.18.8.1")
	router.MustRun("ip", "-6", "route", "add", vip6+"/128", "via", "2001:db8:8::1")
	bpffs := lab.MountBPFFS(t)
	svcDir, cfgDir := filepath.Join(l.Dir(), "services"), filepath.Join(l.Dir(), "config")
	for _, d := range []string{svcDir, cfgDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeAtomic(t, filepath.Join(cfgDir, "vipspeaker.toml"), fmt.Sprintf(`[interface]
name = "kube-lb0"
kind = "ifb"

[[pools]]
name = "uplink"
addresses = ["198.51.100.0/24", "2001:db8:200::/64"]

[layer2]
fast-path = "xdp"
pin-dir = %q
`, filepath.Join(bpffs, "vipspeaker")))
	writeAtomic(t, filepath.Join(cfgDir, "gobgp.conf"), fmt.Sprintf(uplinkGoBGP, "198.18.8.2"))
	writeAtomic(t, filepath.Join(svcDir, "web.yaml"), `apiVersion: v1
kind: Service
metadata:
  name: web
  annotations:
    vipspeaker.io/pool: uplink
    vipspeaker.io/addresses: "`+vip4+`,`+vip6+`"
spec:
  type: LoadBalancer
  ports:
  - port: 80
`)
	p, err := node.Start("vipspeaker", []string{bin, "run", "--services-dir", svcDir, "--config-dir", cfgDir,
		"--run-dir", filepath.Join(l.Dir(), "run-node"), "--node-name", "node", "--log-level", "debug"})
	if err != nil {
		t.Fatal(err)
	}
	attached := func(iface string) float64 {
		m, err := tryScrape(node)
		if err != nil {
			return -1
		}
		return sum(m, "vipspeaker_xdp_attached", map[string]string{"interface": iface})
	}
	lab.Eventually(t, 20*time.Second, 300*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("%w: the agent exited:\n%s", lab.ErrGiveUp, tail(p.Log(), 20))
		}
		if attached("eth1") != 1 {
			return errors.New("the fast path is not on eth1, the uplink to 198.18.8.2")
		}
		return nil
	})
	if v := attached("eth2"); v != 0 {
		t.Errorf("the fast path is on eth2 too, where no neighbor is")
	}
	// Count only: generic mode, so attaching never resets an uplink's NIC.
	if v := sum(scrape(t, node), "vipspeaker_xdp_attached", map[string]string{"interface": "eth1", "mode": "generic"}); v != 1 {
		t.Errorf("the fast path is not attached to eth1 in generic mode")
	}
	for _, c := range []struct {
		vip   string
		argv  []string
		n     int
		bytes int
	}{
		// 56 bytes of data + 8 of ICMP + the IP header.
		{vip4, []string{"ping", "-c", "7", "-i", "0.1", "-W", "2", vip4}, 7, 7 * (56 + 8 + 20)},
		{vip6, []string{"ping", "-6", "-c", "5", "-i", "0.1", "-W", "2", vip6}, 5, 5 * (56 + 8 + 40)},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		out, err := router.Run(ctx, c.argv...)
		cancel()
		if err != nil {
			t.Fatalf("%v: %v\n%s", c.argv, err, out)
		}
		m := scrape(t, node)
		pk := sum(m, "vipspeaker_vip_receive_packets_total", map[string]string{"vip": c.vip})
		by := sum(m, "vipspeaker_vip_receive_bytes_total", map[string]string{"vip": c.vip})
		if pk != float64(c.n) || by != float64(c.bytes) {
			t.Errorf("%s after %d pings: %v packets, %v bytes; want %d and %d", c.vip, c.n, pk, by, c.n, c.bytes)
		}
	}

	// gobgp.conf now names a neighbor behind eth2: the counting moves.
	writeAtomic(t, filepath.Join(cfgDir, "gobgp.conf"), fmt.Sprintf(uplinkGoBGP, "198.18.9.2"))
	lab.Eventually(t, 20*time.Second, 300*time.Millisecond, func() error {
		if a, b := attached("eth1"), attached("eth2"); a != 0 || b != 1 {
			return fmt.Errorf("attached on eth1 %v, eth2 %v; want 0 and 1", a, b)
		}
		return nil
	})
}
