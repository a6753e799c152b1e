package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vipspeaker/vipspeaker/dataplane"
)

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
	return l, nil
}

func (l *bpfLab) close() {
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

// packetSocket opens an AF_PACKET socket inside ns for sending only
// (protocol 0: it receives nothing); sendto names the interface.
func packetSocket(ns *benchNetns) (int, error) {
	fd := -1
	err := ns.do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// sendFromNode sends frames out of the node's l2 through an AF_PACKET
// socket, one sendto each.
func (l *bpfLab) sendFromNode(frames [][]byte) error {
	fd, err := packetSocket(l.node)
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
}

// startResponder runs a userspace responder on the node's l2 (one
// gratuitous round per takeover; ann, when set, sends the rounds, as the
// fast path does in the agent), owning vip, and waits until it answers
// there. stop ends and closes it.
func (l *bpfLab) startResponder(vip netip.Addr, ann dataplane.Announcer) (*dataplane.Responder, func(), error) {
	opts := dataplane.Options{Enter: l.node.do, GratuitousCount: 1}
	if ann != nil {
		opts.Announcer = ann
	}
	resp, err := dataplane.New(opts)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- resp.Run(ctx) }()
	stop := func() {
		cancel()
		<-done
		_ = resp.Close()
	}
	resp.SetInterfaces([]string{"l2"})
	resp.SetOwned(map[netip.Addr][]string{vip: {"l2"}})
	ready := time.Now().Add(10 * time.Second)
	for resp.Owned("l2") == nil && time.Now().Before(ready) {
		time.Sleep(20 * time.Millisecond)
	}
	if resp.Owned("l2") == nil {
		stop()
		return nil, nil, errors.New("userspace responder did not open l2 in 10s")
	}
	return resp, stop, nil
}
