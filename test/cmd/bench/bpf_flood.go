package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

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
