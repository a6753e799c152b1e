// Package fault is the fault suite (issue 9): the real vipspeaker binary,
// real FRR and the real kernel in a lab of network namespaces (test/lab),
// one lab per scenario, each bounded in time. Every test asserts on what a
// user of a VIP would see: a client pinging the VIP every 10 ms (lost
// requests counted by sequence number), the route in the router's kernel,
// the address on the node's VIP interface, the agent's exit status and
// message.
//
// Scenarios: ten kill -9 restarts of the agent under a 10 ms ping to a
// BGP VIP (graceful restart, no request may be lost) and to a layer2 VIP
// (the client's neighbour entry flushed at each kill and ARP probed every
// 10 ms: no ARP outage of a second, no ping lost that the outage does not
// explain); FRR's bgpd and zebra killed and restarted on the router (the
// route back within 5 s of the new session, pings lost only while the
// router had no route); FRR's zebra restarted on a node in zebra mode (the
// router never loses the route); the VIP address and the VIP interface
// deleted by hand (back within a second, the router never loses the
// route); the agent run with exactly the capabilities the DaemonSet asks
// for, and without NET_ADMIN.
//
// The Kubernetes scenarios (API server away, ConfigMap garbage, a burst of
// Services) live in test/e2e/faultkube.
//
// What it needs: root, iproute2, setpriv (util-linux), FRR 8.4 (zebra,
// bgpd, vtysh); tests skip without them (and fail under CI=true).
package fault
