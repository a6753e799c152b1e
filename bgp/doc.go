// Package bgp announces the node's VIPs over BGP with an embedded GoBGP
// (github.com/osrg/gobgp/v4) speaker.
//
// It owns:
//   - reading gobgp.conf, in exactly the TOML format gobgpd reads, and
//     validating all of it (syntax, unknown keys, references to undefined
//     sets, policies and peer groups, invalid addresses, AS 0) before
//     anything is changed; every problem is reported as "file:line: what";
//   - applying a new config by diff: peers are added, updated or deleted one
//     by one, defined sets and policies are replaced, and a policy change is
//     followed by a soft reset out so peers see the new attributes without a
//     session reset. A session is reset only when its own session
//     parameters changed;
//   - one BGP path per VIP of the routing table (IPv4 and IPv6), next hop this
//     node, communities from the Service, marked as external so GoBGP never
//     hands it to zebra, withdrawn by the path itself (never by UUID) —
//     except in zebra mode, where the VIP paths come only from zebra's
//     redistribution of the VIP interface (docs/zebra.md);
//   - graceful restart on shutdown (peers keep the routes) or, without it,
//     withdrawing everything and waiting until the withdrawals are sent;
//   - peer status and metrics.
//
// Decisions where GoBGP or the issue is silent:
//   - auth-password holding an absolute path names a file whose content
//     (trailing newline removed) is the password;
//   - an empty router-id is the node's source address towards the first
//     IPv4 neighbor (else its first global IPv4 address), never a VIP;
//   - IPv6 VIPs get the unspecified next hop (each session's local address)
//     unless an IPv4 session carries ipv6-unicast; then the global IPv6
//     address of the interface facing that neighbor (Options.NextHop6
//     overrides);
//   - at start, neighbors with graceful restart are added as restarting
//     (R and F bits), so peers keep our routes until we resend them; the
//     deferral-time defaults to 10 s instead of GoBGP's 360 s;
//   - BFD for a neighbor starts 1 s after its session is Established (GoBGP
//     v4.8.0 started together with the session keeps a stale discriminator
//     of FRR's and resets the fresh session with "BFD is down");
//   - a neighbor's own apply-policy is refused unless it is a
//     route-server client (GoBGP would silently ignore it); use the global
//     policy with a neighbor-set;
//   - a neighbor-interface (unnumbered) neighbor is validated without
//     looking at the host (GoBGP's reader would look the router up in the
//     neighbor cache), added to GoBGP at the zoned link-local address of
//     the router advertising on that interface (solicited; followed when
//     it changes), and announced to the router with ICMPv6 router
//     advertisements (lifetime 0) every 10 s, which FRR's interface
//     peering needs to learn our address (unnumbered.go, ndp.go);
//   - vrfs, bmp, rpki, mrt and collector sections and families other than
//     ipv4/ipv6 unicast are refused;
//   - a change of the global section or of zebra restarts the embedded
//     speaker (every session resets); everything else is applied by diff.
//
// GoBGP's gRPC API is served only on the unix socket gobgp.sock in the run
// directory, so the stock gobgp CLI works on the node and nobody off the
// node can change routing.
//
// What it needs from the kernel: TCP port 179 (or the configured port) in
// the node's network namespace, UDP 3784 for BFD, and TCP_MD5SIG when a
// neighbor has an auth-password (such a neighbor is refused where the kernel
// lacks it). It never touches netlink: addresses come from the routing
// package as plain values.
package bgp
