package lab

import (
	"fmt"
	"testing"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
)

// RequireFRR skips the test (a failure under CI=true) unless it runs as
// root and FRR is installed.
func RequireFRR(t testing.TB) {
	t.Helper()
	nstest.RequireRoot(t)
	if err := HaveFRR(); err != nil {
		nstest.Skip(t, "%v", err)
	}
}

// Vipspeaker builds ./cmd/vipspeaker (once per process) and returns the
// binary; it fails the test when the build fails.
func Vipspeaker(t testing.TB) string {
	t.Helper()
	bin, err := BuildBinary("./cmd/vipspeaker")
	if err != nil {
		t.Fatalf("build vipspeaker: %v", err)
	}
	return bin
}

// Routed is the "router + N nodes" topology: node i (1-based) is linked to
// the router, its eth0 holding 198.18.i.2/30 and 2001:db8:18:i::2/64, the
// router's n<i> the .1 (::1) of the same nets; each node's default routes
// point at the router, which forwards. An optional client sits on
// 198.18.0.2/24 and 2001:db8:18::2/64 behind the router's "client"
// (198.18.0.1, 2001:db8:18::1). Every node has an Agent (folders made,
// nothing started).
type Routed struct {
	Lab    *Lab
	Router *Host
	Nodes  []*Node
	Client *Host // nil unless RoutedOptions.Client
	FRR    *FRR  // the router's, once StartFRR ran
}

// Node is one node of a Routed lab.
type Node struct {
	*Agent
	Index        int    // 1-based
	Addr4, Addr6 string // the node's addresses on its link
	Peer4, Peer6 string // the router's addresses on that link
}

// RoutedOptions says how many nodes a Routed lab has and what else.
type RoutedOptions struct {
	Nodes int
	// NodeName is the format of node i's host name (default "node%d").
	NodeName string
	// Client adds the client host.
	Client bool
	// NoNodeDefaults leaves the nodes without default routes (they learn
	// them, e.g. from the router over BGP through zebra).
	NoNodeDefaults bool
	// Bin is the vipspeaker binary of the agents.
	Bin string
}

// NewRouted builds a Routed lab for a test (lab.New); it fails the test
// on error. The vipspeaker binary is built when o.Bin is empty.
func NewRouted(t testing.TB, o RoutedOptions) *Routed {
	t.Helper()
	if o.Bin == "" {
		o.Bin = Vipspeaker(t)
	}
	r, err := BuildRouted(New(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// BuildRouted builds the Routed topology in l (a test lab or a persistent
// one).
func BuildRouted(l *Lab, o RoutedOptions) (*Routed, error) {
	name := o.NodeName
	if name == "" {
		name = "node%d"
	}
	router, err := l.Host("router")
	if err != nil {
		return nil, err
	}
	r := &Routed{Lab: l, Router: router}
	if o.Client {
		if r.Client, err = r.attach("client", "client", "198.18.0.1", "2001:db8:18::1", "198.18.0.2", "2001:db8:18::2", "/24", true); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= o.Nodes; i++ {
		n := &Node{Index: i, Addr4: fmt.Sprintf("198.18.%d.2", i), Addr6: fmt.Sprintf("2001:db8:18:%d::2", i),
			Peer4: fmt.Sprintf("198.18.%d.1", i), Peer6: fmt.Sprintf("2001:db8:18:%d::1", i)}
		h, err := r.attach(fmt.Sprintf(name, i), fmt.Sprintf("n%d", i), n.Peer4, n.Peer6, n.Addr4, n.Addr6, "/30", !o.NoNodeDefaults)
		if err != nil {
			return nil, err
		}
		if n.Agent, err = NewAgent(h, o.Bin); err != nil {
			return nil, err
		}
		r.Nodes = append(r.Nodes, n)
	}
	return r, router.EnableForwarding()
}

// attach creates host name linked to the router (router side rIf), with
// default routes through the router when defaults is set.
func (r *Routed) attach(name, rIf, gw4, gw6, addr4, addr6, len4 string, defaults bool) (*Host, error) {
	h, err := r.Lab.Host(name)
	if err != nil {
		return nil, err
	}
	if err := r.Lab.Link(r.Router, rIf, []string{gw4 + len4, gw6 + "/64"}, h, "eth0", []string{addr4 + len4, addr6 + "/64"}); err != nil {
		return nil, err
	}
	if !defaults {
		return h, nil
	}
	for _, rt := range [][2]string{{"default", gw4}, {"default6", gw6}} {
		if err := h.AddRoute(rt[0], rt[1]); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// FRRNeighbors are the router's neighbors for FRRBGPConf: every node over
// IPv4, AS as, connect retry 1 s, IPv6 activated on the same session.
func (r *Routed) FRRNeighbors(as int) []FRRNeighbor {
	var out []FRRNeighbor
	for _, n := range r.Nodes {
		out = append(out, FRRNeighbor{Addr: n.Addr4, AS: as, ConnectRetry: 1, IPv6: true})
	}
	return out
}

// StartFRR starts zebra, bgpd with bgpd and, when bfdd is not empty,
// bfdd on the router, and makes it r.FRR.
func (r *Routed) StartFRR(bgpd FRRBGPConf, bfdd string) (*FRR, error) {
	f, err := r.Router.StartFRR(FRRConfig{Zebra: "hostname router\nlog stdout informational\n", BGPd: bgpd.String(), BFDd: bfdd})
	if err != nil {
		return nil, err
	}
	r.FRR = f
	return f, nil
}

// RouterGoBGP is a node's neighbor entry for the router: eBGP to AS 65000
// at the router's IPv4 address, the lab's fast timers, both families.
func (n *Node) RouterGoBGP() GoBGPNeighbor {
	return GoBGPNeighbor{Address: n.Peer4, PeerAS: 65000, Families: BothFamilies}.FastTimers()
}
