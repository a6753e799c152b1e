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
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/bpf"
	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

const (
	agentVIP4 = "203.0.113.10"
	agentVIP6 = "2001:db8:100::1:10"
)

// agentLab is a lab.Flat of n nodes (IPv6 too) whose agents share conf
// (the layer2 pool "flat" over 203.0.113.0/24, 198.51.100.0/24 and
// 2001:db8:100::/64 on eth0, the fast path pinned in the test's own bpf
// filesystem, [membership] joining every node) and the Services of
// services.yaml.
type agentLab struct {
	*lab.Flat
	t      testing.TB
	client *lab.Host
	nodes  []*lab.Host
	macs   []string
	conf   lab.AgentTOML
	bpffs  string // the test's own bpf filesystem
	flags  []string
}

type labOpts struct {
	fastPath string // auto, xdp, off
	napi     bool   // give the bridge ports NAPI (live frames on veth need it)
}

// newAgentLab builds the lab with the Service web on agentVIP4 and
// agentVIP6; no agent runs yet.
func newAgentLab(t testing.TB, n int, o labOpts) *agentLab {
	t.Helper()
	nstest.RequireRoot(t)
	for _, tool := range []string{"arping", "ndisc6", "ping", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			nstest.Skip(t, "%s not installed", tool)
		}
	}
	f := lab.NewFlat(t, lab.FlatOptions{Nodes: n, IPv6: true, Routes: []string{"203.0.113.0/24", "198.51.100.0/24", "2001:db8:100::/64"}})
	al := &agentLab{Flat: f, t: t, client: f.Client, macs: f.MACs()}
	for _, nd := range f.Nodes {
		al.nodes = append(al.nodes, nd.Host)
	}
	if o.napi {
		attachXDPPass(t, al.client.Do, al.bridgePorts()...)
	}
	al.bpffs = lab.MountBPFFS(t)
	fp := o.fastPath
	if fp == "" {
		fp = "xdp"
	}
	al.conf = lab.AgentTOML{
		Pools: []lab.Pool{{Name: "flat", Addresses: []string{"203.0.113.0/24", "198.51.100.0/24", "2001:db8:100::/64"},
			Layer2Interfaces: []string{"eth0"}}},
		Layer2: &lab.Layer2TOML{GratuitousCount: 3, GratuitousInterval: "100ms", FastPath: fp,
			PinDir: filepath.Join(al.bpffs, "vipspeaker")},
		Membership: &lab.Membership{Join: f.Join()},
	}
	al.writeConf()
	al.services(map[string][]string{"web": {agentVIP4, agentVIP6}})
	return al
}

// writeConf writes al.conf as every agent's vipspeaker.toml.
func (al *agentLab) writeConf() {
	if err := al.WriteConfig("vipspeaker.toml", al.conf.String()); err != nil {
		al.t.Fatal(err)
	}
}

// services writes one manifest file with a Service per entry (name →
// addresses) in the pool flat, replacing the previous file.
func (al *agentLab) services(svcs map[string][]string) {
	var ss []lab.ServiceFile
	for name, addrs := range svcs {
		ss = append(ss, lab.ServiceFile{Name: name, Pool: "flat", Addresses: addrs})
	}
	if err := al.WriteServices("services", ss...); err != nil {
		al.t.Fatal(err)
	}
}

// bridgePorts are the indexes of the veth ports of the client's bridge.
func (al *agentLab) bridgePorts() []int {
	links, err := al.client.Netlink().LinkList()
	if err != nil {
		al.t.Fatal(err)
	}
	var idx []int
	for _, lk := range links {
		if lk.Type() == "veth" {
			idx = append(idx, lk.Attrs().Index)
		}
	}
	return idx
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
		al.t.Fatalf("node%d's agent: %v. Log:\n%s", i, err, lab.Tail(p.Log(), 30))
	}
	return p
}

func (al *agentLab) spawn(i int, wrap ...string) *lab.Process {
	al.t.Helper()
	al.Nodes[i].Wrap = wrap
	p, err := al.Nodes[i].Start(al.flags...)
	if err != nil {
		al.t.Fatal(err)
	}
	return p
}

// agent is node i's agent last started.
func (al *agentLab) agent(i int) *lab.Process { return al.Nodes[i].Proc }

// stop sends SIGTERM to node i's agent and waits (bounded) for it to exit.
func (al *agentLab) stop(i int) {
	al.t.Helper()
	p := al.agent(i)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		al.t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(15 * time.Second):
		al.t.Fatalf("node%d's agent still running 15s after SIGTERM", i)
	}
}

func (al *agentLab) arping(addr string, n int) []string {
	return al.ARPing(addr, n, 100*time.Millisecond)
}

func (al *agentLab) ndisc(addr string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, _ := al.client.Run(ctx, "ndisc6", "-1", "-q", "-r", "2", "-w", "300", addr, "br0")
	return lab.MACs(out)
}

// owner waits until addr is answered by exactly one node and returns it.
func (al *agentLab) owner(addr string) int {
	al.t.Helper()
	return al.WaitOwner(al.t, addr, 20*time.Second, func(a string) []string { return al.arping(a, 2) })
}

// startTwo builds a lab of two nodes, starts both agents and returns the
// owner of agentVIP4.
func startTwo(t *testing.T) (al *agentLab, owner int) {
	t.Helper()
	al = newAgentLab(t, 2, labOpts{})
	al.start(0)
	al.start(1)
	return al, al.owner(agentVIP4)
}

// scrape returns the /metrics text of the agent on h.
func scrape(t testing.TB, h *lab.Host) string {
	t.Helper()
	out, err := h.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	return out
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
		return lab.MetricSum(text, name, map[string]string{"path": path}) - lab.MetricSum(before, name, map[string]string{"path": path})
	}
	// Read from the program's maps at scrape time: exact at once.
	now := scrape(t, al.nodes[0])
	if d := delta(now, "vipspeaker_arp_replies_sent_total", "xdp"); d != n {
		t.Errorf("ARP replies path=xdp rose by %v right after the replies, want %d", d, n)
	}
	if d := delta(now, "vipspeaker_ndp_advertisements_sent_total", "xdp"); d != 3 {
		t.Errorf("NDP advertisements path=xdp rose by %v right after the replies, want 3", d)
	}
	if v := lab.MetricSum(now, "vipspeaker_l2_fast_path_active", nil); v != 1 {
		t.Errorf("vipspeaker_l2_fast_path_active = %v while XDP answers, want 1", v)
	}
	for _, name := range []string{"vipspeaker_arp_replies_sent_total", "vipspeaker_ndp_advertisements_sent_total"} {
		if v := lab.MetricSum(now, name, map[string]string{"path": "userspace"}); v != 0 {
			t.Errorf("%s{path=userspace} = %v while XDP answers, want 0", name, v)
		}
	}
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
		m, err := al.nodes[0].Metrics()
		if err != nil {
			return err
		}
		if v := lab.MetricSum(m, "vipspeaker_gratuitous_sent_total", map[string]string{"path": fast}); v != float64(want) {
			return fmt.Errorf("gratuitous_sent_total{path=%s} = %v, want %d", fast, v, want)
		}
		if v := lab.MetricSum(m, "vipspeaker_gratuitous_sent_total", map[string]string{"path": other}); v != 0 {
			return fmt.Errorf("gratuitous_sent_total{path=%s} = %v, want 0 (all through %s)", other, v, fast)
		}
		return nil
	})
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
	al, o := startTwo(t)
	other := 1 - o
	if strings.Contains(al.agent(o).Log(), "pinning unavailable") {
		t.Fatalf("node%d's agent could not pin:\n%s", o, lab.Tail(al.agent(o).Log(), 20))
	}
	pins, _ := os.ReadDir(filepath.Join(al.bpffs, "vipspeaker", fmt.Sprintf("node%d", o)))
	if len(pins) == 0 {
		t.Fatalf("nothing pinned under %s", filepath.Join(al.bpffs, "vipspeaker", fmt.Sprintf("node%d", o)))
	}
	claimsBefore := countLines(al.agent(other).Log(), "owner of VIP: answering", "vip="+agentVIP4)

	pr := al.StartProber(t, agentVIP4, 10*time.Millisecond)
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
	if n := countLines(al.agent(other).Log(), "owner of VIP: answering", "vip="+agentVIP4); n != claimsBefore {
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
	al, o := startTwo(t)
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
	if !strings.Contains(al.agent(other).Log(), "speaker restarting; keeping its VIPs") {
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
// from userspace (path="userspace" rises), and nftables counts the VIP's
// traffic (vipspeaker_vip_receive_path{path="nftables"}); with fast-path = "xdp" it exits
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
		t.Errorf("%d log lines say the fast path is not available, want 1:\n%s", n, lab.Tail(log, 30))
	}
	if countLines(log, "XDP fast path not available", "CAP_BPF") != 1 {
		t.Errorf("the fallback line does not name CAP_BPF:\n%s", lab.Tail(log, 30))
	}
	if got := al.arping(agentVIP4, 3); len(got) != 3 {
		t.Fatalf("arping: %v, want 3 replies", got)
	}
	lab.Eventually(t, 10*time.Second, 300*time.Millisecond, func() error {
		m, err := al.nodes[0].Metrics()
		if err != nil {
			return err
		}
		if v := lab.MetricSum(m, "vipspeaker_arp_replies_sent_total", map[string]string{"path": "userspace"}); v < 3 {
			return fmt.Errorf("ARP replies path=userspace = %v, want ≥ 3", v)
		}
		if v := lab.MetricSum(m, "vipspeaker_arp_replies_sent_total", map[string]string{"path": "xdp"}); v != 0 {
			return fmt.Errorf("ARP replies path=xdp = %v without XDP", v)
		}
		if !strings.Contains(m, "\nvipspeaker_l2_fast_path_active 0\n") {
			return errors.New("vipspeaker_l2_fast_path_active is not 0 after the fallback")
		}
		// Without XDP, nftables counts the VIP's traffic.
		if v := lab.MetricSum(m, "vipspeaker_vip_receive_path", map[string]string{"path": "nftables"}); v != 1 {
			return fmt.Errorf("vipspeaker_vip_receive_path{path=\"nftables\"} = %v, want 1", v)
		}
		if !strings.Contains(m, `vipspeaker_vip_receive_packets_total{vip="`+agentVIP4+`"}`) {
			return fmt.Errorf("no receive counter for %s after the fallback", agentVIP4)
		}
		return nil
	})
	al.stop(0)

	al.conf.Layer2.FastPath = "xdp"
	al.writeConf()
	q := al.spawn(0, dropBPF...)
	select {
	case <-q.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("fast-path = xdp without CAP_BPF: the agent still runs after 20s:\n%s", lab.Tail(q.Log(), 20))
	}
	var ee *exec.ExitError
	if err := q.Wait(); !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Errorf("fast-path = xdp without CAP_BPF: exit %v, want a non-zero status", err)
	}
	if countLines(q.Log(), `fast-path = \"xdp\"`, "CAP_BPF") == 0 {
		t.Errorf("the agent's last words do not name the setting and CAP_BPF:\n%s", lab.Tail(q.Log(), 10))
	}
}

// uplinkGoBGP is the node's gobgp.conf: one neighbor, addr, that never
// answers (no session is needed).
func uplinkGoBGP(addr string) string {
	return lab.GoBGPConf{AS: 64512, RouterID: "198.18.8.1",
		Neighbors: []lab.GoBGPNeighbor{{Address: addr, PeerAS: 64513, ConnectRetry: 2}}}.String()
}

// TestAgentCountsBGPUplinkTraffic: on a node with only a BGP pool, the
// fast path counts each VIP's traffic on the interface the kernel routes
// the gobgp.conf neighbor through (found with a route lookup, recomputed
// when gobgp.conf changes): a router sending N pings to a VIP shows as
// exactly N packets and their bytes in vipspeaker_vip_receive_*_total, for
// IPv4 and IPv6. The uplink gets the program in generic mode. The neighbor
// needs no BGP session for this. vipspeaker_vip_receive_path says xdp, and
// the nftables counters' table an earlier agent left is gone.
func TestAgentCountsBGPUplinkTraffic(t *testing.T) {
	t.Parallel()
	nstest.RequireRoot(t)
	l := lab.New(t)
	node, router := l.MustHost("node"), l.MustHost("router")
	l.MustLink(node, "eth1", []string{"198.18.8.1/30", "2001:db8:8::1/64"}, router, "eth0", []string{"198.18.8.2/30", "2001:db8:8::2/64"})
	l.MustLink(node, "eth2", []string{"198.18.9.1/30"}, router, "eth1", []string{"198.18.9.2/30"})
	const vip4, vip6 = "198.51.100.7", "2001:db8:200::7"
	router.MustRun("ip", "route", "add", vip4+"/32", "via", "198.18.8.1")
	router.MustRun("ip", "-6", "route", "add", vip6+"/128", "via", "2001:db8:8::1")
	bpffs := lab.MountBPFFS(t)
	a, err := lab.NewAgent(node, lab.Vipspeaker(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		a.WriteConfig("vipspeaker.toml", lab.AgentTOML{
			Pools:  []lab.Pool{{Name: "uplink", Addresses: []string{"198.51.100.0/24", "2001:db8:200::/64"}}},
			Layer2: &lab.Layer2TOML{FastPath: "xdp", PinDir: filepath.Join(bpffs, "vipspeaker")},
		}.String()),
		a.WriteConfig("gobgp.conf", uplinkGoBGP("198.18.8.2")),
		a.WriteService(lab.ServiceFile{Name: "web", Pool: "uplink", Addresses: []string{vip4, vip6}}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// What an earlier agent without XDP would have left: this one counts
	// with XDP and removes it.
	node.MustRun("nft", "add", "table", "inet", "vipspeaker")
	p, err := a.Start()
	if err != nil {
		t.Fatal(err)
	}
	attached := func(iface string) float64 {
		m, err := node.Metrics()
		if err != nil {
			return -1
		}
		return lab.MetricSum(m, "vipspeaker_xdp_attached", map[string]string{"interface": iface})
	}
	lab.Eventually(t, 20*time.Second, 300*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("%w: the agent exited:\n%s", lab.ErrGiveUp, lab.Tail(p.Log(), 20))
		}
		if attached("eth1") != 1 {
			return errors.New("the fast path is not on eth1, the uplink to 198.18.8.2")
		}
		return nil
	})
	if v := attached("eth2"); v != 0 {
		t.Errorf("the fast path is on eth2 too, where no neighbor is")
	}
	if v := lab.MetricSum(scrape(t, node), "vipspeaker_vip_receive_path", map[string]string{"path": "xdp"}); v != 1 {
		t.Errorf("vipspeaker_vip_receive_path{path=\"xdp\"} = %v, want 1", v)
	}
	if out := node.MustRun("nft", "list", "tables"); strings.Contains(out, "inet vipspeaker") {
		t.Errorf("the nftables counters' table is still there with XDP counting:\n%s", out)
	}
	// Count only: generic mode, so attaching never resets an uplink's NIC.
	if v := lab.MetricSum(scrape(t, node), "vipspeaker_xdp_attached", map[string]string{"interface": "eth1", "mode": "generic"}); v != 1 {
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
		pk := lab.MetricSum(m, "vipspeaker_vip_receive_packets_total", map[string]string{"vip": c.vip})
		by := lab.MetricSum(m, "vipspeaker_vip_receive_bytes_total", map[string]string{"vip": c.vip})
		if pk != float64(c.n) || by != float64(c.bytes) {
			t.Errorf("%s after %d pings: %v packets, %v bytes; want %d and %d", c.vip, c.n, pk, by, c.n, c.bytes)
		}
	}

	// gobgp.conf now names a neighbor behind eth2: the counting moves.
	if err := a.WriteConfig("gobgp.conf", uplinkGoBGP("198.18.9.2")); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 20*time.Second, 300*time.Millisecond, func() error {
		if a, b := attached("eth1"), attached("eth2"); a != 0 || b != 1 {
			return fmt.Errorf("attached on eth1 %v, eth2 %v; want 0 and 1", a, b)
		}
		return nil
	})
}
