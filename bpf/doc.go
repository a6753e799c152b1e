// Package bpf is vipspeaker's optional eBPF fast path for layer2 VIPs.
//
// It owns one XDP program (xdp.c, compiled with bpf2go for little- and
// big-endian targets; the generated vip_bpfel.* and vip_bpfeb.* are
// committed so `go build` needs no clang, `go generate ./bpf` rebuilds them,
// and check-generated.sh fails when a fresh generation differs), its maps,
// its XDP links, and the pins of all of these under a bpf filesystem
// directory (DefaultPinDir).
//
// What the program does, on every interface it is attached to:
//
//   - ARP request for a VIP in the owned map on that interface: the reply is
//     built in place and sent back with XDP_TX.
//   - Neighbour solicitation (to the solicited-node group, or unicast to the
//     VIP) for an owned IPv6 VIP: rewritten into the solicited, override
//     advertisement with the node's MAC, ICMPv6 checksum computed, XDP_TX.
//     Only solicitations with no option or exactly one source link-layer
//     option, a valid checksum and hop limit 255 are answered.
//   - IP packets addressed to a counted VIP add to its per-CPU packet and
//     byte counters (vipspeaker_vip_receive_{packets,bytes}_total{vip}).
//     Neighbour discovery is not counted.
//   - Everything else passes to the kernel, and so to dataplane's userspace
//     responder, which stays authoritative: duplicate address detection,
//     conflicts (someone else using a VIP as its source), VLAN-tagged
//     frames, unusual options.
//
// The owned set is a hash map held in slot 0 of an array of maps: SetOwned
// builds the new set aside and swaps it in with one update, so the program
// sees the whole old set or the whole new one, never a half. It holds
// MaxOwned (VIP, interface) pairs; a larger set keeps MaxOwned of them
// (those held already, then by address) and the rest are left to the
// userspace responder, which owns the same set: the program passes their
// requests on and AnnounceOwned reports them missed.
// vipspeaker_xdp_map_overflow{map} counts what did not fit.
//
// Replies are sent only while the lease map holds a CLOCK_MONOTONIC time
// (bpf_ktime_get_ns) in the future. The agent renews it (RenewLease); a
// program left pinned by an agent that died stops answering when the lease
// lapses, so it never competes with the node that took the VIPs over.
//
// Restarts: Close releases the process's descriptors and leaves the pinned
// links attached (the node keeps answering while the agent is away); the
// next Load reuses the pinned maps (owned set, lease, counters carry over)
// and swaps its program into the pinned links with one link update. Remove
// detaches everything and deletes the pins (the agent stops for good).
//
// Gratuitous announcements: Announce runs the same program with
// BPF_PROG_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES). The input
// frame carries 8 bytes of XDP metadata: a magic value and a random token
// that the job table holds only for the length of that call. Frames from a
// physical wire carry no metadata, but a veth peer's XDP program can pass
// some along with a frame; the token keeps such frames out of this branch,
// and the program zeroes the metadata before sending so its own frames
// carry no token to a peer (it does not strip it with bpf_xdp_adjust_meta,
// which some kernels refuse to XDP programs). On
// each run the program takes the next job (VIP and form) from a job table,
// checks that the VIP is owned on the interface and the lease valid, writes
// the whole frame (gratuitous ARP request, gratuitous ARP reply, or
// unsolicited NA to all-nodes) and returns XDP_TX. One call therefore sends
// the frames of up to 4096 jobs. Measured pitfalls (LAB.md): no DataOut in
// live mode; batch size 64; the context must name the interface.
// AnnounceOwned also returns the VIPs it skipped because the owned map does
// not hold them on that interface (or the lease has lapsed): the agent
// hands each gratuitous round of dataplane's responder to it
// (dataplane.Announcer) and sends what it skipped, or the whole round when
// the call fails, through the packet socket. Since the agent updates the
// owned map before the responder announces, a VIP is announced only once
// the program answers for it.
//
// BGP uplinks (decision): VIP traffic is also counted, with the program
// attached count-only (no ARP/NDP answered there), on the interfaces the
// BGP sessions use. The agent takes them from the running speaker's
// neighbors: for a neighbor given by interface (unnumbered) that
// interface, for one given by address the interface of the kernel's route
// to it (netlink route get, as `ip route get`), skipping loopback and
// non-Ethernet links. It looks them up again every 2 s and on every config
// change (gobgp.conf or vipspeaker.toml), and calls SetInterfaces with the
// layer2 interfaces and these uplinks. A node with only BGP pools loads
// the program for the counters alone. Count-only interfaces are always
// attached in generic (skb) mode: a native attach makes many drivers
// rebuild their rings (a link flap under the BGP session), and counting
// does not need native speed.
//
// Metrics: this package registers vipspeaker_vip_receive_packets_total and
// vipspeaker_vip_receive_bytes_total{vip} (read from the per-CPU map at
// scrape time), vipspeaker_vip_receive_path{path="xdp"} (where the
// program does not run, dataplane.VIPCounters counts with nftables under
// the same names and says path="nftables"), vipspeaker_xdp_attached{interface,mode},
// vipspeaker_xdp_lease_remaining_seconds and
// vipspeaker_xdp_map_overflow{map}. The reply counters
// vipspeaker_arp_replies_sent_total and
// vipspeaker_ndp_advertisements_sent_total{interface,path} and
// vipspeaker_gratuitous_sent_total{interface} belong to dataplane; it reads
// what XDP sent through SentCounts when Prometheus scrapes and reports it
// with path="xdp".
//
// Lease and restarts in practice: Run renews the lease every quarter of
// Options.Lease (default 1 s), so a node whose agent dies unannounced stops
// answering within a second, about when the other speakers' membership
// declares it dead. For a planned restart (SIGTERM) the agent renews the
// lease for its announced restart window as soon as its context ends,
// before the rest of it winds down, then calls Close. The next agent keeps
// the owned set it finds pinned until its VIP table has settled; one found
// with a lapsed lease is emptied before the lease is renewed, so a stale
// set never answers again. A final stop (--remove-vips-on-exit) calls
// Remove: nothing stays attached or pinned.
//
// Veth and native XDP_TX (the early probe where the reply never reached the
// peer): on veth, a frame sent with XDP_TX by a native-mode program (and
// every frame of a live-frames run) is not sent through the peer's normal
// receive path but pushed into the peer's XDP receive ring
// (ndo_xdp_xmit). That ring is only served when the peer device runs NAPI,
// which veth enables when the peer has an XDP program of its own or GRO
// turned on (`ethtool -K PEER gro on`); otherwise the frame is dropped with
// no error to the sender. The program's counters still count it as sent.
// Generic (skb) mode sends XDP_TX through the ordinary transmit path and has
// no such requirement. TestVethNativeTXNeedsPeerNAPI shows both sides of
// it. Physical NICs with native XDP do not have this limitation; in
// veth-based labs either attach generic or give the peer NAPI.
//
// Files, one job each: fastpath_linux.go loads the objects and closes or
// removes them; attach_linux.go attaches the program to interfaces;
// pin_linux.go holds the pin directory (its lock and cleanup);
// lease_linux.go the answering lease and Run; owned_linux.go the VIP map
// (the owned set); counters_linux.go the per-VIP and per-interface
// counters; announce_linux.go the live-frames announcements; metrics.go the
// Prometheus collector.
//
// What it needs from the kernel: XDP programs with hash, array, per-CPU
// hash and array-of-maps maps (no kernel BTF: the program uses no CO-RE;
// kernel ≥ 5.10 recommended, 5.18 for live frames), CAP_BPF and
// CAP_NET_ADMIN (or CAP_SYS_ADMIN; Load checks the effective set first and
// names the missing capability), a bpf filesystem under the pin directory
// (its nearest existing ancestor) for restarts (without one the fast path
// still runs, unpinned, and Load logs "pinning unavailable"), and bpf links
// for XDP (5.9). Load returns an error wrapping ErrNotSupported when any of
// this is refused, and the caller falls back to the userspace responder. A
// program the kernel's verifier refuses is another matter: the kernel can
// run eBPF and this build's program is wrong for it. Load logs that at
// error level with the verifier's whole log and returns a *VerifierError,
// which does not wrap ErrNotSupported (tests fail on it instead of
// skipping; the agent with fast-path = "auto" still answers from
// userspace, and says so loudly).
package bpf
