package bpf

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// Announce forms and the live-frames metadata, as in xdp.c.
const (
	formARPRequest = 1
	formARPReply   = 2
	formNA         = 3

	announceMagic = 0x5653504b
	arpFrameLen   = 60
	naFrameLen    = 86
)

// xdpMd is the UAPI struct xdp_md, the context of BPF_PROG_RUN.
type xdpMd struct {
	Data           uint32
	DataEnd        uint32
	DataMeta       uint32
	IngressIfindex uint32
	RxQueueIndex   uint32
	EgressIfindex  uint32
}

// Announce sends one round of announcements for vips out of iface through
// the program in live-frames mode: for an IPv4 VIP a gratuitous ARP request
// and a gratuitous ARP reply, for an IPv6 VIP an unsolicited neighbour
// advertisement to all-nodes. The program writes each frame; it sends only
// for VIPs the owned map holds on iface while the lease is valid, so a VIP
// given up meanwhile is skipped. It returns the frames sent. The dataplane
// calls it once per round, in place of its packet-socket sends.
func (f *FastPath) Announce(iface string, vips []netip.Addr) (int, error) {
	n, _, err := f.AnnounceOwned(iface, vips)
	return n, err
}

// AnnounceOwned is Announce that also returns the VIPs it did not announce
// because the owned map does not hold them on iface, or the lease has
// lapsed: the caller sends those through its packet socket when it
// considers them owned. It returns the frames sent.
func (f *FastPath) AnnounceOwned(iface string, vips []netip.Addr) (int, []netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, nil, errClosed
	}
	a := f.ifaces[iface]
	if a == nil || a.flags&flagAnswer == 0 {
		return 0, nil, fmt.Errorf("announce on %s: not a layer2 interface of the fast path", iface)
	}
	if f.noLive {
		return 0, vips, nil
	}
	// Owned: from the keys this process put in the set, or, for a set a
	// previous agent pinned, from the map itself.
	var (
		valid bool
		owns  func(k vipKey) bool
	)
	if f.ownedKeys != nil {
		d, err := f.leaseLocked()
		if err != nil {
			return 0, nil, fmt.Errorf("announce on %s: %w", iface, err)
		}
		valid, owns = d > 0, func(k vipKey) bool { return f.ownedKeys[k] }
	} else {
		set, v, err := f.ownedSetLocked()
		if err != nil {
			return 0, nil, fmt.Errorf("announce on %s: %w", iface, err)
		}
		defer set.Close()
		valid, owns = v, func(k vipKey) bool {
			var one uint8
			return set.Lookup(&k, &one) == nil
		}
	}
	var arp, na []vipJob
	var missed []netip.Addr
	for _, v := range vips {
		if !v.IsValid() {
			continue
		}
		v = v.Unmap()
		k := vipKey{Ifindex: uint32(a.index), Addr: key16(v)}
		if !valid || !owns(k) {
			missed = append(missed, v)
			continue
		}
		if v.Is4() {
			arp = append(arp, vipJob{Addr: key16(v), Form: formARPRequest}, vipJob{Addr: key16(v), Form: formARPReply})
		} else {
			na = append(na, vipJob{Addr: key16(v), Form: formNA})
		}
	}
	if len(arp)+len(na) == 0 {
		return 0, missed, nil
	}
	before, err := f.ifCounters(a.index)
	if err != nil {
		return 0, missed, fmt.Errorf("announce on %s: %w", iface, err)
	}
	for len(arp)+len(na) > 0 {
		jobs, size := arp, arpFrameLen
		if len(jobs) == 0 {
			jobs, size = na, naFrameLen
		}
		if len(jobs) > maxJobs {
			jobs = jobs[:maxJobs]
		}
		if err := f.run(a.index, jobs, size); err != nil {
			if errors.Is(err, ErrLiveFramesRefused) {
				f.noLive = true
				f.log.Warn("the kernel refuses XDP live frames: gratuitous announcements go through the packet sockets; XDP still answers requests", "iface", iface, "err", err)
			}
			return 0, missed, fmt.Errorf("announce on %s: %w", iface, err)
		}
		if size == arpFrameLen {
			arp = arp[len(jobs):]
		} else {
			na = na[len(jobs):]
		}
	}
	after, err := f.ifCounters(a.index)
	if err != nil {
		return 0, missed, fmt.Errorf("announce on %s: %w", iface, err)
	}
	return int(after.Garp + after.Una - before.Garp - before.Una), missed, nil
}

// run writes jobs into the job table and runs the program once per job on
// a frame of size bytes carrying the announce metadata.
func (f *FastPath) run(ifindex int, jobs []vipJob, size int) error {
	keys := make([]uint32, len(jobs))
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := f.objs.VsJobs.BatchUpdate(keys, jobs, nil); err != nil {
		// Batch operations on arrays need 5.6; fall back to single puts.
		for i := range jobs {
			if err := f.objs.VsJobs.Put(keys[i], &jobs[i]); err != nil {
				return fmt.Errorf("write job table: %w", err)
			}
		}
	}
	var tok [4]byte
	for binary.NativeEndian.Uint32(tok[:]) == 0 {
		if _, err := rand.Read(tok[:]); err != nil {
			return fmt.Errorf("announce token: %w", err)
		}
	}
	token := binary.NativeEndian.Uint32(tok[:])
	if err := f.objs.VsCursor.Put(uint32(0), &vipCursor{Count: uint32(len(jobs)), Token: token}); err != nil {
		return fmt.Errorf("reset job cursor: %w", err)
	}
	// Close the window again whatever happens.
	defer func() { _ = f.objs.VsCursor.Put(uint32(0), &vipCursor{}) }()
	const metaLen = 8
	data := make([]byte, metaLen+size)
	binary.NativeEndian.PutUint32(data[0:4], announceMagic)
	binary.NativeEndian.PutUint32(data[4:8], token)
	ctx := xdpMd{Data: metaLen, DataEnd: uint32(len(data)), IngressIfindex: uint32(ifindex)}
	return f.enter(func() error {
		repeat := uint32(len(jobs))
		for call := 1; ; call++ {
			_, err := f.objs.VsXdp.Run(&ebpf.RunOptions{
				Data:      data,
				Context:   &ctx,
				Repeat:    repeat,
				Flags:     unix.BPF_F_TEST_XDP_LIVE_FRAMES,
				BatchSize: 64,
			})
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) {
				return fmt.Errorf("%w: %w", ErrLiveFramesRefused, err)
			}
			if err != nil {
				return fmt.Errorf("run XDP program in live-frames mode: %w", err)
			}
			// Within one call the kernel recycles the pages of frames
			// already sent, resetting their pointers but not their bytes:
			// a recycled frame carries the metadata the program wiped, so
			// its run takes no job. A new call starts on fresh pages; call
			// again for the jobs left.
			var c vipCursor
			if err := f.objs.VsCursor.Lookup(uint32(0), &c); err != nil {
				return fmt.Errorf("read job cursor: %w", err)
			}
			if c.Next >= c.Count {
				return nil
			}
			if call == maxAnnounceCalls {
				return fmt.Errorf("run XDP program in live-frames mode: %d of %d frames written after %d calls", c.Next, c.Count, call)
			}
			repeat = c.Count - c.Next
		}
	})
}

// maxAnnounceCalls bounds the BPF_PROG_RUN calls of one batch of jobs (see
// run): each call takes at least the jobs of its fresh pages.
const maxAnnounceCalls = 16

// LiveFramesAllowed reports whether this kernel runs XDP programs in
// live-frames mode (BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES), which
// Announce needs. It runs a two-instruction program that drops its one
// frame, on lo of the calling thread's network namespace. false with a nil
// error: the kernel refuses the mode; an error: the probe itself failed
// (no BPF at all, say).
func LiveFramesAllowed() (bool, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}, // XDP_DROP
	})
	if err != nil {
		return false, fmt.Errorf("live-frames probe: load: %w", err)
	}
	defer prog.Close()
	frame := make([]byte, arpFrameLen)
	ctx := xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: 1} // lo
	_, err = prog.Run(&ebpf.RunOptions{Data: frame, Context: &ctx, Repeat: 1, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, BatchSize: 1})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP):
		return false, nil
	}
	return false, fmt.Errorf("live-frames probe: %w", err)
}
