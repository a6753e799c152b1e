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
//     hands it to zebra, withdrawn by the path itself (never by UUID);
//   - graceful restart on shutdown (peers keep the routes) or, without it,
//     withdrawing everything and waiting until the withdrawals are sent;
//   - peer status and metrics.
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
