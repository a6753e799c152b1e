package bpf

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

var errClosed = errors.New("bpf fast path: closed")

// loadSpec returns the program and maps to load: the embedded object
// (bpf2go). Tests replace it to have the real verifier refuse a program.
var loadSpec = loadVip

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
	// noLive: the kernel refused a live-frames run; announcements go
	// through the caller's packet sockets from then on
	noLive bool
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
	// overflow is, per map (mapOwned, mapCounted), how many entries the
	// last update had no room for.
	overflow map[string]int
}

// Load loads the program (reusing pinned maps, so the owned set, the lease
// and the counters carry over a restart), attaches it to the interfaces
// (replacing the program of a pinned link atomically, or creating and
// pinning a new link), and detaches links pinned for interfaces no longer
// named. It returns an error wrapping ErrNotSupported when the kernel or the
// process's privileges cannot run it, and a *VerifierError (logged at error
// level with the verifier's log) when the kernel's verifier refuses it.
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
		log:      log,
		enter:    opts.Enter,
		attach:   opts.Attach,
		lease:    opts.Lease,
		ifaces:   map[string]*attached{},
		missing:  map[string]bool{},
		overflow: map[string]int{},
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

	spec, err := loadSpec()
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
		return f.loadError(err)
	}
	return nil
}

// loadError classifies a failed load. A verifier rejection is a defect of
// this build on this kernel, not a missing feature: it is logged at error
// level with the verifier's whole log and returned as a *VerifierError,
// which does not wrap ErrNotSupported. A kernel or process that cannot run
// eBPF at all (Unsupported) wraps ErrNotSupported; anything else is a plain
// error.
func (f *FastPath) loadError(err error) error {
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		ve := &VerifierError{Log: slices.Clone(verr.Log), err: err}
		f.log.Error("the kernel's verifier refused the XDP program; this is a bug of this build on this kernel, report it with this log",
			"kernel", kernelRelease(), "err", err, "verifier_log", strings.Join(ve.Log, "\n"))
		return ve
	}
	if Unsupported(err) {
		return fmt.Errorf("%w: load XDP program: %w", ErrNotSupported, err)
	}
	return fmt.Errorf("load XDP program: %w", err)
}

// Unsupported reports whether err says that this kernel or this process
// cannot run eBPF programs at all: it wraps ErrNotSupported or cilium/ebpf's
// ErrNotSupported (a missing kernel feature), or is ENOSYS (no bpf system
// call) or EPERM (no privilege). A verifier rejection is not: the kernel can
// run eBPF, and refused this program. Tests skip only when this holds.
func Unsupported(err error) bool {
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return false
	}
	return errors.Is(err, ErrNotSupported) || errors.Is(err, ebpf.ErrNotSupported) ||
		errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM)
}

// kernelRelease is uname -r, for the verifier's report.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
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
