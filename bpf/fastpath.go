package bpf

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrNotSupported is wrapped by every error of Load that means "this kernel
// or these privileges cannot run the fast path" (no BPF syscall, no
// CAP_BPF/CAP_NET_ADMIN, a missing kernel feature, a driver refusing the
// attach). The caller falls back to the userspace responder when
// errors.Is(err, ErrNotSupported). A verifier rejection is not among them
// (VerifierError).
var ErrNotSupported = errors.New("eBPF fast path not supported")

// ErrLiveFramesRefused is wrapped by the error of the first Announce on a
// kernel that refuses BPF_PROG_RUN in live-frames mode
// (BPF_F_TEST_XDP_LIVE_FRAMES; seen refused with EPERM on
// 6.18.44-fc-v1300, while XDP itself loads and answers). After it the
// fast path announces nothing and AnnounceOwned hands every VIP back to
// the caller's packet socket, without an error.
var ErrLiveFramesRefused = errors.New("the kernel refuses XDP live frames (BPF_F_TEST_XDP_LIVE_FRAMES)")

// VerifierError is what Load returns when the kernel's verifier refuses the
// XDP program. The kernel can run eBPF; it refused this build's program, a
// defect to report rather than a missing feature, so it does not wrap
// ErrNotSupported. Load has logged it at error level with the whole log.
type VerifierError struct {
	// Log is the verifier's log, one line per element.
	Log []string
	err error
}

func (e *VerifierError) Error() string {
	return "the kernel's verifier refused the XDP program: " + e.err.Error()
}

func (e *VerifierError) Unwrap() error { return e.err }

// DefaultLease is how long the program keeps answering after the last
// renewal when Options.Lease is zero. Run renews it every quarter of that.
// It bounds how long a node whose agent died unannounced keeps answering
// next to the node that took its VIPs over.
const DefaultLease = time.Second

// ResyncInterval is how often Run looks for named interfaces that appeared
// or were recreated.
const ResyncInterval = 2 * time.Second

// DefaultPinDir is where programs and maps are pinned when Options.PinDir
// is empty.
const DefaultPinDir = "/sys/fs/bpf/vipspeaker"

// AttachMode says how the XDP program is attached.
type AttachMode string

// Attach modes.
const (
	// AttachAuto tries native (driver) mode, then generic (skb) mode.
	AttachAuto AttachMode = ""
	// AttachNative uses driver mode only.
	AttachNative AttachMode = "native"
	// AttachGeneric uses generic (skb) mode only.
	AttachGeneric AttachMode = "generic"
)

// Limits of the maps (see xdp.c).
const (
	// MaxOwned is the most (VIP, interface) pairs SetOwned accepts, and the
	// most VIPs SetCounted accepts.
	MaxOwned = 16384
	// MaxInterfaces is the most interfaces the program is attached to.
	MaxInterfaces = 256
	// maxJobs is the most frames one BPF_PROG_RUN call writes.
	maxJobs = 4096
)

// Options configure Load. The zero value means defaults.
type Options struct {
	// Interfaces are the layer2 interfaces: ARP/NDP for owned VIPs is
	// answered there and VIP traffic is counted.
	Interfaces []string
	// Uplinks are interfaces where VIP traffic is only counted (the BGP
	// uplinks).
	Uplinks []string
	// Lease is what Run renews the answering lease to (0: DefaultLease).
	Lease time.Duration
	// Attach selects native, generic or (default) native-then-generic.
	Attach AttachMode
	// PinDir is a directory on a bpf filesystem where the program's maps
	// and links are pinned, so they survive an agent restart. Empty means
	// DefaultPinDir. Each agent needs its own (several agents on one host,
	// one per network namespace, as in the lab): Load refuses a directory
	// another running agent holds. When its parent is not on a bpf filesystem nothing is
	// pinned (logged): the fast path then lives only as long as the
	// process.
	PinDir string
	// Logger receives the package's logs (component=bpf).
	Logger *slog.Logger
	// Registerer receives the package's metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Enter runs fn inside the network namespace that holds the
	// interfaces, on a locked OS thread (interface lookups, attaching and
	// BPF_PROG_RUN depend on the calling thread's namespace). nil runs fn
	// in the caller's namespace, which is right for the agent.
	Enter func(fn func() error) error
}

// Traffic is what the fast path counted for one VIP: IP packets addressed
// to it and their bytes (IP header included, link-layer header excluded).
// Neighbour discovery messages are not counted.
type Traffic struct {
	Packets uint64
	Bytes   uint64
}

// key16 is the 16-byte form of a VIP in the maps: IPv4 as ::ffff:a.b.c.d.
func key16(a netip.Addr) [16]byte { return a.Unmap().As16() }

// addrFrom16 turns a map key back into an address (IPv4 unmapped).
func addrFrom16(b [16]byte) netip.Addr { return netip.AddrFrom16(b).Unmap() }
