// Package realnodes runs a Kubernetes cluster with real nodes inside a lab
// (test/lab): etcd and kube-apiserver (test/lab/kubeapi),
// kube-controller-manager and kube-scheduler on one host, and N nodes, each
// a kubelet, containerd (with runc and the CNI bridge, host-local and
// loopback plugins) and kube-proxy in its own network, mount and UTS
// namespace. The nodes share one layer-2 segment with an FRR router; a
// client host behind the router reaches VIPs over BGP, a client host on the
// segment over layer 2. EndpointSlices, node lifecycle, DaemonSets and
// Deployments are the real controllers'; nothing writes a Node, Pod or
// EndpointSlice by hand.
//
// # Topology
//
//	client 198.18.20.2 ── router 198.18.20.1 / 198.18.10.1 (FRR, AS 64500, bridge br0)
//	                        │ segment 198.18.10.0/24
//	       api 198.18.10.100, lan 198.18.10.50, n1..nN 198.18.10.11.. (AS 64512)
//
// Node i's Pods get 10.244.i.0/24 (CNI bridge cni0 with masquerade); every
// node has a static route to every other node's Pod subnet. Services get
// ClusterIPs from 10.96.0.0/16.
//
// # How a node is separated from the host and from the other nodes
//
// (the facts are in the lab notes, REALNODES.md)
//   - A holder process (`unshare --mount --uts --propagation private`,
//     started in the node's network namespace) owns the node's mount and
//     UTS namespaces; containerd, kubelet, kube-proxy and every command run
//     "on the node" enter them with `nsenter --target HOLDER --mount --uts`
//     (the network namespace is the lab host's), so kubelet and containerd
//     share one mount namespace.
//   - In that mount namespace: the cgroup hierarchies are mounted again
//     under the node's fresh sysfs, a private tmpfs covers /run and
//     /var/log, a private bpf filesystem covers /sys/fs/bpf, and the
//     host-wide /proc/sys files the kubelet writes are shadowed by files
//     holding the values it wants. containerd's and the kubelet's state
//     live in the node's folder.
//   - Every process of the node (daemons, shims, containers) lives under
//     the node's cgroup root /vsrn<pid>-<seq>-<node> in every hierarchy:
//     stopping (Freeze) or killing a node, and cleaning up, go by it.
//   - containerd has restrict_oom_score_adj = true and the kubelet and
//     kube-proxy oomScoreAdj 0 (no CAP_SYS_RESOURCE here); the kubelet has
//     failCgroupV1: false and cgroupDriver cgroupfs; kube-proxy sets no
//     conntrack tunables.
//
// Images come from local tarballs only (ImportImage; `ctr -n k8s.io images
// import`), including the sandbox image (test/cmd/pause).
//
// # Cleanup
//
// At the end of the test the nodes' cgroups are emptied (SIGKILL) and
// removed, then the lab tears down namespaces and processes. Start first
// sweeps what dead test processes left: cgroups and folders named
// vsrn<pid>-... whose process is gone (SweepStale), next to lab.SweepStale.
//
// Binaries: kubelet, kube-proxy, kube-controller-manager, kube-scheduler
// and kubectl v1.37.2 are built by test/apiserver/build.sh (once per
// machine, cached; `make test-tools`); containerd 1.6, runc, the CNI
// plugins, conntrack and nftables are Debian packages (scripts/deps.sh).
package realnodes
