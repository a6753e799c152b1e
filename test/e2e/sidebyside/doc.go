// Package sidebyside measures vipspeaker and MetalLB v0.15.2 in the same
// lab, one after the other, with the same measurements: a router running
// FRR, a real kube-apiserver, three nodes and a client on one flat segment.
//
// Nothing of MetalLB lives in this repository: its speaker and controller
// are built at bench time from the Go module proxy by the separate module in
// test/metallb (so MetalLB's dependencies never enter vipspeaker's go.mod),
// and its CRDs are read from the module's config/crd/bases. Both systems
// get the equivalent configuration: two address pools (one announced over
// BGP, one answered on the segment), the router as BGP peer with its
// shortest timers, and for L2 a memberlist secret.
//
// The lab plays the parts a real cluster has and this machine lacks:
// Node objects, Pods for MetalLB's speakers, EndpointSlices with a ready
// endpoint, and for MetalLB kube-proxy in IPVS mode with strictARP (every
// VIP on a kube-ipvs0 device on every node, arp_ignore=1) so that pings to
// its VIPs are answered; vipspeaker puts VIPs on its own interface.
//
// The measurements are benchmarks (BenchmarkSideBySide,
// BenchmarkSideBySideScale), run by `make bench` (section "metallb").
// Plain `go test` (and so `make test`, whose test-tools build MetalLB once
// per machine) runs TestMigrateAnnouncesWhatMetalLBDid: MetalLB, then
// vipspeaker on `vipspeaker migrate`'s conversion of the same YAML, in one
// lab, FRR's routes compared.
package sidebyside
