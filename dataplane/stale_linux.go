package dataplane

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// Stale-neighbour correction. Clients and routers that ignore gratuitous
// ARP / unsolicited NA keep sending a VIP's traffic to the previous owner.
// For a while after giving a VIP up (while this agent lives), the previous
// owner has iptables queue the packets to that VIP arriving on the layer2
// interface (NFQUEUE with --queue-bypass, so traffic flows when the agent is
// gone), answers each sender with a unicast ARP reply / NA carrying the new
// owner's MAC (rate-limited per sender), and lets the packet through. The
// new owner's MAC is learned from its own announcements, or by probing for
// the VIP (an ARP probe from 0.0.0.0, a DAD-style solicitation from ::,
// which pollute no cache).

const (
	// DefaultStaleWindow is how long the previous owner corrects.
	DefaultStaleWindow = 30 * time.Second
	// DefaultQueueNum is the NFQUEUE number used for corrections.
	DefaultQueueNum    = 22096
	staleProbeEvery    = 250 * time.Millisecond
	staleRatePerSender = 200 * time.Millisecond
	staleMaxSenders    = 4096
	iptablesComment    = "vipspeaker stale-neighbour correction"
)

// queuedPacket is one packet handed to userspace by the queue.
type queuedPacket struct {
	ifindex int
	srcMAC  net.HardwareAddr
	payload []byte
}

type staleKey struct {
	iface string
	vip   netip.Addr
}

type staleEntry struct {
	key    staleKey
	port   *port
	cancel context.CancelFunc

	mu     sync.Mutex
	newMAC net.HardwareAddr
	sent   map[string]time.Time
}

func (e *staleEntry) mac() net.HardwareAddr {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.newMAC
}

// corrector runs the correction windows of one Responder.
type corrector struct {
	r      *Responder
	window time.Duration
	queue  uint16
	nf     *nfqueue.Nfqueue

	mu      sync.Mutex
	entries map[staleKey]*staleEntry
	ll      map[int]netip.Addr // link-local address per ifindex (cache)

	// Rule changes go through one worker that applies whatever is pending
	// in one iptables-restore per family: giving up a thousand VIPs costs
	// a few commands, not two thousand.
	rmu     sync.Mutex
	pending []ruleOp
	kick    chan struct{}
	quit    chan struct{}
	stopped chan struct{}
}

type ruleOp struct {
	add  bool
	key  staleKey
	done chan error
}

// startCorrector opens the queue in the responder's namespace and starts
// its reader; nil (logged) when that is not possible here.
func (r *Responder) startCorrector(ctx context.Context) *corrector {
	if r.staleWindow <= 0 {
		return nil
	}
	c := &corrector{r: r, window: r.staleWindow, queue: r.queueNum, entries: map[staleKey]*staleEntry{},
		ll: map[int]netip.Addr{}, kick: make(chan struct{}, 1), quit: make(chan struct{}), stopped: make(chan struct{})}
	if err := r.enter(func() error {
		// The netlink socket is created here, in the namespace.
		nf, err := nfqueue.Open(&nfqueue.Config{
			NfQueue:      c.queue,
			MaxPacketLen: 0xffff,
			MaxQueueLen:  1024,
			Copymode:     nfqueue.NfQnlCopyPacket,
			// When userspace falls behind, packets pass rather than drop.
			Flags:        nfqueue.NfQaCfgFlagFailOpen,
			WriteTimeout: 100 * time.Millisecond,
		})
		c.nf = nf
		return err
	}); err != nil {
		r.log.Warn("stale-neighbour correction off: cannot open NFQUEUE", "queue", c.queue, "err", err)
		return nil
	}
	hook := func(a nfqueue.Attribute) int {
		if a.PacketID == nil {
			return 0
		}
		var p queuedPacket
		if a.InDev != nil {
			p.ifindex = int(*a.InDev)
		}
		if a.HwAddr != nil {
			p.srcMAC = net.HardwareAddr(*a.HwAddr)
		}
		if a.Payload != nil {
			p.payload = *a.Payload
		}
		c.handle(p)
		if err := c.nf.SetVerdict(*a.PacketID, nfqueue.NfAccept); err != nil {
			r.log.Warn("accept queued packet", "err", err)
		}
		return 0
	}
	onErr := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			return 0
		}
		r.log.Warn("read NFQUEUE; correction stops", "err", err)
		return 1
	}
	if err := c.nf.RegisterWithErrorFunc(ctx, hook, onErr); err != nil {
		_ = c.nf.Close()
		r.log.Warn("stale-neighbour correction off: cannot bind NFQUEUE", "queue", c.queue, "err", err)
		return nil
	}
	go c.ruleWorker()
	return c
}

// close stops the rule worker and the queue reader (after Run's context
// ended and every window is over).
func (c *corrector) close() {
	close(c.quit)
	<-c.stopped
	if err := c.nf.Close(); err != nil {
		c.r.log.Debug("close NFQUEUE", "err", err)
	}
}

// handle answers the sender of one queued packet with the new owner's MAC.
func (c *corrector) handle(p queuedPacket) {
	if len(p.srcMAC) != 6 || !isUnicastMAC(p.srcMAC) {
		return
	}
	var dst netip.Addr
	switch {
	case len(p.payload) >= 20 && p.payload[0]>>4 == 4:
		dst = netip.AddrFrom4([4]byte(p.payload[16:20]))
	case len(p.payload) >= 40 && p.payload[0]>>4 == 6:
		dst = netip.AddrFrom16([16]byte(p.payload[24:40]))
	default:
		return
	}
	c.mu.Lock()
	var e *staleEntry
	for k, v := range c.entries {
		if k.vip == dst && v.port.index == p.ifindex {
			e = v
			break
		}
	}
	c.mu.Unlock()
	if e == nil {
		return
	}
	newMAC := e.mac()
	if newMAC == nil {
		return
	}
	now := time.Now()
	e.mu.Lock()
	last, seen := e.sent[string(p.srcMAC)]
	if seen && now.Sub(last) < staleRatePerSender {
		e.mu.Unlock()
		return
	}
	if len(e.sent) >= staleMaxSenders {
		clear(e.sent)
	}
	e.sent[string(p.srcMAC)] = now
	e.mu.Unlock()
	pt := e.port
	if dst.Is4() {
		// A unicast ARP reply with sender = target = VIP: Linux treats it
		// as gratuitous and overrides a recent entry.
		f := arpFrameFrom(pt.mac, arp.OperationReply, p.srcMAC, newMAC, dst, p.srcMAC, dst)
		c.r.send(pt, pt.arp, f, c.r.m.staleCorrections.WithLabelValues(pt.name))
		return
	}
	// An NA with Override to all-nodes, in a frame unicast to the sender:
	// accepted by whatever addresses the sender has.
	f, err := naFrameFrom(pt.mac, newMAC, dst, p.srcMAC, allNodesV6, false)
	if err != nil {
		return
	}
	c.r.send(pt, pt.ndp, f, c.r.m.staleCorrections.WithLabelValues(pt.name))
}

// release starts a correction window for vip on p (called with r.mu held).
func (c *corrector) release(p *port, vip netip.Addr) {
	k := staleKey{p.name, vip}
	c.mu.Lock()
	if old := c.entries[k]; old != nil {
		old.cancel()
	}
	ctx, cancel := context.WithTimeout(p.ctx, c.window)
	e := &staleEntry{key: k, port: p, cancel: cancel, sent: map[string]time.Time{}}
	c.entries[k] = e
	c.mu.Unlock()
	c.r.wg.Add(1)
	go c.runWindow(ctx, e)
}

// reclaim ends the window of vip on iface (this node owns it again).
func (c *corrector) reclaim(iface string, vip netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[staleKey{iface, vip}]; e != nil {
		e.cancel()
	}
}

// stopAll ends every window.
func (c *corrector) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		e.cancel()
	}
}

func (c *corrector) runWindow(ctx context.Context, e *staleEntry) {
	defer c.r.wg.Done()
	defer func() {
		c.mu.Lock()
		if c.entries[e.key] == e {
			delete(c.entries, e.key)
		}
		c.mu.Unlock()
	}()
	log := c.r.log.With("vip", e.key.vip, "iface", e.key.iface)
	if err := c.rule(true, e.key); err != nil {
		log.Warn("cannot queue traffic for stale-neighbour correction", "err", err)
		return
	}
	log.Debug("correcting stale neighbours", "window", c.window)
	defer func() {
		if err := c.rule(false, e.key); err != nil {
			log.Warn("remove stale-neighbour correction rule", "err", err)
		}
	}()
	// Probe from our own link-local address, so the new owner's answer is
	// a solicited NA to us alone (a DAD-style probe from :: would be
	// answered to all-nodes: harmless, but not ours to decide).
	src := netip.IPv6Unspecified()
	if e.key.vip.Is6() {
		src = c.linkLocal(e.port)
	}
	// Probe with back-off: a VIP that nobody took over (its Service is
	// gone) costs a handful of probes, not four a second.
	wait := staleProbeEvery
	for {
		if e.mac() == nil {
			c.probe(e, src)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 8*time.Second)
	}
}

// linkLocal returns an IPv6 link-local address of p's interface, or ::.
func (c *corrector) linkLocal(p *port) netip.Addr {
	c.mu.Lock()
	ll, ok := c.ll[p.index]
	c.mu.Unlock()
	if ok {
		return ll
	}
	defer func() {
		c.mu.Lock()
		c.ll[p.index] = ll
		c.mu.Unlock()
	}()
	ll = netip.IPv6Unspecified()
	_ = c.r.enter(func() error {
		ifi, err := net.InterfaceByIndex(p.index)
		if err != nil {
			return err
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Is6() && ip.IsLinkLocalUnicast() {
					ll = ip
					return nil
				}
			}
		}
		return nil
	})
	return ll
}

// probe asks who has the VIP now without claiming any address: an ARP
// probe from 0.0.0.0, or a solicitation from src (our link-local address,
// else :: as in DAD).
func (c *corrector) probe(e *staleEntry, src netip.Addr) {
	p, vip := e.port, e.key.vip
	if p.ctx.Err() != nil {
		return
	}
	if vip.Is4() {
		f := arpFrame(arp.OperationRequest, ethBroadcast, p.mac, netip.IPv4Unspecified(), ethZero, vip)
		_, _ = p.arp.WriteTo(f, p.to(ethBroadcast))
		return
	}
	g, gm := solicitedNode(vip)
	ns := &ndp.NeighborSolicitation{TargetAddress: vip}
	if !src.IsUnspecified() {
		ns.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: p.mac}}
	}
	msg, err := ndp.MarshalMessageChecksum(ns, src, g)
	if err != nil {
		return
	}
	f := make([]byte, ethHeaderLen+ipv6HdrLen+len(msg))
	copy(f[0:6], gm)
	copy(f[6:12], p.mac)
	binary.BigEndian.PutUint16(f[12:14], etherTypeV6)
	ip := f[ethHeaderLen:]
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(msg)))
	ip[6], ip[7] = protoICMPv6, 255
	ss, gg := src.As16(), g.As16()
	copy(ip[8:24], ss[:])
	copy(ip[24:40], gg[:])
	copy(ip[ipv6HdrLen:], msg)
	_, _ = p.ndp.WriteTo(f, p.to(gm))
}

// learn records the new owner's MAC from an ARP or NDP frame on p that
// speaks for a VIP in a correction window.
func (c *corrector) learn(p *port, frame []byte, isARP bool) {
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	if n == 0 {
		return
	}
	var (
		vip netip.Addr
		mac net.HardwareAddr
	)
	if isARP {
		if len(frame) < ethHeaderLen+arpLen || binary.BigEndian.Uint16(frame[12:14]) != etherTypeARP {
			return
		}
		a := frame[ethHeaderLen:]
		if !bytes.Equal(a[0:6], []byte{0, 1, 8, 0, 6, 4}) || (a[7] != 1 && a[7] != 2) || a[6] != 0 {
			return
		}
		mac, vip = net.HardwareAddr(a[8:14]), netip.AddrFrom4([4]byte(a[14:18]))
	} else {
		if len(frame) < ethHeaderLen+ipv6HdrLen+nsFixedLen || frame[ethHeaderLen+ipv6HdrLen] != icmpTypeNA {
			return
		}
		ip := frame[ethHeaderLen:]
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		if ip[7] != 255 || ipv6HdrLen+plen > len(ip) || plen < nsFixedLen {
			return
		}
		msg := ip[ipv6HdrLen : ipv6HdrLen+plen]
		if icmpv6Checksum(netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40])), msg) != 0 {
			return
		}
		m, err := ndp.ParseMessage(msg)
		if err != nil {
			return
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok {
			return
		}
		vip = na.TargetAddress
		for _, o := range na.Options {
			if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target {
				mac = l.Addr
			}
		}
	}
	if !isUnicastMAC(mac) || bytes.Equal(mac, p.mac) {
		return
	}
	c.mu.Lock()
	e := c.entries[staleKey{p.name, vip}]
	c.mu.Unlock()
	if e == nil {
		return
	}
	e.mu.Lock()
	changed := !bytes.Equal(e.newMAC, mac)
	e.newMAC = bytes.Clone(mac)
	e.mu.Unlock()
	if changed {
		c.r.log.Info("learned the new owner's MAC; correcting stale neighbours", "vip", vip, "iface", p.name, "mac", mac.String())
	}
}

// rule adds or deletes the queue rule of k and waits until it is done.
func (c *corrector) rule(add bool, k staleKey) error {
	op := ruleOp{add: add, key: k, done: make(chan error, 1)}
	c.rmu.Lock()
	c.pending = append(c.pending, op)
	c.rmu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return <-op.done
}

func (c *corrector) ruleWorker() {
	defer close(c.stopped)
	for {
		select {
		case <-c.kick:
		case <-c.quit:
			c.applyPending() // nothing should be left; answer whoever is
			return
		}
		c.applyPending()
	}
}

func (c *corrector) applyPending() {
	c.rmu.Lock()
	ops := c.pending
	c.pending = nil
	c.rmu.Unlock()
	var v4, v6 []ruleOp
	for _, op := range ops {
		if op.key.vip.Is4() {
			v4 = append(v4, op)
		} else {
			v6 = append(v6, op)
		}
	}
	c.applyBatch("iptables", v4)
	c.applyBatch("ip6tables", v6)
}

// applyBatch applies ops in one iptables-restore --noflush; when the batch
// fails (it is all or nothing: one rule someone already removed fails it)
// the ops are applied one by one.
func (c *corrector) applyBatch(bin string, ops []ruleOp) {
	if len(ops) == 0 {
		return
	}
	var b strings.Builder
	b.WriteString("*raw\n")
	for _, op := range ops {
		verb := "-D"
		if op.add {
			verb = "-I"
		}
		fmt.Fprintf(&b, "%s %s\n", verb, strings.Join(c.ruleArgs(op.key, true), " "))
	}
	b.WriteString("COMMIT\n")
	if err := c.exec(bin+"-restore", []string{"-w", "5", "--noflush"}, b.String()); err == nil {
		for _, op := range ops {
			op.done <- nil
		}
		return
	}
	for _, op := range ops {
		verb := "-D"
		if op.add {
			verb = "-I"
		}
		err := c.exec(bin, append([]string{"-w", "5", "-t", "raw", verb}, c.ruleArgs(op.key, false)...), "")
		if err != nil && !op.add && strings.Contains(err.Error(), "exist") {
			err = nil // already gone
		}
		op.done <- err
	}
}

// ruleArgs is the rule after the verb; quoted for iptables-restore input.
func (c *corrector) ruleArgs(k staleKey, quoted bool) []string {
	comment := iptablesComment
	if quoted {
		comment = strconv.Quote(comment)
	}
	return []string{"PREROUTING", "-i", k.iface, "-d", netip.PrefixFrom(k.vip, k.vip.BitLen()).String(),
		"-m", "comment", "--comment", comment,
		"-j", "NFQUEUE", "--queue-num", strconv.Itoa(int(c.queue)), "--queue-bypass"}
}

// exec runs a command in the responder's namespace.
func (c *corrector) exec(bin string, args []string, stdin string) error {
	return c.r.enter(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}
