// Package lab builds network topologies for tests, demos and benchmarks:
// hosts are network namespaces, joined by veth pairs and Linux bridges;
// processes (vipspeaker, FRR, BIRD, gobgpd, anything) run inside them; and
// everything the lab made is removed again — when the test ends, when it
// fails, and when the test process is interrupted.
//
// # What it needs from the system
//
// Root (network namespaces, veth, bridges, /proc/sys), iproute2 (`ip netns
// exec` runs every command inside a host) and iputils ping. For real peers:
// Debian's frr (8.4) and bird2 packages, and the Go toolchain with access to
// the module proxy to build gobgpd and the gobgp CLI (GoBGPBinaries). Lab
// addresses come from LAB.md: 198.18.0.0/15 for links, 203.0.113.0/24 and
// 198.51.100.0/24 for VIPs, 2001:db8::/32 for IPv6.
//
// # Test mode
//
//	l := lab.New(t)
//	r, n1 := l.MustHost("router"), l.MustHost("node1")
//	l.MustLink(r, "eth0", []string{"198.18.0.1/30", "2001:db8:18::1/64"},
//		n1, "eth0", []string{"198.18.0.2/30", "2001:db8:18::2/64"})
//	if err := n1.Ping("198.18.0.1"); err != nil {
//		t.Fatal(err)
//	}
//	sw := l.MustHost("switch") // a flat L2 segment for several nodes
//	l.MustBridge(sw, "br0", nil)
//	l.MustLinkToBridge(n1, "eth1", []string{"198.18.1.11/24"}, sw, "br0")
//	r.EnableForwarding()
//	n1.AddRoute("203.0.113.0/24", "198.18.0.1")
//
//	bin, err := lab.BuildBinary("./cmd/vipspeaker") // once per process
//	p, err := n1.Start("agent", []string{bin, "run", "--run-dir", l.Dir()})
//	lab.Eventually(t, 5*time.Second, 50*time.Millisecond, func() error {
//		_, ok, err := r.KernelRoute("203.0.113.10/32")
//		if err == nil && !ok {
//			err = errors.New("no route yet")
//		}
//		return err
//	})
//
// Host.Run runs a command in the namespace and returns its output;
// Host.Start runs one in the background, output in <lab dir>/<host>.<name>.log
// (Process.Log, Process.LogPath), in its own process group (Stop sends
// SIGTERM, then SIGKILL after StopTimeout; Kill, Signal, Wait). Host.Do runs
// Go code on a thread inside the namespace; Host.Netlink is a netlink handle
// bound to it.
//
// Namespaces are named vl<pid>-<n>-<host>. Everything is torn down in
// t.Cleanup: processes get SIGTERM (SIGKILL after a grace), anything else
// still running inside the lab's namespaces is killed, namespaces and FRR's
// per-namespace folders are deleted. When the test failed, the last lines of
// every process log are printed and the lab folder (logs, configs, sockets)
// is kept. Test-mode processes die with the test process (parent-death
// signal), except daemons that change user (FRR): every New first sweeps
// namespaces, processes and folders left by dead test processes
// (SweepStale), and a SIGINT/SIGTERM handler installed by New tears down
// every live lab before the process exits. (A `go test -timeout` panic runs
// no cleanup; the next New sweeps what it left.)
//
// # Topologies and fixtures
//
// The suites share three topologies, so a new scenario is a page of
// assertions:
//
//	tp := lab.NewRouted(t, lab.RoutedOptions{Nodes: 2, Client: true})
//	tp.StartFRR(lab.FRRBGPConf{AS: 65000, RouterID: "198.18.0.1", MaximumPaths: 8,
//		Neighbors: tp.FRRNeighbors(65001)}, "")
//	n := tp.Nodes[0] // node1: 198.18.1.2/30, 2001:db8:18:1::2/64, router .1
//	n.WriteConfig("gobgp.conf", lab.GoBGPConf{AS: 65001,
//		Neighbors: []lab.GoBGPNeighbor{n.RouterGoBGP()}}.String())
//	n.WriteService(lab.ServiceFile{Name: "web", Addresses: []string{"203.0.113.10"}})
//	n.Start() // vipspeaker run on the node's config, services and run folders
//	tp.Router.WaitGateways("203.0.113.10/32", 20*time.Second, n.Addr4)
//
// Routed is "router + N nodes (+ a client)": node i linked to the router
// on 198.18.i.0/30 and 2001:db8:18:i::/64, default routes through the
// router (RoutedOptions.NoNodeDefaults: none, the nodes learn them), which
// forwards; BuildRouted builds it in a persistent lab (the demo, bench
// bgp). Each Node is an Agent: a vipspeaker in standalone mode with its
// folders under <lab dir>/<host> (NewAgent makes one on any host; Wrap
// puts setpriv or the like before it).
//
// Flat is "one segment" for the layer2 suites:
//
//	f := lab.NewFlat(t, lab.FlatOptions{Nodes: 2, IPv6: true, Routes: []string{"203.0.113.0/24"}})
//	f.WriteConfig("vipspeaker.toml", lab.AgentTOML{Pools: []lab.Pool{{Name: "flat",
//		Addresses: []string{"203.0.113.0/28"}, Layer2Interfaces: []string{"eth0"}}},
//		Membership: &lab.Membership{Join: f.Join()}}.String())
//	f.Nodes[0].Start()
//	o := f.WaitOwner(t, "203.0.113.10", 20*time.Second, func(a string) []string {
//		return f.ARPing(a, 2, 100*time.Millisecond)
//	})
//
// The client's bridge br0 (198.18.2.1/24) with node i (node<i>, 0-based)
// on eth0 at 198.18.2.(10+i), each an Agent with its MAC; the client routes
// the VIP ranges onto br0. Host.ARPing (arping), MACs (the MACs in a
// tool's output) and WaitOwner ("exactly one node answers for this VIP:
// which") serve any segment, the kube layer2 suite's too; StartProber is
// an ARPProber on the client, stopped with the test. Host.Metrics and
// MetricSum read an agent's /metrics.
//
// kubeapi.NewCluster is "router + API server + N nodes on one segment":
// bridge br0 on the router (or another host), the API server on "api",
// the deploy manifests applied with the ConfigMap the test gives, Ready
// Node objects, the agents' kubeconfig; kubeapi.LoadBalancer,
// Server.CreateNode, CreateNamespace and Events are the objects the kube
// suites share.
//
// The fixtures build each config from the knobs the suites vary; a zero
// value leaves a setting to the daemon: GoBGPConf and GoBGPNeighbor
// (gobgp.conf for agents and gobgpd; FastTimers, GracefulRestart, BFD,
// families), GoBGPPolicy (a global export policy with prefix, community
// and neighbor sets), GoBGPZebra, FRRBGPConf and FRRNeighbor (bgpd: eBGP
// without policy, timers, ECMP, families), FRRFastBFD (bfdd, 100 ms × 3),
// AgentTOML, Pool, Layer2TOML and Membership (vipspeaker.toml with
// kube-lb0 as ifb, or dummy with DummyInterface) and ServiceFile (a Service
// manifest for standalone mode, with its pool annotation if any). FRR.PrefixPaths
// and FRR.Session read FRR's view of a prefix and a session;
// Host.Gateways, WaitGateways and WatchKernelRoutes read a host's kernel.
//
// # Persistent mode (make demo)
//
//	l, err := lab.NewPersistent("vsdemo", "/run/vipspeaker-demo")
//	r, err := l.Host("router") // namespace "vsdemo-router"
//	...
//	p, err := node.Start("vipspeaker", argv) // keeps running after we exit
//
// and, from `make demo-down` in another process:
//
//	err := lab.Teardown("vsdemo", "/run/vipspeaker-demo")
//
// Namespaces are named <name>-<host>; processes start in their own session
// and outlive the caller. The state folder holds lab.json (namespaces, PIDs
// with their start times, FRR folders), logs, configs and sockets.
// Teardown kills the recorded processes (a PID whose start time changed is
// left alone), anything else inside the namespaces, deletes every namespace
// named <name>-*, the FRR folders, and the state folder. NewPersistent on a
// state folder of an earlier lab of the same name tears that lab down first.
//
// # Real peers
//
// Host.StartFRR runs FRR daemons in the foreground with `-N <namespace>`
// (config in /etc/frr/<namespace>, owned by frr; sockets in
// /var/run/frr/<namespace>), FRR.Vtysh/VtyshJSON talk to them, and
// WaitEstablished, BGPRoutes, RoutesIPv4/RoutesIPv6 read BGP state.
// Host.StartBIRD runs bird with its control socket in the lab folder.
// Host.StartGoBGPd runs gobgpd of the GoBGP version in go.mod, API on a unix
// socket, and GoBGPd.CLI runs the gobgp CLI against it. Host.KernelRoutes
// and Host.KernelRoute read the host's main routing table.
//
// BuildBinary builds a package of this module once per process (e.g.
// "./cmd/vipspeaker"); Eventually and Poll wait with a timeout and report the
// last error.
package lab
