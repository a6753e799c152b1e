package bpf

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Interface flags and announce forms, as in xdp.c.
const (
	flagAnswer = 1
	flagCount  = 2

	formARPRequest = 1
	formARPReply   = 2
	formNA         = 3

	announceMagic = 0x5653504b
	arpFrameLen   = 60
	naFrameLen    = 86
	linkPinPrefix = "link_"
)

// vipKey is struct vip_key of xdp.c (bpf2go does not see it: the inner
// map is declared by sizes).
type vipKey struct {
	Ifindex uint32
	Addr    [16]byte
}

// xdpMd is the UAPI struct xdp_md, the context of BPF_PROG_RUN.
type xdpMd struct {
	Data           uint32
	DataEnd        uint32
	DataMeta       uint32
	IngressIfindex uint32
	RxQueueIndex   uint32
	EgressIfindex  uint32
}

var errClosed = errors.New("bpf fast path: closed")

// attached is one interface the program runs on.
type attached struct {
	name  string
	index int
	mac   net.HardwareAddr
	flags uint8
	mode  string // native, generic or unknown
	link  link.Link
}

// FastPath is the loaded XDP program, its maps and its links. Load creates
// it; Close releases this process's handles and leaves the pinned program
// answering (an agent restart); Remove detaches and unpins everything (the
// agent stops for good).
type FastPath struct {
	log    *slog.Logger
	enter  func(func() error) error
	pinDir string   // "" when nothing is pinned
	lock   *os.File // the pin directory, flock'ed while this process uses it
	attach AttachMode
	lease  time.Duration
	objs   vipObjects
	inner  *ebpf.MapSpec
	ncpu   int
	reg    prometheus.Registerer
	coll   *collector

	// mu guards everything below and the maps' descriptors: every method
	// holds it while it uses them, so Close never pulls a descriptor from
	// under a call (and Announce calls, sharing one job table, never
	// interleave).
	mu     sync.Mutex
	ifaces map[string]*attached
	closed bool
	// want is the interfaces asked for (name → flags); missing those not
	// found (logged once).
	want    map[string]uint8
	missing map[string]bool
	// owned is the last set given to SetOwned (nil: none yet, the pinned
	// set stays), applied again when interfaces change.
	owned map[netip.Addr][]string
	// ownedSet is the inner map in the owned slot when this process put it
	// there; its descriptor is kept because reopening a map by ID needs
	// CAP_SYS_ADMIN, which the DaemonSet does not grant. nil while the
	// slot holds a set pinned by a previous agent.
	ownedSet *ebpf.Map
	// ownedKeys is what ownedSet holds (this process filled it), so
	// AnnounceOwned checks ownership without a syscall per VIP.
	ownedKeys map[vipKey]bool
}

// Load loads the program (reusing pinned maps, so the owned set, the lease
// and the counters carry over a restart), attaches it to the interfaces
// (replacing the program of a pinned link atomically, or creating and
// pinning a new link), and detaches links pinned for interfaces no longer
// named. It returns an error wrapping ErrNotSupported when the kernel or the
// process's privileges refuse.
func Load(opts Options) (*FastPath, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "bpf")
	switch opts.Attach {
	case AttachAuto, AttachNative, AttachGeneric:
	default:
		return nil, fmt.Errorf("bpf options: unknown attach mode %q", opts.Attach)
	}
	if len(opts.Interfaces)+len(opts.Uplinks) > MaxInterfaces {
		return nil, fmt.Errorf("bpf options: more than %d interfaces", MaxInterfaces)
	}
	if opts.Lease < 0 {
		return nil, errors.New("bpf options: negative lease")
	}
	f := &FastPath{
		log:     log,
		enter:   opts.Enter,
		attach:  opts.Attach,
		lease:   opts.Lease,
		ifaces:  map[string]*attached{},
		missing: map[string]bool{},
	}
	if f.lease == 0 {
		f.lease = DefaultLease
	}
	if f.enter == nil {
		f.enter = func(fn func() error) error { return fn() }
	}
	if err := checkCaps(); err != nil {
		return nil, err
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("%w: possible CPUs: %w", ErrNotSupported, err)
	}
	f.ncpu = ncpu
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Debug("cannot lift RLIMIT_MEMLOCK", "err", err)
	}

	pinDir := opts.PinDir
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	if onBPFFS(existingAncestor(pinDir)) {
		if err := os.MkdirAll(pinDir, 0o700); err != nil {
			return nil, fmt.Errorf("create pin directory %s: %w", pinDir, err)
		}
		lock, err := lockDir(pinDir)
		if err != nil {
			return nil, err
		}
		f.pinDir, f.lock = pinDir, lock
	} else {
		log.Warn("pinning unavailable: no bpf filesystem mounted there (mount -t bpf bpf /sys/fs/bpf); "+
			"the XDP fast path is detached when this process exits, so an agent restart is not carried by it",
			"dir", pinDir)
	}

	spec, err := loadVip()
	if err != nil {
		f.unlock()
		return nil, fmt.Errorf("parse embedded eBPF object: %w", err)
	}
	f.inner = spec.Maps["vs_owned"].InnerMap.Copy()
	if err := f.loadObjects(spec); err != nil {
		f.unlock()
		return nil, err
	}
	if err := f.ensureOwnedSet(); err != nil {
		f.objs.Close()
		f.unlock()
		return nil, err
	}
	if err := f.SetInterfaces(opts.Interfaces, opts.Uplinks); err != nil {
		// The caller falls back to userspace (or stops): leave nothing
		// attached or pinned behind.
		f.discard()
		return nil, err
	}
	if opts.Registerer != nil {
		c := newCollector(f)
		if err := opts.Registerer.Register(c); err != nil {
			f.discard()
			return nil, fmt.Errorf("register bpf metrics: %w", err)
		}
		f.coll, f.reg = c, opts.Registerer
	}
	return f, nil
}

func (f *FastPath) loadObjects(spec *ebpf.CollectionSpec) error {
	copts := &ebpf.CollectionOptions{}
	if f.pinDir != "" {
		copts.Maps.PinPath = f.pinDir
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	err := spec.LoadAndAssign(&f.objs, copts)
	if errors.Is(err, ebpf.ErrMapIncompatible) && f.pinDir != "" {
		// Pinned by an older build with other map layouts: start over.
		f.log.Warn("pinned maps do not match this build; replacing them", "dir", f.pinDir, "err", err)
		for name, m := range spec.Maps {
			if m.Pinning == ebpf.PinByName {
				_ = os.Remove(filepath.Join(f.pinDir, name))
			}
		}
		err = spec.LoadAndAssign(&f.objs, copts)
	}
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			f.log.Debug("verifier log", "log", strings.Join(verr.Log, "\n"))
		}
		return fmt.Errorf("%w: load XDP program: %w", ErrNotSupported, err)
	}
	return nil
}

// ensureOwnedSet puts an empty owned set in slot 0 when there is none (a
// first load; a restart finds the previous agent's set there).
func (f *FastPath) ensureOwnedSet() error {
	var id ebpf.MapID
	if err := f.objs.VsOwned.Lookup(uint32(0), &id); err == nil && id != 0 {
		return nil
	}
	set, err := ebpf.NewMap(f.inner)
	if err != nil {
		return fmt.Errorf("%w: create owned set: %w", ErrNotSupported, err)
	}
	if err := f.objs.VsOwned.Put(uint32(0), set); err != nil {
		set.Close()
		return fmt.Errorf("install owned set: %w", err)
	}
	f.keepOwnedSet(set, map[vipKey]bool{})
	return nil
}

// keepOwnedSet records the set now in the owned slot and its keys,
// closing the previous one's descriptor (the kernel frees a replaced set
// once no program run uses it).
func (f *FastPath) keepOwnedSet(set *ebpf.Map, keys map[vipKey]bool) {
	if f.ownedSet != nil {
		_ = f.ownedSet.Close()
	}
	f.ownedSet, f.ownedKeys = set, keys
}

// openOwnedSet returns a descriptor of the set in the owned slot, for the
// caller to close: a duplicate of the one this process keeps, or, for a
// set a previous agent pinned, one opened by ID (CAP_SYS_ADMIN).
func (f *FastPath) openOwnedSet() (*ebpf.Map, error) {
	if f.ownedSet != nil {
		set, err := f.ownedSet.Clone()
		if err != nil {
			return nil, fmt.Errorf("open owned set: %w", err)
		}
		return set, nil
	}
	var id ebpf.MapID
	if err := f.objs.VsOwned.Lookup(uint32(0), &id); err != nil {
		return nil, fmt.Errorf("read owned set: %w", err)
	}
	set, err := ebpf.NewMapFromID(id)
	if err != nil {
		return nil, fmt.Errorf("open owned set (the previous agent's, by ID; needs CAP_SYS_ADMIN until this agent sets its own): %w", err)
	}
	return set, nil
}

// SetInterfaces attaches the program to the named interfaces (layer2 ones
// answer and count, uplinks only count) and detaches it from interfaces no
// longer named. A named interface that does not exist is skipped (logged);
// call again when it appears. An attach refused by the kernel or the driver
// returns an error wrapping ErrNotSupported.
func (f *FastPath) SetInterfaces(layer2, uplinks []string) error {
	want := map[string]uint8{}
	for _, n := range uplinks {
		if n != "" {
			want[n] |= flagCount
		}
	}
	for _, n := range layer2 {
		if n != "" {
			want[n] |= flagAnswer | flagCount
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errClosed
	}
	f.want = want
	return f.syncLocked()
}

// syncLocked attaches the program to every interface in f.want that
// exists (again, when it was recreated with another index), and detaches
// it from the others.
func (f *FastPath) syncLocked() error {
	want := f.want
	// Drop what is no longer wanted, including links a previous agent
	// pinned for interfaces the configuration does not name any more.
	for name, a := range f.ifaces {
		if _, ok := want[name]; !ok {
			f.detachLocked(a)
			delete(f.ifaces, name)
		}
	}
	if f.pinDir != "" {
		ents, _ := os.ReadDir(f.pinDir)
		for _, e := range ents {
			name, ok := strings.CutPrefix(e.Name(), linkPinPrefix)
			if !ok {
				continue
			}
			if _, keep := want[name]; keep {
				continue
			}
			f.removeStaleLink(name)
		}
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	slices.Sort(names)
	before := f.layer2IndexesLocked()
	var errs []error
	for _, name := range names {
		if err := f.attachLocked(name, want[name]); err != nil {
			errs = append(errs, err)
		}
	}
	if f.owned != nil && !maps.Equal(before, f.layer2IndexesLocked()) {
		// Interfaces came, went or changed index: rebuild the owned set.
		if err := f.applyOwnedLocked(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// layer2IndexesLocked maps each attached layer2 interface to its index.
func (f *FastPath) layer2IndexesLocked() map[string]int {
	m := map[string]int{}
	for n, a := range f.ifaces {
		if a.flags&flagAnswer != 0 {
			m[n] = a.index
		}
	}
	return m
}

// attachLocked attaches (or re-flags) one interface.
func (f *FastPath) attachLocked(name string, flags uint8) error {
	var ifi *net.Interface
	err := f.enter(func() error {
		var err error
		ifi, err = net.InterfaceByName(name)
		return err
	})
	if err != nil {
		if !f.missing[name] {
			f.log.Warn("interface not found; fast path not attached there until it appears", "iface", name, "err", err)
			f.missing[name] = true
		}
		if a := f.ifaces[name]; a != nil {
			f.detachLocked(a)
			delete(f.ifaces, name)
		}
		return nil
	}
	delete(f.missing, name)
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("attach XDP to %s: not an Ethernet interface", name)
	}
	if a := f.ifaces[name]; a != nil {
		if a.index == ifi.Index && a.flags == flags && slices.Equal(a.mac, ifi.HardwareAddr) {
			return nil
		}
		if a.index != ifi.Index {
			f.detachLocked(a)
			delete(f.ifaces, name)
		}
	}
	var cfg vipIfaceCfg
	copy(cfg.Mac[:], ifi.HardwareAddr)
	cfg.Flags = flags
	if err := f.objs.VsIfaces.Put(uint32(ifi.Index), &cfg); err != nil {
		return fmt.Errorf("configure %s in the interface map: %w", name, err)
	}
	zero := make([]vipIfCounters, f.ncpu)
	if err := f.objs.VsIfStats.Update(uint32(ifi.Index), zero, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("create counters of %s: %w", name, err)
	}
	if a := f.ifaces[name]; a != nil {
		a.flags, a.mac = flags, ifi.HardwareAddr
		return nil
	}
	a := &attached{name: name, index: ifi.Index, mac: ifi.HardwareAddr, flags: flags}
	if err := f.linkLocked(a); err != nil {
		_ = f.objs.VsIfaces.Delete(uint32(ifi.Index))
		return err
	}
	f.ifaces[name] = a
	f.log.Info("XDP fast path attached", "iface", name, "mode", a.mode, "answer", flags&flagAnswer != 0)
	return nil
}

// linkLocked gives a its XDP link: the pinned one with our program swapped
// in when it still points at the same interface, otherwise a new one.
func (f *FastPath) linkLocked(a *attached) error {
	pin := ""
	if f.pinDir != "" {
		pin = filepath.Join(f.pinDir, linkPinPrefix+a.name)
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			info, ierr := l.Info()
			if ierr == nil && info.XDP() != nil && int(info.XDP().Ifindex) == a.index {
				if err := l.Update(f.objs.VsXdp); err != nil {
					_ = l.Close()
					return fmt.Errorf("%w: replace the program on %s: %w", ErrNotSupported, a.name, err)
				}
				a.link = l
				a.mode = f.modeOf(a.name)
				return nil
			}
			// Pinned for an interface that was deleted and recreated.
			_ = l.Unpin()
			_ = l.Close()
		}
	}
	modes := []link.XDPAttachFlags{link.XDPDriverMode, link.XDPGenericMode}
	switch {
	case a.flags&flagAnswer == 0:
		// Count only (a BGP uplink): generic mode, whatever the option.
		// A native attach makes many drivers rebuild their rings, a
		// link flap under the BGP session, and counting needs no speed.
		modes = modes[1:]
	case f.attach == AttachNative:
		modes = modes[:1]
	case f.attach == AttachGeneric:
		modes = modes[1:]
	}
	var errs []error
	for _, m := range modes {
		var l link.Link
		err := f.enter(func() error {
			var err error
			l, err = link.AttachXDP(link.XDPOptions{Program: f.objs.VsXdp, Interface: a.index, Flags: m})
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s mode: %w", modeName(m), err))
			continue
		}
		if pin != "" {
			if err := l.Pin(pin); err != nil {
				_ = l.Close()
				return fmt.Errorf("pin XDP link of %s: %w", a.name, err)
			}
		}
		a.link, a.mode = l, modeName(m)
		return nil
	}
	return fmt.Errorf("%w: attach XDP to %s: %w", ErrNotSupported, a.name, errors.Join(errs...))
}

func modeName(m link.XDPAttachFlags) string {
	if m == link.XDPDriverMode {
		return "native"
	}
	return "generic"
}

// modeOf asks the kernel how XDP is attached to name.
func (f *FastPath) modeOf(name string) string {
	mode := "unknown"
	_ = f.enter(func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		l, err := h.LinkByName(name)
		if err != nil || l.Attrs().Xdp == nil {
			return err
		}
		switch l.Attrs().Xdp.AttachMode {
		case 1: // XDP_ATTACHED_DRV
			mode = "native"
		case 2: // XDP_ATTACHED_SKB
			mode = "generic"
		}
		return nil
	})
	return mode
}

// detachLocked detaches a's link, unpins it and forgets the interface in
// the maps.
func (f *FastPath) detachLocked(a *attached) {
	if a.link != nil {
		if f.pinDir != "" {
			if err := a.link.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
				f.log.Warn("unpin XDP link", "iface", a.name, "err", err)
			}
		}
		if err := a.link.Close(); err != nil {
			f.log.Warn("detach XDP", "iface", a.name, "err", err)
		}
	}
	_ = f.objs.VsIfaces.Delete(uint32(a.index))
	_ = f.objs.VsIfStats.Delete(uint32(a.index))
	f.log.Info("XDP fast path detached", "iface", a.name)
}

// removeStaleLink detaches a link pinned by an earlier agent for an
// interface that is no longer configured.
func (f *FastPath) removeStaleLink(name string) {
	pin := filepath.Join(f.pinDir, linkPinPrefix+name)
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		_ = os.Remove(pin)
		return
	}
	if info, err := l.Info(); err == nil && info.XDP() != nil {
		_ = f.objs.VsIfaces.Delete(info.XDP().Ifindex)
		_ = f.objs.VsIfStats.Delete(info.XDP().Ifindex)
	}
	_ = l.Unpin()
	_ = l.Close()
	f.log.Info("detached XDP link pinned for an interface no longer configured", "iface", name)
}

// Interfaces returns the attached interfaces and their mode (native,
// generic, or unknown for a link taken over from a previous agent whose
// mode the kernel did not report).
func (f *FastPath) Interfaces() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.interfacesLocked()
}

func (f *FastPath) interfacesLocked() map[string]string {
	out := make(map[string]string, len(f.ifaces))
	for n, a := range f.ifaces {
		out[n] = a.mode
	}
	return out
}

// SetOwned replaces the set of VIPs answered, each with the interfaces it
// is answered on (the same shape as dataplane's Responder.SetOwned). The new
// set is built aside and swapped in with one map update, so the program
// sees either the whole old set or the whole new one. Interfaces that are
// not attached layer2 interfaces are ignored.
func (f *FastPath) SetOwned(owned map[netip.Addr][]string) error {
	cp := make(map[netip.Addr][]string, len(owned))
	for a, ifs := range owned {
		cp[a] = slices.Clone(ifs)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errClosed
	}
	f.owned = cp
	return f.applyOwnedLocked()
}

// applyOwnedLocked builds the owned set from f.owned and swaps it in.
func (f *FastPath) applyOwnedLocked() error {
	owned := f.owned
	var keys []vipKey
	seen := map[vipKey]bool{}
	for a, ifs := range owned {
		if !a.IsValid() {
			continue
		}
		for _, n := range ifs {
			at := f.ifaces[n]
			if at == nil || at.flags&flagAnswer == 0 {
				continue
			}
			k := vipKey{Ifindex: uint32(at.index), Addr: key16(a)}
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	if len(keys) > MaxOwned {
		return fmt.Errorf("set owned VIPs: %d (VIP, interface) pairs, at most %d", len(keys), MaxOwned)
	}
	set, err := ebpf.NewMap(f.inner)
	if err != nil {
		return fmt.Errorf("create owned set: %w", err)
	}
	one := uint8(1)
	for _, k := range keys {
		if err := set.Put(&k, &one); err != nil {
			set.Close()
			return fmt.Errorf("fill owned set: %w", err)
		}
	}
	if err := f.objs.VsOwned.Put(uint32(0), set); err != nil {
		set.Close()
		return fmt.Errorf("swap owned set: %w", err)
	}
	f.keepOwnedSet(set, seen)
	return nil
}

// Owned returns the owned set in the map now: each VIP with the indexes
// (sorted) of the interfaces it is answered on while the lease is valid.
func (f *FastPath) Owned() (map[netip.Addr][]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errClosed
	}
	set, err := f.openOwnedSet()
	if err != nil {
		return nil, err
	}
	defer set.Close()
	out := map[netip.Addr][]int{}
	var (
		k vipKey
		v uint8
	)
	it := set.Iterate()
	for it.Next(&k, &v) {
		a := addrFrom16(k.Addr)
		out[a] = append(out[a], int(k.Ifindex))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read owned set: %w", err)
	}
	for a := range out {
		slices.Sort(out[a])
	}
	return out, nil
}

// SetCounted declares the VIPs whose traffic is counted (normally every
// VIP of the node, layer2 and BGP). Counters of VIPs already counted are
// kept; VIPs no longer named lose theirs.
func (f *FastPath) SetCounted(vips []netip.Addr) error {
	want := map[[16]byte]bool{}
	for _, a := range vips {
		if a.IsValid() {
			want[key16(a)] = true
		}
	}
	if len(want) > MaxOwned {
		return fmt.Errorf("set counted VIPs: %d, at most %d", len(want), MaxOwned)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errClosed
	}
	var (
		have []vipVipAddr
		k    vipVipAddr
	)
	var next vipVipAddr
	var cur any // nil: first key
	for i := 0; i <= MaxOwned; i++ {
		if err := f.objs.VsVipStats.NextKey(cur, &next); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				break
			}
			return fmt.Errorf("list counted VIPs: %w", err)
		}
		have = append(have, next)
		k = next
		cur = &k
	}
	for _, h := range have {
		if !want[h.Addr] {
			if err := f.objs.VsVipStats.Delete(&h); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("stop counting %s: %w", addrFrom16(h.Addr), err)
			}
		}
	}
	zero := make([]vipVipCounters, f.ncpu)
	for a := range want {
		key := vipVipAddr{Addr: a}
		if err := f.objs.VsVipStats.Update(&key, zero, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("count %s: %w", addrFrom16(a), err)
		}
	}
	return nil
}

// Traffic returns the counters of every counted VIP (summed over CPUs).
func (f *FastPath) Traffic() (map[netip.Addr]Traffic, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errClosed
	}
	return f.trafficLocked()
}

func (f *FastPath) trafficLocked() (map[netip.Addr]Traffic, error) {
	out := map[netip.Addr]Traffic{}
	var (
		k   vipVipAddr
		per []vipVipCounters
	)
	it := f.objs.VsVipStats.Iterate()
	for it.Next(&k, &per) {
		var t Traffic
		for _, c := range per {
			t.Packets += c.Packets
			t.Bytes += c.Bytes
		}
		out[addrFrom16(k.Addr)] = t
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read VIP counters: %w", err)
	}
	return out, nil
}

// SentCounts returns what the program sent on iface since it was first
// attached there (summed over CPUs; kept across agent restarts while the
// maps stay pinned): ARP replies, solicited neighbour advertisements, and
// gratuitous frames (gratuitous ARP in both forms and unsolicited NA). The
// dataplane adds these to its reply counters with path="xdp".
func (f *FastPath) SentCounts(iface string) (arpReplies, ndpAdverts, gratuitous uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, 0, 0, errClosed
	}
	a := f.ifaces[iface]
	if a == nil {
		return 0, 0, 0, fmt.Errorf("sent counts of %s: not attached", iface)
	}
	c, err := f.ifCounters(a.index)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("sent counts of %s: %w", iface, err)
	}
	return c.ArpReplies, c.NdpAdverts, c.Garp + c.Una, nil
}

func (f *FastPath) ifCounters(index int) (vipIfCounters, error) {
	var per []vipIfCounters
	if err := f.objs.VsIfStats.Lookup(uint32(index), &per); err != nil {
		return vipIfCounters{}, err
	}
	var s vipIfCounters
	for _, c := range per {
		s.ArpReplies += c.ArpReplies
		s.NdpAdverts += c.NdpAdverts
		s.Garp += c.Garp
		s.Una += c.Una
	}
	return s, nil
}

// monotonic is CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonic() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}

// RenewLease lets the program answer for d from now. The agent renews it
// well before it lapses (every d/3, say); a program left pinned by an agent
// that died stops answering d after the last renewal. d <= 0 stops the
// answers at once.
func (f *FastPath) RenewLease(d time.Duration) error {
	var until uint64
	if d > 0 {
		now, err := monotonic()
		if err != nil {
			return fmt.Errorf("renew lease: %w", err)
		}
		until = uint64(now + d)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errClosed
	}
	if err := f.objs.VsLease.Put(uint32(0), until); err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	return nil
}

// Run renews the lease (Options.Lease) at once and then every quarter of
// it until ctx ends, and returns nil then. Every ResyncInterval it also
// attaches the program to named interfaces that appeared (or were
// recreated) since. It does not expire the lease on
// the way out: the program answers for up to one more lease, or for as long
// as a final RenewLease asked (a planned restart: renew for the restart
// window, then Close). Load starts nothing; without Run (or RenewLease)
// the program does not answer.
func (f *FastPath) Run(ctx context.Context) error {
	if err := f.RenewLease(f.lease); err != nil {
		return err
	}
	t := time.NewTicker(f.lease / 4)
	defer t.Stop()
	resync := time.NewTicker(ResyncInterval)
	defer resync.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-resync.C:
			f.mu.Lock()
			if !f.closed {
				if err := f.syncLocked(); err != nil {
					f.log.Warn("fast path interfaces", "err", err)
				}
			}
			f.mu.Unlock()
			continue
		case <-t.C:
		}
		err := f.RenewLease(f.lease)
		switch {
		case err != nil && errors.Is(err, errClosed):
			return nil
		case err != nil && !failing:
			f.log.Warn("cannot renew the fast path's lease; it stops answering when the lease lapses", "err", err)
			failing = true
		case err == nil && failing:
			f.log.Info("fast path lease renewed again")
			failing = false
		}
	}
}

// LeaseRemaining returns how long the program keeps answering without a
// renewal (0 when the lease has lapsed).
func (f *FastPath) LeaseRemaining() (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, errClosed
	}
	return f.leaseLocked()
}

func (f *FastPath) leaseLocked() (time.Duration, error) {
	var until uint64
	if err := f.objs.VsLease.Lookup(uint32(0), &until); err != nil {
		return 0, fmt.Errorf("read lease: %w", err)
	}
	now, err := monotonic()
	if err != nil {
		return 0, fmt.Errorf("read lease: %w", err)
	}
	if time.Duration(until) <= now {
		return 0, nil
	}
	return time.Duration(until) - now, nil
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

// ownedSetLocked opens the owned set in slot 0 and says whether the lease
// is valid now.
func (f *FastPath) ownedSetLocked() (*ebpf.Map, bool, error) {
	set, err := f.openOwnedSet()
	if err != nil {
		return nil, false, err
	}
	d, err := f.leaseLocked()
	if err != nil {
		set.Close()
		return nil, false, err
	}
	return set, d > 0, nil
}

// checkCaps refuses early, with the reason, when the process lacks the
// capabilities to load and attach XDP programs: CAP_BPF (or CAP_SYS_ADMIN)
// and CAP_NET_ADMIN (or CAP_SYS_ADMIN).
func checkCaps() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil // cannot tell; let the kernel decide
	}
	var eff uint64
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &eff); err == nil {
				found = true
			}
			break
		}
	}
	if !found {
		return nil
	}
	has := func(c int) bool { return eff&(1<<uint(c)) != 0 }
	switch {
	case !has(unix.CAP_BPF) && !has(unix.CAP_SYS_ADMIN):
		return fmt.Errorf("%w: no CAP_BPF (nor CAP_SYS_ADMIN): this process may not load eBPF programs", ErrNotSupported)
	case !has(unix.CAP_NET_ADMIN) && !has(unix.CAP_SYS_ADMIN):
		return fmt.Errorf("%w: no CAP_NET_ADMIN (nor CAP_SYS_ADMIN): this process may not attach XDP programs", ErrNotSupported)
	}
	return nil
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
		_, err := f.objs.VsXdp.Run(&ebpf.RunOptions{
			Data:      data,
			Context:   &ctx,
			Repeat:    uint32(len(jobs)),
			Flags:     unix.BPF_F_TEST_XDP_LIVE_FRAMES,
			BatchSize: 64,
		})
		if err != nil {
			return fmt.Errorf("run XDP program in live-frames mode: %w", err)
		}
		return nil
	})
}

// closeHandles releases this process's descriptors (links stay attached
// when pinned).
func (f *FastPath) closeHandles() {
	for _, a := range f.ifaces {
		if a.link != nil {
			_ = a.link.Close()
		}
	}
	if f.ownedSet != nil {
		_ = f.ownedSet.Close()
		f.ownedSet, f.ownedKeys = nil, nil
	}
	f.objs.Close()
	f.unlock()
}

// discard undoes a Load that failed half way: everything is detached and
// unpinned.
func (f *FastPath) discard() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if err := f.removeLocked(); err != nil {
		f.log.Warn("clean up after a failed load", "err", err)
	}
}

// lockDir takes an exclusive flock on dir, so two agents never share one
// pin directory (the second would adopt and then rearrange the first's
// program). The lock goes with the process.
func lockDir(dir string) (*os.File, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open pin directory %s: %w", dir, err)
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("pin directory %s is in use by another vipspeaker; give each agent its own", dir)
		}
		return nil, fmt.Errorf("lock pin directory %s: %w", dir, err)
	}
	return d, nil
}

func (f *FastPath) unlock() {
	if f.lock != nil {
		_ = f.lock.Close()
		f.lock = nil
	}
}

// Close releases this process's descriptors. Pinned links stay attached
// and keep answering until the lease lapses, so a restarting agent takes
// over without a gap. Without pinning, Close detaches.
func (f *FastPath) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.closeHandles()
	f.mu.Unlock()
	f.unregister()
	return nil
}

// unregister removes the metrics collector. It runs without f.mu (a
// scrape in progress holds it in Collect) and after closed is set, so a
// scrape meanwhile reports nothing rather than touching closed maps.
func (f *FastPath) unregister() {
	if f.reg != nil {
		f.reg.Unregister(f.coll)
	}
}

// Remove detaches the program from every interface, unpins the links and
// maps and removes the pin directory, then closes: nothing of the fast
// path remains in the kernel. For an agent that stops for good.
func (f *FastPath) Remove() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return errClosed
	}
	f.closed = true
	err := f.removeLocked()
	f.mu.Unlock()
	f.unregister()
	return err
}

func (f *FastPath) removeLocked() error {
	var errs []error
	// Stop answering first, in case a detach fails.
	if err := f.objs.VsLease.Put(uint32(0), uint64(0)); err != nil {
		errs = append(errs, fmt.Errorf("expire lease: %w", err))
	}
	for name, a := range f.ifaces {
		f.detachLocked(a)
		delete(f.ifaces, name)
	}
	if f.pinDir != "" {
		ents, _ := os.ReadDir(f.pinDir)
		for _, e := range ents {
			if name, ok := strings.CutPrefix(e.Name(), linkPinPrefix); ok {
				f.removeStaleLink(name)
			}
		}
		for _, m := range []*ebpf.Map{f.objs.VsOwned, f.objs.VsIfaces, f.objs.VsLease, f.objs.VsVipStats, f.objs.VsIfStats} {
			if err := m.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("unpin map: %w", err))
			}
		}
	}
	f.objs.Close()
	f.unlock()
	if f.pinDir != "" {
		if err := os.Remove(f.pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pin directory %s: %w", f.pinDir, err))
		}
		// The parent too when this was its last agent (it fails, harmlessly,
		// while another agent's directory is in it).
		if parent := filepath.Dir(f.pinDir); onBPFFS(parent) {
			_ = os.Remove(parent)
		}
	}
	return errors.Join(errs...)
}

// existingAncestor returns dir or its nearest ancestor that exists.
func existingAncestor(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// onBPFFS reports whether dir is on a bpf filesystem.
func onBPFFS(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == unix.BPF_FS_MAGIC
}
