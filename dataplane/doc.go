// Package dataplane answers ARP and NDP for the layer2 VIPs this node owns.
//
// It owns, per layer2 interface, two AF_PACKET sockets (one bound to
// ETH_P_ARP, one to ETH_P_IPV6 with a classic BPF filter that keeps only
// ICMPv6 neighbour solicitations and advertisements), the solicited-node
// multicast memberships of the owned IPv6 VIPs on those interfaces, the
// gratuitous ARP / unsolicited neighbour advertisement bursts sent when this
// node becomes owner, and the arp_ignore / arp_announce sysctls of the layer2
// interfaces.
//
// Gratuitous rounds go through Options.Announcer when one is set (package
// l2node fills it with the XDP fast path's live frames); the VIPs it reports as
// not announced, and whole rounds when it fails, go through the packet
// sockets. vipspeaker_gratuitous_sent_total has path="userspace" for the
// packet sockets; with path="xdp" it and the reply counters report what
// the fast path's program sent, read from its maps at scrape time
// (Responder.SetFastPath).
//
// Which VIPs this node owns is decided elsewhere (the owner sub-package
// computes it; l2node passes the result to Responder.SetOwned). The responder
// never answers for an address it was not told it owns, nor on an interface
// not named for that address.
//
// After giving a VIP up, the responder corrects for a while (StaleWindow)
// the senders that still use this node's MAC for it: iptables queues their
// packets (raw PREROUTING, NFQUEUE --queue-bypass, so traffic flows when the
// agent is gone), each sender gets a unicast ARP reply / neighbour
// advertisement with the new owner's MAC, learned from its announcements or
// by probing, and the packet passes.
//
// Restarts: Run's end closes the sockets but leaves the sysctls; Detach
// keeps them set for the next agent (whose Close restores the originals,
// found in Options.StateFile); Close restores them, which is right only once
// the layer2 VIPs are gone from the node.
//
// What it needs from the kernel: AF_PACKET sockets with SO_ATTACH_FILTER and
// PACKET_ADD_MEMBERSHIP (CAP_NET_RAW), and a writable
// /proc/sys/net/ipv4/conf/IFACE/ (CAP_NET_ADMIN) in the network namespace of
// the interfaces. The Linux kernel answers ARP on any interface for an
// address that lives on another one (the VIP interface, kube-lb0); the
// responder therefore sets arp_ignore=1 and arp_announce=2 on every layer2
// interface, as kube-proxy's strict ARP mode does, logs it, and puts the old
// values back on Close where it changed them. Stale-neighbour correction
// needs the xtables NFQUEUE target and the iptables/ip6tables commands; the
// responder works without them (logged). The kernel does not answer
// neighbour solicitations for an address on another interface, so IPv6 needs
// no sysctl.
package dataplane
