// Package routing owns the node's VIP table: one interface (default
// kube-lb0) whose addresses are the VIPs this node carries.
//
// The kernel is the source of truth. At start the table adopts whatever
// addresses are already on the interface, so an agent restart removes and
// re-adds nothing; Set then applies the desired set as a diff. Outside
// changes (ip addr del, ip link del) are seen through netlink events and
// repaired at once. Subscribers (the BGP and Layer 2 parts) receive every
// change as an Event.
//
// From the kernel it needs: rtnetlink in the network namespace it is given,
// and the dummy link type, or ifb where the kernel has no dummy (the table
// falls back to ifb and logs it once).
//
// Everything here talks to the kernel through a netlink handle bound to a
// namespace, never through netlink's package-level functions, so tests run
// each table in a namespace of their own without switching threads.
package routing
