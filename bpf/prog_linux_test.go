package bpf

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// TestAnnounceBranchNeedsToken runs the program once (BPF_PROG_RUN, not
// live) with announce metadata: with the token of the current call it
// writes the gratuitous ARP frame and returns XDP_TX; with any other token
// (what a veth peer's XDP program could forge) the frame is treated as
// ordinary traffic and passes untouched.
func TestAnnounceBranchNeedsToken(t *testing.T) {
	l := newLab(t)
	f := l.load(t, AttachGeneric, nil)
	own(t, f, vip4)
	renew(t, f, time.Minute)
	var index int
	if err := l.node.Do(func() error {
		i, err := net.InterfaceByName(nodeIf)
		if err == nil {
			index = i.Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	const token = 0x1234abcd
	job := vipJob{Addr: key16(vip4), Form: formARPRequest}
	if err := f.objs.VsJobs.Put(uint32(0), &job); err != nil {
		t.Fatal(err)
	}
	run := func(tok uint32) (uint32, []byte) {
		t.Helper()
		if err := f.objs.VsCursor.Put(uint32(0), &vipCursor{Count: 1, Token: token}); err != nil {
			t.Fatal(err)
		}
		in := make([]byte, 8+arpFrameLen)
		binary.NativeEndian.PutUint32(in[0:4], announceMagic)
		binary.NativeEndian.PutUint32(in[4:8], tok)
		out := make([]byte, len(in)+256)
		ctx := xdpMd{Data: 8, DataEnd: uint32(len(in)), IngressIfindex: uint32(index)}
		var ret uint32
		err := l.node.Do(func() error {
			var err error
			ret, err = f.objs.VsXdp.Run(&ebpf.RunOptions{Data: in, DataOut: out, Context: &ctx})
			return err
		})
		if err != nil {
			t.Fatalf("run program: %v", err)
		}
		return ret, out
	}
	if ret, _ := run(token + 1); ret != 2 {
		t.Fatalf("wrong token: program returned %d, want XDP_PASS (2)", ret)
	}
	ret, out := run(token)
	if ret != 3 {
		t.Fatalf("right token: program returned %d, want XDP_TX (3)", ret)
	}
	// DataOut holds the metadata, which the program zeroed (a veth peer
	// must not read the token), then the frame.
	if meta := binary.NativeEndian.Uint64(out[:8]); meta != 0 {
		t.Errorf("metadata %#x left in the sent frame, want it zeroed", meta)
	}
	a, ok := parseARP(out[8 : 8+arpFrameLen])
	if !ok || a.op != 1 || a.spa != vip4 || a.tpa != vip4 || a.sha.String() != nodeMAC.String() || a.ethDst.String() != bcast.String() {
		t.Fatalf("announce frame %x, parsed %+v", out[8:8+arpFrameLen], a)
	}
}
