package bpf

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

// Interface flags, as in xdp.c, and the pin name prefix of the XDP links.
const (
	flagAnswer = 1
	flagCount  = 2

	linkPinPrefix = "link_"
)

// attached is one interface the program runs on.
type attached struct {
	name  string
	index int
	mac   net.HardwareAddr
	flags uint8
	mode  string // native, generic or unknown
	link  link.Link
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
