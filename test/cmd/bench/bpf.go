package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vipspeaker/vipspeaker/bpf"
	"github.com/vipspeaker/vipspeaker/dataplane"
	"github.com/vipspeaker/vipspeaker/test/bench/report"
)

// benchBPF compares the XDP fast path with the userspace responder on one
// veth segment (node namespace ↔ client namespace): ARP replies under a
// flood from the same generator, the time from taking over 1,000 VIPs to
// the last gratuitous frame seen by the client, and the program's cost per
// packet passing through (with and without a counted VIP).
func benchBPF(r *report.Report) error {
	l, err := newBPFLab()
	if err != nil {
		return err
	}
	defer l.close()
	vip := netip.MustParseAddr("203.0.113.10")
	v4, v6 := benchTakeover(250, 750)
	all := append(append([]netip.Addr{}, v4...), v6...)
	frames := 2*len(v4) + len(v6)

	fp, err := bpf.Load(bpf.Options{Interfaces: []string{"l2"}, Attach: bpf.AttachNative, PinDir: l.pinDir, Enter: l.node.do})
	if err != nil {
		return fmt.Errorf("load fast path: %w", err)
	}
	removed := false
	defer func() {
		if !removed {
			_ = fp.Remove()
		}
	}()
	owned := map[netip.Addr][]string{vip: {"l2"}}
	for _, a := range all {
		owned[a] = []string{"l2"}
	}
	if err := fp.SetOwned(owned); err != nil {
		return err
	}
	if err := fp.RenewLease(time.Hour); err != nil {
		return err
	}
	if err := fp.SetCounted([]netip.Addr{vip}); err != nil {
		return err
	}

	const flood = 50000
	r.Printf("ARP flood: %d requests for one VIP, each from its own sender address, generated in the client's kernel (XDP live frames);", flood)
	r.Printf("replies timed in the client's kernel (XDP sink). Latency is per request, send to reply, over the answered ones.")
	r.Printf("")
	r.Printf("| path | offered req/s | answered | replies/s | p50 | p99 | machine CPU per 1,000 replies |")
	r.Printf("|---|---|---|---|---|---|---|")
	xf, err := l.arpFlood(vip, flood)
	if err != nil {
		return fmt.Errorf("xdp flood: %w", err)
	}
	r.Printf("| xdp (native) | %.0f | %d | %.0f | %s | %s | %s |", xf.offered, xf.answered, xf.rate(), ms(xf.p50), ms(xf.p99), ms(xf.cpuPer1000()))

	// Gratuitous frames, XDP live frames.
	xdpT, err := l.takeovers(frames, nil, func() error {
		_, err := fp.Announce("l2", all)
		return err
	})
	if err != nil {
		return fmt.Errorf("xdp takeover: %w", err)
	}

	// The program's cost on traffic passing through.
	cost, err := l.passCost(vip)
	if err != nil {
		return fmt.Errorf("pass-through cost: %w", err)
	}

	if err := fp.Remove(); err != nil {
		return fmt.Errorf("remove fast path: %w", err)
	}
	removed = true
	if err := l.nodeNAPI(); err != nil {
		return fmt.Errorf("XDP_PASS on the node: %w", err)
	}

	// The same with the userspace responder.
	resp, err := dataplane.New(dataplane.Options{Enter: l.node.do, GratuitousCount: 1})
	if err != nil {
		return err
	}
	defer resp.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- resp.Run(ctx) }()
	defer func() { cancel(); <-done }()
	resp.SetInterfaces([]string{"l2"})
	resp.SetOwned(map[netip.Addr][]string{vip: {"l2"}})
	ready := time.Now().Add(10 * time.Second)
	for resp.Owned("l2") == nil && time.Now().Before(ready) {
		time.Sleep(20 * time.Millisecond)
	}
	if resp.Owned("l2") == nil {
		return errors.New("userspace responder did not open l2 in 10s")
	}
	uf, err := l.arpFlood(vip, flood)
	if err != nil {
		return fmt.Errorf("userspace flood: %w", err)
	}
	r.Printf("| userspace | %.0f | %d | %.0f | %s | %s | %s |", uf.offered, uf.answered, uf.rate(), ms(uf.p50), ms(uf.p99), ms(uf.cpuPer1000()))
	if uf.rate() > 0 {
		r.Printf("")
		r.Printf("XDP/userspace reply rate: %.1f×", xf.rate()/uf.rate())
	}

	userT, err := l.takeovers(frames, func() error {
		// Give the VIPs up, so the next SetOwned takes them over again.
		resp.SetOwned(map[netip.Addr][]string{vip: {"l2"}})
		time.Sleep(200 * time.Millisecond)
		return nil
	}, func() error {
		resp.SetOwned(owned)
		return nil
	})
	if err != nil {
		return fmt.Errorf("userspace takeover: %w", err)
	}
	// The floor of the packet-socket path: the same frames, prebuilt, one
	// sendto each, no responder logic.
	rawFrames := gratuitousFrames(benchNodeMAC, v4, v6)
	rawT, err := l.takeovers(frames, nil, func() error { return l.sendFromNode(rawFrames) })
	if err != nil {
		return fmt.Errorf("packet socket takeover: %w", err)
	}
	r.Printf("")
	r.Printf("Takeover of 1,000 VIPs (250 IPv4 × 2 gratuitous ARP + 750 IPv6 × 1 unsolicited NA = %d frames), time from the call to the last frame arriving at the client (timed in its kernel):", frames)
	r.Printf("")
	r.Printf("| path | rounds with every frame | median | min | max |")
	r.Printf("|---|---|---|---|---|")
	for _, row := range []struct {
		name string
		t    takeoverTimes
	}{
		{"xdp live frames (one Announce)", xdpT},
		{"packet socket (dataplane SetOwned, one round; includes joining 750 solicited-node groups)", userT},
		{"packet socket floor (prebuilt frames, one sendto each)", rawT},
	} {
		r.Printf("| %s | %d/%d | %s | %s | %s |", row.name, row.t.complete, takeoverRounds,
			ms(percentile(row.t.times, 50)), ms(percentile(row.t.times, 0)), ms(percentile(row.t.times, 100)))
	}
	if x := percentile(xdpT.times, 50); x > 0 {
		r.Printf("")
		r.Printf("live frames speed-up (medians): %.1f× against the responder, %.1f× against the packet-socket floor",
			float64(percentile(userT.times, 50))/float64(x), float64(percentile(rawT.times, 50))/float64(x))
	}
	r.Add(report.Figure{Name: "ARP replies per second under a flood, XDP", Unit: "replies/s", Value: report.F(xf.rate()),
		Baseline: &report.Baseline{Name: "userspace responder, same flood", Value: report.F(uf.rate())},
		Target:   &report.Target{Text: "≥ 5× the userspace rate", Checks: []report.Check{report.AtLeast("ratio", 5)}}})
	r.Add(report.Figure{Name: "ARP reply latency under the flood, XDP", Unit: "ms", Samples: xf.answered,
		P50: report.F(report.Ms(xf.p50)), P99: report.F(report.Ms(xf.p99)),
		Baseline: &report.Baseline{Name: "userspace responder", P50: report.F(report.Ms(uf.p50)), P99: report.F(report.Ms(uf.p99))}})
	r.Add(report.Figure{Name: "machine CPU per 1,000 replies under the flood, XDP", Unit: "ms", Value: report.F(report.Ms(xf.cpuPer1000())),
		Baseline: &report.Baseline{Name: "userspace responder", Value: report.F(report.Ms(uf.cpuPer1000()))},
		Target:   &report.Target{Text: "lower CPU than userspace", Checks: []report.Check{report.AtMost("ratio", 1)}}})
	takeover := func(t takeoverTimes) (*float64, *float64) {
		return report.F(report.Ms(percentile(t.times, 50))), report.F(report.Ms(percentile(t.times, 99)))
	}
	xp50, xp99 := takeover(xdpT)
	up50, up99 := takeover(userT)
	fp50, fp99 := takeover(rawT)
	r.Add(report.Figure{Name: "takeover of 1,000 VIPs → last gratuitous frame at the client, XDP live frames", Unit: "ms", Samples: len(xdpT.times),
		P50: xp50, P99: xp99,
		Baseline: &report.Baseline{Name: "packet socket through the userspace responder", P50: up50, P99: up99},
		Target:   &report.Target{Text: "≥ 5× faster (ratio ≤ 0.2)", Checks: []report.Check{report.AtMost("ratio", 0.2)}}})
	r.Add(report.Figure{Name: "the same against the packet-socket floor (prebuilt frames)", Unit: "ms", Samples: len(xdpT.times),
		P50: xp50, P99: xp99,
		Baseline: &report.Baseline{Name: "one sendto per prebuilt frame", P50: fp50, P99: fp99},
		Target:   &report.Target{Text: "≥ 5× faster (ratio ≤ 0.2)", Checks: []report.Check{report.AtMost("ratio", 0.2)}}})
	r.Add(report.Figure{Name: "program cost per packet to a counted VIP", Unit: "ns", Value: report.F(cost.counted),
		Baseline: &report.Baseline{Name: "to an address that is not a VIP", Value: report.F(cost.other)}})
	r.Printf("")
	r.Printf("Program cost on IPv4 UDP passing through (bpf_stats run time / runs, %d packets each):", cost.packets)
	r.Printf("")
	r.Printf("| traffic | ns per packet |")
	r.Printf("|---|---|")
	r.Printf("| to a counted VIP | %.0f |", cost.counted)
	r.Printf("| to an address that is not a VIP | %.0f |", cost.other)
	return nil
}

func benchTakeover(n, m int) (v4, v6 []netip.Addr) {
	a := netip.MustParseAddr("198.51.100.1")
	for range n {
		v4 = append(v4, a)
		a = a.Next()
	}
	b := netip.MustParseAddr("2001:db8:100::1:1")
	for range m {
		v6 = append(v6, b)
		b = b.Next()
	}
	return v4, v6
}

// benchNetns is a named namespace of the benchmark.
type benchNetns struct {
	path string
	h    netns.NsHandle
	del  func()
}

func newBenchNetns(name string) (*benchNetns, error) {
	path, del, err := benchNS(name)
	if err != nil {
		return nil, err
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		del()
		return nil, err
	}
	return &benchNetns{path: path, h: h, del: del}, nil
}

// do runs fn on a locked thread inside the namespace; the thread is
// thrown away afterwards.
func (n *benchNetns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(n.h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func (n *benchNetns) close() { n.h.Close(); n.del() }

var (
	benchNodeMAC   = net.HardwareAddr{0x02, 0x00, 0x5e, 0x20, 0x00, 0x01}
	benchClientMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x20, 0x00, 0x02}
)

type bpfLab struct {
	node, client *benchNetns
	pinDir       string
	pinMount     string
	kit          *floodKit
	passProg     *ebpf.Program
	nodePass     link.Link
	clientIndex  int
	nodeIndex    int
}

func newBPFLab() (l *bpfLab, err error) {
	l = &bpfLab{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if l.node, err = newBenchNetns("bpfnode"); err != nil {
		return nil, err
	}
	if l.client, err = newBenchNetns("bpfclient"); err != nil {
		return nil, err
	}
	if l.pinMount, err = os.MkdirTemp("", "vsbench-bpffs"); err != nil {
		return nil, err
	}
	if err := unix.Mount("bpf", l.pinMount, "bpf", 0, ""); err != nil {
		return nil, fmt.Errorf("mount bpffs: %w", err)
	}
	l.pinDir = l.pinMount + "/vipspeaker"
	nh, err := netlink.NewHandleAt(l.node.h)
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	ch, err := netlink.NewHandleAt(l.client.h)
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	if err := nh.LinkAdd(&netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "l2", HardwareAddr: benchNodeMAC}, PeerName: "cl",
		PeerHardwareAddr: benchClientMAC, PeerNamespace: netlink.NsFd(int(l.client.h)),
	}); err != nil {
		return nil, fmt.Errorf("add veth: %w", err)
	}
	for _, s := range []struct {
		h    *netlink.Handle
		name string
		addr string
	}{{nh, "l2", "198.18.0.1/16"}, {ch, "cl", "198.18.0.2/16"}, {nh, "lo", ""}, {ch, "lo", ""}} {
		lk, err := s.h.LinkByName(s.name)
		if err != nil {
			return nil, err
		}
		if s.addr != "" {
			a, _ := netlink.ParseAddr(s.addr)
			if err := s.h.AddrAdd(lk, a); err != nil {
				return nil, err
			}
		}
		if err := s.h.LinkSetUp(lk); err != nil {
			return nil, err
		}
		switch s.name {
		case "cl":
			l.clientIndex = lk.Attrs().Index
		case "l2":
			l.nodeIndex = lk.Attrs().Index
		}
	}
	if err := l.node.do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/conf/all/arp_ignore", []byte("1"), 0o644)
	}); err != nil {
		return nil, err
	}
	// The sink on the client's veth end also gives it NAPI, which a veth
	// needs to receive XDP_TX frames from its peer (see bpf/doc.go).
	if l.kit, err = newFloodKit(); err != nil {
		return nil, err
	}
	if err := l.client.do(func() error {
		var err error
		l.kit.sinkLink, err = link.AttachXDP(link.XDPOptions{Program: l.kit.prog, Interface: l.clientIndex, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		return nil, fmt.Errorf("attach the reply sink to the client: %w", err)
	}
	l.passProg, err = ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		return nil, fmt.Errorf("XDP_PASS program: %w", err)
	}
	return l, nil
}

// nodeNAPI attaches an XDP_PASS program to the node's l2, so the node's
// veth end receives the generator's live frames when the fast path is not
// loaded (the userspace measurement).
func (l *bpfLab) nodeNAPI() error {
	return l.node.do(func() error {
		var err error
		l.nodePass, err = link.AttachXDP(link.XDPOptions{Program: l.passProg, Interface: l.nodeIndex, Flags: link.XDPDriverMode})
		return err
	})
}

func (l *bpfLab) close() {
	if l.nodePass != nil {
		l.nodePass.Close()
	}
	if l.passProg != nil {
		l.passProg.Close()
	}
	if l.kit != nil {
		l.kit.close()
	}
	if l.pinMount != "" {
		_ = unix.Unmount(l.pinMount, unix.MNT_DETACH)
		_ = os.Remove(l.pinMount)
	}
	if l.client != nil {
		l.client.close()
	}
	if l.node != nil {
		l.node.close()
	}
}

// clientSocket opens an AF_PACKET socket on the client's cl.
func (l *bpfLab) clientSocket() (int, error) {
	fd := -1
	err := l.client.do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(benchHtons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: benchHtons(unix.ETH_P_ALL), Ifindex: l.clientIndex}); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
		tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil && fd >= 0 {
		unix.Close(fd)
	}
	return fd, err
}

func benchHtons(v uint16) uint16 { return v<<8 | v>>8 }

type floodResult struct {
	sent, answered int
	offered        float64 // requests per second the generator put out
	first, last    time.Duration
	p50, p99       time.Duration
	cpu            time.Duration
}

func (f floodResult) rate() float64 {
	d := (f.last - f.first).Seconds()
	if f.answered == 0 || d <= 0 {
		return 0
	}
	return float64(f.answered) / d
}

func (f floodResult) cpuPer1000() time.Duration {
	if f.answered == 0 {
		return 0
	}
	return f.cpu * 1000 / time.Duration(f.answered)
}

// floodKit is the flood generator and the reply sink, both in the kernel
// so that neither limits what is measured. One XDP program on the client's
// cl: run with BPF_PROG_RUN in live-frames mode it is the generator (each
// run stamps request i with sender 198.19.i>>8.i&255 and records its send
// time); on frames arriving on cl it is the sink (it records the arrival
// time of reply i, counts gratuitous frames, and drops both). All times are
// bpf_ktime_get_ns.
type floodKit struct {
	prog                   *ebpf.Program
	ctr, sent, recvd, grat *ebpf.Map
	sinkLink               link.Link
}

const (
	floodMax   = 65536
	floodChunk = 32
	floodMagic = 0x56534246
)

func newFloodKit() (*floodKit, error) {
	k := &floodKit{}
	var err error
	mk := func(name string, vsize uint32, n uint32) (*ebpf.Map, error) {
		return ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: ebpf.Array, KeySize: 4, ValueSize: vsize, MaxEntries: n})
	}
	if k.ctr, err = mk("vsb_ctr", 4, 1); err != nil {
		return nil, err
	}
	if k.sent, err = mk("vsb_sent", 8, floodMax); err != nil {
		k.close()
		return nil, err
	}
	if k.recvd, err = mk("vsb_recvd", 8, floodMax); err != nil {
		k.close()
		return nil, err
	}
	if k.grat, err = mk("vsb_grat", 16, 1); err != nil {
		k.close()
		return nil, err
	}
	// The generator branch runs only for frames carrying the flood magic
	// as XDP metadata (BPF_PROG_RUN input; wire frames have none). Being
	// the same program as the attached sink keeps it in the XDP
	// dispatcher, so repeated runs do not pay for adding it each time.
	gen := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, 8, asm.Word), // data_meta
		asm.LoadMem(asm.R3, asm.R6, 0, asm.Word), // data
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 4),
		asm.JGT.Reg(asm.R4, asm.R3, "sink"),
		asm.LoadMem(asm.R5, asm.R2, 0, asm.Word),
		asm.JNE.Imm(asm.R5, floodMagic, "sink"),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, k.ctr.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "gdrop"),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word),
		asm.Mov.Reg(asm.R8, asm.R7),
		asm.Add.Imm(asm.R8, 1),
		asm.StoreMem(asm.R0, 0, asm.R8, asm.Word),
		asm.JGE.Imm(asm.R7, floodMax, "gdrop"),
		asm.FnKtimeGetNs.Call(),
		asm.Mov.Reg(asm.R9, asm.R0),
		asm.StoreMem(asm.RFP, -8, asm.R7, asm.Word),
		asm.LoadMapPtr(asm.R1, k.sent.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "gdrop"),
		asm.StoreMem(asm.R0, 0, asm.R9, asm.DWord),
		// Strip the metadata: it would travel with the frame to the peer
		// (and come back on the reply).
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 8),
		asm.FnXdpAdjustMeta.Call(),
		asm.JNE.Imm(asm.R0, 0, "gdrop"),
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 42),
		asm.JGT.Reg(asm.R4, asm.R3, "gdrop"),
		asm.Mov.Reg(asm.R5, asm.R7),
		asm.RSh.Imm(asm.R5, 8),
		asm.StoreMem(asm.R2, 30, asm.R5, asm.Byte),
		asm.StoreMem(asm.R2, 31, asm.R7, asm.Byte),
		asm.Mov.Imm(asm.R0, 3), // XDP_TX
		asm.Return(),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("gdrop"), // XDP_DROP
		asm.Return(),
	}
	sink := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word).WithSymbol("sink"),
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 42),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
		asm.JEq.Imm(asm.R5, 0x0608, "arp"), // EtherTypes read little-endian
		asm.JEq.Imm(asm.R5, 0xdd86, "v6"),
		asm.Ja.Label("pass"),
		// ARP: sender IP = target IP is a gratuitous frame; a reply to
		// 198.19.x.y answers flood request x<<8|y.
		asm.LoadMem(asm.R0, asm.R2, 28, asm.Word).WithSymbol("arp"),
		asm.LoadMem(asm.R1, asm.R2, 38, asm.Word),
		asm.JEq.Reg(asm.R0, asm.R1, "grat"),
		asm.LoadMem(asm.R5, asm.R2, 20, asm.Half),
		asm.JNE.Imm(asm.R5, 0x0200, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 38, asm.Byte),
		asm.JNE.Imm(asm.R5, 198, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 39, asm.Byte),
		asm.JNE.Imm(asm.R5, 19, "pass"),
		asm.LoadMem(asm.R7, asm.R2, 40, asm.Byte),
		asm.LSh.Imm(asm.R7, 8),
		asm.LoadMem(asm.R5, asm.R2, 41, asm.Byte),
		asm.Or.Reg(asm.R7, asm.R5),
		asm.FnKtimeGetNs.Call(),
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.StoreMem(asm.RFP, -4, asm.R7, asm.Word),
		asm.LoadMapPtr(asm.R1, k.recvd.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.StoreMem(asm.R0, 0, asm.R8, asm.DWord),
		asm.Ja.Label("drop"),
		// IPv6: an ICMPv6 neighbour advertisement to a multicast group.
		asm.Mov.Reg(asm.R4, asm.R2).WithSymbol("v6"),
		asm.Add.Imm(asm.R4, 86),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 20, asm.Byte),
		asm.JNE.Imm(asm.R5, 58, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 54, asm.Byte),
		asm.JNE.Imm(asm.R5, 136, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 38, asm.Byte),
		asm.JNE.Imm(asm.R5, 0xff, "pass"),
		// A gratuitous frame: count it and keep the arrival time.
		asm.FnKtimeGetNs.Call().WithSymbol("grat"),
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, k.grat.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.StoreMem(asm.R0, 8, asm.R8, asm.DWord),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("drop"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 2).WithSymbol("pass"), // XDP_PASS
		asm.Return(),
	}
	if k.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "vsb_client", Type: ebpf.XDP, License: "MIT", Instructions: append(gen, sink...)}); err != nil {
		k.close()
		return nil, fmt.Errorf("flood generator and sink: %w", err)
	}
	return k, nil
}

func (k *floodKit) close() {
	if k.sinkLink != nil {
		k.sinkLink.Close()
	}
	for _, c := range []interface{ Close() error }{k.prog, k.ctr, k.sent, k.recvd, k.grat} {
		if c != nil && !isNilCloser(c) {
			_ = c.Close()
		}
	}
}

func isNilCloser(c interface{ Close() error }) bool {
	switch v := c.(type) {
	case *ebpf.Program:
		return v == nil
	case *ebpf.Map:
		return v == nil
	}
	return false
}

// arpFlood sends n ARP requests for vip from the client (generator in
// live-frames mode), collects the replies in the sink and measures them.
func (l *bpfLab) arpFlood(vip netip.Addr, n int) (floodResult, error) {
	if n > floodMax {
		return floodResult{}, fmt.Errorf("flood of %d: at most %d", n, floodMax)
	}
	k := l.kit
	zero := make([]uint64, floodMax)
	keys := make([]uint32, floodMax)
	for i := range keys {
		keys[i] = uint32(i)
	}
	for _, m := range []*ebpf.Map{k.sent, k.recvd} {
		if _, err := m.BatchUpdate(keys, zero, nil); err != nil {
			return floodResult{}, fmt.Errorf("reset flood maps: %w", err)
		}
	}
	if err := k.ctr.Put(uint32(0), uint32(0)); err != nil {
		return floodResult{}, err
	}
	frame := make([]byte, 60)
	copy(frame[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(frame[6:12], benchClientMAC)
	binary.BigEndian.PutUint16(frame[12:14], 0x0806)
	a := frame[14:]
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], 0x0800)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], 1)
	copy(a[8:14], benchClientMAC)
	a[14], a[15] = 198, 19
	t4 := vip.As4()
	copy(a[24:28], t4[:])
	type xdpMd struct{ Data, DataEnd, DataMeta, Ingress, RxQueue, Egress uint32 }
	input := make([]byte, 8+len(frame))
	binary.NativeEndian.PutUint32(input[0:4], floodMagic)
	copy(input[8:], frame)
	ctx := xdpMd{Data: 8, DataEnd: uint32(len(input)), Ingress: uint32(l.clientIndex)}
	cpu0 := machineBusy()
	// In runs of 32 frames: one run of all n overflows the veth rings
	// (256 frames) before the receiving side's NAPI gets the CPU.
	if err := l.client.do(func() error {
		for done := 0; done < n; done += floodChunk {
			_, err := k.prog.Run(&ebpf.RunOptions{Data: input, Context: &ctx, Repeat: uint32(min(floodChunk, n-done)), Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, BatchSize: floodChunk})
			if err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return floodResult{}, fmt.Errorf("run flood generator: %w", err)
	}
	// Let the replies drain: stop when no reply arrived for 300 ms.
	count := func() int {
		got := make([]uint64, floodMax)
		if _, err := k.recvd.BatchLookup(new(ebpf.MapBatchCursor), keys, got, nil); err != nil {
			return -1
		}
		c := 0
		for _, v := range got[:n] {
			if v != 0 {
				c++
			}
		}
		return c
	}
	prev := -1
	for range 20 {
		time.Sleep(300 * time.Millisecond)
		c := count()
		if c == n || c == prev {
			break
		}
		prev = c
	}
	cpu := machineBusy() - cpu0
	sent := make([]uint64, floodMax)
	recvd := make([]uint64, floodMax)
	if _, err := k.sent.BatchLookup(new(ebpf.MapBatchCursor), keys, sent, nil); err != nil {
		return floodResult{}, err
	}
	if _, err := k.recvd.BatchLookup(new(ebpf.MapBatchCursor), keys, recvd, nil); err != nil {
		return floodResult{}, err
	}
	res := floodResult{sent: n, cpu: cpu}
	var lat []time.Duration
	var firstSent, lastSent, lastRecv uint64
	for i := range n {
		if sent[i] == 0 {
			continue
		}
		if firstSent == 0 || sent[i] < firstSent {
			firstSent = sent[i]
		}
		lastSent = max(lastSent, sent[i])
		if recvd[i] != 0 {
			lat = append(lat, time.Duration(recvd[i]-sent[i]))
			lastRecv = max(lastRecv, recvd[i])
		}
	}
	res.answered = len(lat)
	res.first, res.last = time.Duration(firstSent), time.Duration(lastRecv)
	if lastSent > firstSent {
		res.offered = float64(n) / time.Duration(lastSent-firstSent).Seconds()
	}
	res.p50, res.p99 = percentile(lat, 50), percentile(lat, 99)
	return res, nil
}

// machineBusy is the CPU time all CPUs spent not idle (from /proc/stat).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	var busy int64
	for i, f := range fields[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}

// sendFromNode sends frames out of the node's l2 through an AF_PACKET
// socket, one sendto each.
func (l *bpfLab) sendFromNode(frames [][]byte) error {
	return l.node.do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: l.nodeIndex, Halen: 6}
		for _, f := range frames {
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				return err
			}
		}
		return nil
	})
}

// gratuitousFrames builds what a takeover sends: for each IPv4 VIP a
// gratuitous ARP request and reply, for each IPv6 VIP an unsolicited NA to
// all-nodes.
func gratuitousFrames(mac net.HardwareAddr, v4, v6 []netip.Addr) [][]byte {
	var out [][]byte
	for _, v := range v4 {
		for _, op := range []uint16{1, 2} {
			f := make([]byte, 60)
			copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
			copy(f[6:12], mac)
			binary.BigEndian.PutUint16(f[12:14], 0x0806)
			a := f[14:]
			binary.BigEndian.PutUint16(a[0:2], 1)
			binary.BigEndian.PutUint16(a[2:4], 0x0800)
			a[4], a[5] = 6, 4
			binary.BigEndian.PutUint16(a[6:8], op)
			copy(a[8:14], mac)
			b := v.As4()
			copy(a[14:18], b[:])
			if op == 2 {
				copy(a[18:24], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
			}
			copy(a[24:28], b[:])
			out = append(out, f)
		}
	}
	allNodes := netip.MustParseAddr("ff02::1")
	for _, v := range v6 {
		f := make([]byte, 86)
		copy(f[0:6], []byte{0x33, 0x33, 0, 0, 0, 1})
		copy(f[6:12], mac)
		binary.BigEndian.PutUint16(f[12:14], 0x86dd)
		ip := f[14:54]
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:6], 32)
		ip[6], ip[7] = 58, 255
		src, dst := v.As16(), allNodes.As16()
		copy(ip[8:24], src[:])
		copy(ip[24:40], dst[:])
		m := f[54:]
		m[0] = 136
		m[4] = 0x20 // override
		copy(m[8:24], src[:])
		m[24], m[25] = 2, 1
		copy(m[26:32], mac)
		var sum uint32
		add := func(b []byte) {
			for i := 0; i+1 < len(b); i += 2 {
				sum += uint32(b[i])<<8 | uint32(b[i+1])
			}
		}
		add(src[:])
		add(dst[:])
		add([]byte{0, 0, 0, 32, 0, 0, 0, 58})
		add(m)
		for sum>>16 != 0 {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(m[2:4], ^uint16(sum))
		out = append(out, f)
	}
	return out
}

const takeoverRounds = 7

type takeoverTimes struct {
	times    []time.Duration // rounds in which every frame arrived
	complete int
}

// takeovers runs takeoverRounds takeovers (before, untimed; then send,
// timed to the last frame at the client).
func (l *bpfLab) takeovers(frames int, before, send func() error) (takeoverTimes, error) {
	var out takeoverTimes
	for range takeoverRounds {
		if before != nil {
			if err := before(); err != nil {
				return out, err
			}
		}
		d, seen, err := l.gratuitous(frames, send)
		if err != nil {
			return out, err
		}
		// An arrival more than 10 s after the call is not this round's
		// (seen once on the shared machine); count the round incomplete.
		if seen == frames && d <= 10*time.Second {
			out.complete++
			out.times = append(out.times, d)
		}
		time.Sleep(100 * time.Millisecond) // let stragglers of this round pass
	}
	return out, nil
}

// gratuitous measures, in the client's kernel, how long after start the
// last of n gratuitous frames arrived; send starts them.
func (l *bpfLab) gratuitous(n int, send func() error) (time.Duration, int, error) {
	zero := make([]byte, 16)
	if err := l.kit.grat.Put(uint32(0), zero); err != nil {
		return 0, 0, err
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, 0, err
	}
	start := uint64(ts.Nano())
	if err := send(); err != nil {
		return 0, 0, err
	}
	var v [16]byte
	for range 1000 {
		if err := l.kit.grat.Lookup(uint32(0), &v); err != nil {
			return 0, 0, err
		}
		if int(binary.NativeEndian.Uint64(v[0:8])) >= n {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	seen := int(binary.NativeEndian.Uint64(v[0:8]))
	last := binary.NativeEndian.Uint64(v[8:16])
	if seen == 0 || last < start {
		return 0, seen, nil
	}
	return time.Duration(last - start), seen, nil
}

type passCost struct {
	packets        int
	counted, other float64
}

// passCost sends UDP packets from the client through the node's XDP
// program, to a counted VIP and to the node's own address, and reads the
// program's run time from bpf_stats.
func (l *bpfLab) passCost(vip netip.Addr) (passCost, error) {
	const n = 200000
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return passCost{}, fmt.Errorf("enable bpf stats: %w", err)
	}
	defer stats.Close()
	var id uint32
	if err := l.node.do(func() error {
		lk, err := netlink.LinkByName("l2")
		if err != nil {
			return err
		}
		if lk.Attrs().Xdp == nil || !lk.Attrs().Xdp.Attached {
			return errors.New("no XDP program on l2")
		}
		id = lk.Attrs().Xdp.ProgId
		return nil
	}); err != nil {
		return passCost{}, err
	}
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return passCost{}, err
	}
	defer prog.Close()
	fd, err := l.clientSocket()
	if err != nil {
		return passCost{}, err
	}
	defer unix.Close(fd)
	out := passCost{packets: n}
	for _, dst := range []netip.Addr{vip, netip.MustParseAddr("198.18.0.1")} {
		frame := udpFrame(benchClientMAC, benchNodeMAC, netip.MustParseAddr("198.18.0.2"), dst)
		s0, err := prog.Stats()
		if err != nil {
			return passCost{}, err
		}
		to := &unix.SockaddrLinklayer{Ifindex: l.clientIndex, Halen: 6}
		for range n {
			_ = unix.Sendto(fd, frame, 0, to)
		}
		time.Sleep(200 * time.Millisecond)
		s1, err := prog.Stats()
		if err != nil {
			return passCost{}, err
		}
		runs := s1.RunCount - s0.RunCount
		if runs == 0 {
			return passCost{}, errors.New("the program did not run")
		}
		ns := float64(s1.Runtime-s0.Runtime) / float64(runs)
		if dst == vip {
			out.counted = ns
		} else {
			out.other = ns
		}
	}
	return out, nil
}

// udpFrame is an Ethernet/IPv4/UDP frame with 18 bytes of payload (to a
// closed port: the node drops it after the program ran).
func udpFrame(src, dst net.HardwareAddr, from, to netip.Addr) []byte {
	f := make([]byte, 14+20+8+18)
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(f)-14))
	ip[8], ip[9] = 64, 17
	s, d := from.As4(), to.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(ip[i])<<8 | uint32(ip[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:12], ^uint16(sum))
	u := f[34:]
	binary.BigEndian.PutUint16(u[0:2], 40000)
	binary.BigEndian.PutUint16(u[2:4], 9)
	binary.BigEndian.PutUint16(u[4:6], 8+18)
	return f
}

// Keeps the section compiled and lint-clean until main.go lists it as
// {"bpf", benchBPF}.
