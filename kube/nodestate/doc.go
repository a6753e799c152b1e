// Package nodestate is what each speaker tells the API server about itself,
// so `kubectl` (and `vipspeaker status --cluster`) show the cluster's
// announcements without exec into a node.
//
// One VIPSpeakerNode object (group vipspeaker.io, v1alpha1, namespaced, in
// the agent's namespace) per node, named after the Node: its status lists
// the node's BGP sessions (peer, AS, state, since when) and the VIPs it
// draws traffic for (address, Service, mode, pool, role: "announcing" for
// bgp when at least one session is established or none is configured,
// "owner" for layer2), and the pools the node may announce or own. Only the
// node's own speaker writes it (Writer): after the agent is ready, when the
// content changed and stayed so for a second, at most once every two
// seconds; an object that already says the same (an agent restart) costs no
// write. It is owned by the Node (an ownerReference: a namespaced object
// may have a cluster-scoped owner), so the garbage collector deletes it
// with the Node.
//
// The allocator reads the objects and gives each Service it handles the
// condition vipspeaker.io/Announced (Reason says why not); Cluster and
// PrintCluster are the `vipspeaker status --cluster` tables.
//
// It needs nothing from the kernel; only the API server.
package nodestate
