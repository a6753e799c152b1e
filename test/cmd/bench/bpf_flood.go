package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
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
	dropped        int     // sendto said ENOBUFS: the veth dropped the request
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

// floodKit is the reply sink: an XDP program on the client's cl, in its
// kernel so that it does not limit what is measured. It records the
// arrival time of reply i (a reply to 198.19.i>>8.i&255), counts
// gratuitous frames and keeps the last one's arrival time, and drops
// both. Times are bpf_ktime_get_ns, that is CLOCK_MONOTONIC.
type floodKit struct {
	prog        *ebpf.Program
	recvd, grat *ebpf.Map
	sinkLink    link.Link
}

const floodMax = 65536

// cat joins instruction lists.
func cat(parts ...asm.Instructions) asm.Instructions {
	var out asm.Instructions
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// lookup looks up the key in the stack at off in m: R0 is the value, or
// the program jumps to fail when there is none.
func lookup(m *ebpf.Map, off int16, fail string) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(off)),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, fail),
	}
}

// bytesAre jumps to fail unless the frame (R2) holds each byte at
// {offset, value}; it uses R5.
func bytesAre(fail string, at ...[2]int) asm.Instructions {
	var out asm.Instructions
	for _, b := range at {
		out = append(out, asm.LoadMem(asm.R5, asm.R2, int16(b[0]), asm.Byte), asm.JNE.Imm(asm.R5, int32(b[1]), fail))
	}
	return out
}

// stamp stores the time (bpf_ktime_get_ns, kept in tmp) at index key (a
// register, put in the stack at off) of the 8-byte array m; fail as in
// lookup.
func stamp(m *ebpf.Map, key, tmp asm.Register, off int16, fail string) asm.Instructions {
	return cat(asm.Instructions{
		asm.FnKtimeGetNs.Call(),
		asm.Mov.Reg(tmp, asm.R0),
		asm.StoreMem(asm.RFP, off, key, asm.Word),
	}, lookup(m, off, fail), asm.Instructions{
		asm.StoreMem(asm.R0, 0, tmp, asm.DWord),
	})
}

func newFloodKit() (*floodKit, error) {
	k := &floodKit{}
	var err error
	mk := func(name string, vsize uint32, n uint32) (*ebpf.Map, error) {
		return ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: ebpf.Array, KeySize: 4, ValueSize: vsize, MaxEntries: n})
	}
	if k.recvd, err = mk("vsb_recvd", 8, floodMax); err != nil {
		return nil, err
	}
	if k.grat, err = mk("vsb_grat", 16, 1); err != nil {
		k.close()
		return nil, err
	}
	sink := cat(asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word),
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
	}, bytesAre("pass", [2]int{38, 198}, [2]int{39, 19}), asm.Instructions{
		asm.LoadMem(asm.R7, asm.R2, 40, asm.Byte),
		asm.LSh.Imm(asm.R7, 8),
		asm.LoadMem(asm.R5, asm.R2, 41, asm.Byte),
		asm.Or.Reg(asm.R7, asm.R5),
	}, stamp(k.recvd, asm.R7, asm.R8, -4, "drop"), asm.Instructions{
		asm.Ja.Label("drop"),
		// IPv6: an ICMPv6 neighbour advertisement to a multicast group.
		asm.Mov.Reg(asm.R4, asm.R2).WithSymbol("v6"),
		asm.Add.Imm(asm.R4, 86),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
	}, bytesAre("pass", [2]int{20, 58}, [2]int{54, 136}, [2]int{38, 0xff}), asm.Instructions{
		// A gratuitous frame: count it and keep the arrival time.
		asm.FnKtimeGetNs.Call().WithSymbol("grat"),
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
	}, lookup(k.grat, -4, "drop"), asm.Instructions{
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.StoreMem(asm.R0, 8, asm.R8, asm.DWord),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("drop"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 2).WithSymbol("pass"), // XDP_PASS
		asm.Return(),
	})
	if k.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "vsb_sink", Type: ebpf.XDP, License: "MIT", Instructions: sink}); err != nil {
		k.close()
		return nil, fmt.Errorf("reply sink: %w", err)
	}
	return k, nil
}

func (k *floodKit) close() {
	if k.sinkLink != nil {
		k.sinkLink.Close()
	}
	for _, c := range []interface{ Close() error }{k.prog, k.recvd, k.grat} {
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

// arpFlood sends n ARP requests for vip from the client through a packet
// socket (request i from sender 198.19.i>>8.i&255, its send time taken
// from CLOCK_MONOTONIC right before its sendto), collects the replies in
// the sink and measures them.
func (l *bpfLab) arpFlood(vip netip.Addr, n int) (floodResult, error) {
	if n > floodMax {
		return floodResult{}, fmt.Errorf("flood of %d: at most %d", n, floodMax)
	}
	k := l.kit
	keys := make([]uint32, floodMax)
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := k.recvd.BatchUpdate(keys, make([]uint64, floodMax), nil); err != nil {
		return floodResult{}, fmt.Errorf("reset the sink: %w", err)
	}
	// From 198.19.0.0: floodSend writes the request's number into the
	// sender address's last two bytes.
	frame := arpFrame(1, benchClientMAC, netip.AddrFrom4([4]byte{198, 19, 0, 0}), nil, vip)
	fd, err := packetSocket(l.client)
	if err != nil {
		return floodResult{}, fmt.Errorf("flood generator socket: %w", err)
	}
	defer unix.Close(fd)
	sent := make([]uint64, n)
	cpu0 := machineBusy()
	dropped, err := floodSend(fd, &unix.SockaddrLinklayer{Ifindex: l.clientIndex, Halen: 6}, frame, sent)
	if err != nil {
		return floodResult{}, fmt.Errorf("flood generator: %w", err)
	}
	// Let the replies drain: stop when no reply arrived for 300 ms.
	recvd := make([]uint64, floodMax)
	count := func() int {
		if _, err := k.recvd.BatchLookup(new(ebpf.MapBatchCursor), keys, recvd, nil); err != nil {
			return -1
		}
		c := 0
		for _, v := range recvd[:n] {
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
	if _, err := k.recvd.BatchLookup(new(ebpf.MapBatchCursor), keys, recvd, nil); err != nil {
		return floodResult{}, err
	}
	res := floodResult{sent: n, dropped: dropped, cpu: cpu}
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

// floodSend sends frame once per element of sent, request i from sender
// 198.19.i>>8.i&255, and stores in sent[i] the CLOCK_MONOTONIC time read
// right before its sendto (the clock of the sink's bpf_ktime_get_ns). It
// returns how many the veth dropped (ENOBUFS); they stay offered.
func floodSend(fd int, to unix.Sockaddr, frame []byte, sent []uint64) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dropped := 0
	var ts unix.Timespec
	for i := range sent {
		frame[30], frame[31] = byte(i>>8), byte(i)
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return dropped, err
		}
		if err := unix.Sendto(fd, frame, 0, to); errors.Is(err, unix.ENOBUFS) {
			dropped++
		} else if err != nil {
			return dropped, fmt.Errorf("request %d: %w", i, err)
		}
		sent[i] = uint64(ts.Nano())
	}
	return dropped, nil
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
