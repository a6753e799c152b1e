package lab

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Flat is the "one segment" topology of the layer2 suites: the client's
// bridge br0 (198.18.2.1/24, with IPv6 also 2001:db8:2::1/64) and node i
// (0-based, host node<i>) plugged into it on eth0 with 198.18.2.(10+i)/24
// (2001:db8:2::(10+i)/64). The client routes the VIP ranges of
// FlatOptions.Routes onto br0, so it resolves them over ARP and NDP. Every
// node has an Agent (folders made, nothing started).
type Flat struct {
	Lab    *Lab
	Client *Host
	Nodes  []*FlatNode
}

// FlatNode is one node of a Flat lab.
type FlatNode struct {
	*Agent
	Index int
	Addr4 string // on eth0, without the length
	MAC   string // eth0's, as net.HardwareAddr prints it
}

// FlatOptions says how many nodes a Flat lab has and what else.
type FlatOptions struct {
	Nodes int
	// IPv6 gives the bridge and the nodes their IPv6 addresses too.
	IPv6 bool
	// Routes are the prefixes the client routes onto br0 (the VIP ranges).
	Routes []string
	// Bin is the vipspeaker binary of the agents (default: built).
	Bin string
}

// FlatClient is the client's address on br0, the source of its probes.
const FlatClient = "198.18.2.1"

// NewFlat builds a Flat lab for a test (lab.New); it fails the test on
// error.
func NewFlat(t testing.TB, o FlatOptions) *Flat {
	t.Helper()
	if o.Bin == "" {
		o.Bin = Vipspeaker(t)
	}
	l := New(t)
	f, err := buildFlat(l, o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func buildFlat(l *Lab, o FlatOptions) (*Flat, error) {
	client, err := l.Host("client")
	if err != nil {
		return nil, err
	}
	f := &Flat{Lab: l, Client: client}
	addrs := func(i int) []string {
		a := []string{fmt.Sprintf("198.18.2.%d/24", i)}
		if o.IPv6 {
			a = append(a, fmt.Sprintf("2001:db8:2::%d/64", i))
		}
		return a
	}
	if err := l.Bridge(client, "br0", addrs(1)); err != nil {
		return nil, err
	}
	for _, r := range o.Routes {
		argv := []string{"ip", "route", "add", r, "dev", "br0"}
		if strings.Contains(r, ":") {
			argv = []string{"ip", "-6", "route", "add", r, "dev", "br0"}
		}
		if _, err := client.Run(context.Background(), argv...); err != nil {
			return nil, err
		}
	}
	for i := range o.Nodes {
		h, err := l.Host(fmt.Sprintf("node%d", i))
		if err != nil {
			return nil, err
		}
		if err := l.LinkToBridge(h, "eth0", addrs(10+i), client, "br0"); err != nil {
			return nil, err
		}
		lk, err := h.Netlink().LinkByName("eth0")
		if err != nil {
			return nil, err
		}
		n := &FlatNode{Index: i, Addr4: fmt.Sprintf("198.18.2.%d", 10+i), MAC: lk.Attrs().HardwareAddr.String()}
		if n.Agent, err = NewAgent(h, o.Bin); err != nil {
			return nil, err
		}
		f.Nodes = append(f.Nodes, n)
	}
	return f, nil
}

// MACs are the nodes' eth0 MACs, by index.
func (f *Flat) MACs() []string {
	out := make([]string, len(f.Nodes))
	for i, n := range f.Nodes {
		out[i] = n.MAC
	}
	return out
}

// Join is every node's address, for Membership.Join.
func (f *Flat) Join() []string {
	out := make([]string, len(f.Nodes))
	for i, n := range f.Nodes {
		out[i] = n.Addr4
	}
	return out
}

// WriteConfig writes a config file of every node's agent.
func (f *Flat) WriteConfig(name, content string) error {
	for _, n := range f.Nodes {
		if err := n.WriteConfig(name, content); err != nil {
			return err
		}
	}
	return nil
}

// WriteServices writes the Services to every node's services folder as
// one file, name.yaml, replacing what it held (no Services: an empty file).
func (f *Flat) WriteServices(name string, ss ...ServiceFile) error {
	docs := make([]string, len(ss))
	for i, s := range ss {
		docs[i] = s.String()
	}
	for _, n := range f.Nodes {
		if err := WriteFileAtomic(filepath.Join(n.ServicesDir, name+".yaml"), strings.Join(docs, "---\n")); err != nil {
			return err
		}
	}
	return nil
}

// ARPing asks for addr on br0 from the client (FlatClient.ARPing).
func (f *Flat) ARPing(addr string, count int, interval time.Duration) []string {
	return f.Client.ARPing("br0", addr, count, interval)
}

// WaitOwner waits until exactly one node answers resolve(addr) and returns
// its index (WaitOwner).
func (f *Flat) WaitOwner(t testing.TB, addr string, timeout time.Duration, resolve func(addr string) []string) int {
	t.Helper()
	return WaitOwner(t, timeout, addr, f.MACs(), resolve)
}

// StartProber starts an ARPProber for target on the client's br0 (from
// FlatClient), stopped at the end of the test.
func (f *Flat) StartProber(t testing.TB, target string, every time.Duration) *ARPProber {
	t.Helper()
	p, err := f.Client.StartARPProber("br0", netip.MustParseAddr(FlatClient), netip.MustParseAddr(target), every)
	if err != nil {
		t.Fatalf("ARP prober on the client's br0: %v", err)
	}
	t.Cleanup(func() { p.Stop(0) })
	return p
}
