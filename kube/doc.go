// Package kube connects vipspeaker to a Kubernetes API server.
//
// A Controller (New, then Run) watches Services, EndpointSlices and Nodes
// cluster-wide and the ConfigMap vipspeaker-config (and the Secrets it
// names) in its own namespace (vipspeaker-system). Node InternalIPs go to
// Options.OnNodeAddrs (the layer2 membership's peers in a cluster). It has two roles:
//
//   - allocator, on one agent at a time (a coordination.k8s.io Lease,
//     vipspeaker-allocator): it gives each Service it handles addresses from
//     the pools of vipspeaker.toml (package allocator) and writes
//     status.loadBalancer.ingress and the vipspeaker.io/allocated-from
//     annotation. Its only state is what the Services carry: a new leader
//     first re-reads every Service's status (oldest first), then serves
//     changes, so no address moves when the Lease changes hands. Addresses
//     are released when a Service is deleted or stops being a vipspeaker
//     LoadBalancer (its status and annotation are then cleared).
//   - speaker, on every agent: from the caches it computes this node's VIPs
//     and hands them to a callback (routing.Table's Set in the agent). In BGP
//     mode a node announces a Service's addresses when its Node is Ready and
//     lacks the node.kubernetes.io/exclude-from-external-load-balancers
//     label; with externalTrafficPolicy: Local only when it also holds a
//     ready endpoint of the Service. For layer2 VIPs the same rule gives the
//     candidate nodes (Options.OnLayer2); the node's own VIP set includes the
//     layer2 VIPs it is a candidate for.
//
// Which Services: type LoadBalancer with loadBalancerClass vipspeaker.io/lb;
// with no class when default-class is set, or when the Service carries
// OpenELB's opt-in annotation lb.kubesphere.io/v1alpha1: openelb. The
// annotations of INTERFACE.md are read, including OpenELB's and MetalLB's
// (see annotations.go); the first of vipspeaker's, MetalLB's and OpenELB's
// key present wins, and spec.loadBalancerIP is read when no addresses
// annotation is.
//
// Events on the Service, once per change: AddressAllocated,
// AllocationFailed (reason: message), InvalidAnnotation (allocator leader);
// Announcing (node, addresses, mode) and Withdrawn (every speaker, as its
// own decision changes; at start a speaker reads its own earlier Events, so
// a restart with nothing changed repeats none); AddressConflict (Warning)
// when the layer2 responder reports another station answering for an owned
// VIP (ReportConflict; once per episode). An invalid ConfigMap gives
// InvalidConfig on the ConfigMap and keeps the last good configuration; a
// deleted ConfigMap keeps it too.
//
// Secrets: OnConfig reads the Secrets the configuration names
// (secret:NAME/KEY) with SecretValue; only those, only in the controller's
// namespace, each through its own field-selected watch. A change to one
// runs the ConfigMap through OnConfig again; the Secrets a pass no longer
// asks for are no longer watched. MembershipKey and SecretText read the
// two kinds of reference (the layer2 membership key, a BGP password).
//
// At start the agent reads the ConfigMap once (ReadConfigMap), so its parts
// start with it, and the Nodes' InternalIPs (NodeAddrs, JoinPeers) for the
// layer2 membership to join before the informers run.
//
// A configuration change re-checks every Service, fed to the allocator's
// queue in small batches while it is nearly empty, so a Service created
// meanwhile is not held up by thousands of unchanged ones. The status is
// written before the allocated-from annotation (one API write before the
// speakers can announce); until the annotation arrives the speakers take
// the pool from the address.
//
// The speaker recomputes this node's VIPs from every Service on each change
// (a pass). While changes keep coming it rests three times as long as its
// last pass took (at most 500 ms) before the next one, taking what arrived
// meanwhile together, so three agents in a burst of thousands of Services
// leave the CPU to the API server; after a quiet spell a change is taken
// at once.
//
// State in the API (package nodestate): with Options.NodeReport the
// speaker keeps its node's VIPSpeakerNode object saying what it announces
// (and which pools it may: eligiblePools); while leading, the allocator
// follows those objects and sets each handled Service's
// vipspeaker.io/Announced condition (conditions.go), once per change.
//
// When the API server is unreachable the informers' caches keep their
// content, so the speaker keeps announcing the last known state; nothing is
// applied before the caches first synced.
//
// It needs nothing from the kernel; only the API server.
package kube
