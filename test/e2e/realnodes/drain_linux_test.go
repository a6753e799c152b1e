package realnodes_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/realnodes"
)

// nodeMACs maps each node's segment MAC (eth0, lower case) to the node.
func nodeMACs(t *testing.T, c *realnodes.Cluster) map[string]*realnodes.Node {
	t.Helper()
	macs := map[string]*realnodes.Node{}
	for _, n := range c.Nodes {
		if err := n.Host.Do(func() error {
			ifi, err := net.InterfaceByName("eth0")
			if err == nil {
				macs[strings.ToLower(ifi.HardwareAddr.String())] = n
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	return macs
}

// The owner of a layer-2 VIP, as the segment sees it: the node whose MAC
// answers ARP for vip.
func layer2Owner(t *testing.T, c *realnodes.Cluster, vip string) *realnodes.Node {
	t.Helper()
	macs := nodeMACs(t, c)
	p, err := c.LAN.StartARPProber("eth0", netip.MustParseAddr(realnodes.LANAddr), netip.MustParseAddr(vip), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(0)
	var owner *realnodes.Node
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		for _, r := range p.Replies() {
			if owner = macs[strings.ToLower(r.MAC)]; owner != nil {
				return nil
			}
		}
		return fmt.Errorf("no node answered ARP for %s", vip)
	})
	return owner
}

// `kubectl drain` of a node, then the node shut down (kubelet, containerd,
// the agent and its Pods frozen, its link down), under a client every 10 ms
// to a BGP VIP from behind the router and to a layer-2 VIP from the
// segment, both with the drained node among those carrying them: no
// request fails. The cordon takes the node's next hop out of the router's
// kernel route and moves the layer-2 VIP to another node before the node
// goes, so nothing is left pointing at it (without it, graceful restart
// would keep its route at the router for restart-time after the node
// died). A request whose connection was open on the drained node at the
// moment its traffic moved is carried on by the node it moved to, which
// hands the connection's segments back to the drained node (the handover;
// without it such a request is reset, about one run in ten at 50 req/s).
// The same, deterministically: an HTTP keep-alive connection opened through
// the drained node to the layer-2 VIP (to a backend on another node, which
// the drain does not evict) answers its second request after the VIP moved.
func TestDrainThenShutdown(t *testing.T) {
	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bgp := realnodes.EchoOptions{Namespace: "web", Name: "echo", Replicas: 3, Pool: "bgp"}
	vip := echoBGP(t, c, bgp)
	waitNextHops(t, c, vip, len(c.Nodes))
	l2 := realnodes.EchoOptions{Namespace: "l2", Name: "echo", Replicas: 3, Pool: "l2"}
	l2vip := firstAnswer(t, c, l2, c.LAN, "the layer-2 VIP", "from the segment")
	if err := c.WaitDeploymentReady(l2.Namespace, l2.Name, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	node := layer2Owner(t, c, l2vip)
	var others []string
	for _, n := range c.Nodes {
		if n != node {
			others = append(others, n.Addr)
		}
	}
	slices.Sort(others)

	const rate = 100 // a request every 10 ms
	loadBGP := realnodes.StartLoad(c.Client, "http://"+vip+"/", rate, timeout)
	loadL2 := realnodes.StartLoad(c.LAN, "http://"+l2vip+"/", rate, timeout)
	flowing := func(ls ...*realnodes.Load) {
		t.Helper()
		want := make([]int, len(ls))
		for i, l := range ls {
			want[i] = l.Result().OK + 2*rate
		}
		lab.Eventually(t, time.Minute, 100*time.Millisecond, func() error {
			for i, l := range ls {
				if r := l.Result(); r.OK < want[i] {
					return fmt.Errorf("load: %v", r)
				}
			}
			return nil
		})
	}
	flowing(loadBGP, loadL2)
	kept := keepAlive(t, c, l2.Namespace, l2vip, node)

	start := time.Now()
	if _, err := c.Kubectl(ctx, "drain", node.Name, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3m"); err != nil {
		t.Fatal(err)
	}
	drained := time.Since(start)
	if err := c.Router.WaitGateways(vip+"/32", time.Minute, others...); err != nil {
		t.Fatalf("after the drain of %s: %v", node.Name, err)
	}
	if o := layer2Owner(t, c, l2vip); o == node {
		t.Fatalf("layer-2 VIP %s still owned by the drained node %s", l2vip, node.Name)
	}
	flowing(loadBGP, loadL2)
	if got, err := kept.get(); err != nil || got != kept.pod {
		t.Errorf("the keep-alive connection opened through %s before the drain, after the layer-2 VIP moved: %q, %v; want %s's answer", node.Name, got, err, kept.pod)
	}
	// The node shuts down: its processes stop and its link goes down (a
	// frozen node's kernel would still forward what reaches it).
	if err := node.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Thaw() })
	if err := node.Host.Do(func() error {
		l, err := node.Host.Netlink().LinkByName("eth0")
		if err != nil {
			return err
		}
		return node.Host.Netlink().LinkSetDown(l)
	}); err != nil {
		t.Fatal(err)
	}
	flowing(loadBGP, loadL2)
	rb, rl := loadBGP.Stop(), loadL2.Stop()
	t.Logf("figure: kubectl drain %s (%v), then the node frozen, under %d req/s: BGP %v; layer2 %v", node.Name, drained.Round(10*time.Millisecond), rate, rb, rl)
	for what, r := range map[string]realnodes.LoadResult{"BGP": rb, "layer2": rl} {
		if r.Failed != 0 {
			t.Errorf("%s: %d of %d requests failed (first: %s; last: %s)", what, r.Failed, r.Sent, r.FirstErr, r.LastErr)
		}
	}
}

// keptConn is an HTTP/1.1 keep-alive connection from the segment to a VIP.
type keptConn struct {
	conn net.Conn
	r    *bufio.Reader
	pod  string // the backend that answered the first request
}

func (k *keptConn) get() (string, error) {
	_ = k.conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(k.conn, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %q: %v", resp.Status, body, err)
	}
	return strings.TrimSpace(string(body)), nil
}

// keepAlive opens keep-alive connections from the segment to vip until one
// reaches a backend (of the Deployment in namespace) on a node other than
// avoid, so the drain of avoid does not end it with its Pod.
func keepAlive(t *testing.T, c *realnodes.Cluster, namespace, vip string, avoid *realnodes.Node) *keptConn {
	t.Helper()
	for range 20 {
		var conn net.Conn
		if err := c.LAN.Do(func() (err error) {
			conn, err = net.DialTimeout("tcp", vip+":80", 3*time.Second)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		k := &keptConn{conn: conn, r: bufio.NewReader(conn)}
		pod, err := k.get()
		if err != nil {
			t.Fatal(err)
		}
		where, err := c.Kubectl(context.Background(), "-n", namespace, "get", "pod", pod, "-o", "jsonpath={.spec.nodeName}")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(where) != avoid.Name {
			k.pod = pod
			t.Cleanup(func() { conn.Close() })
			return k
		}
		conn.Close()
	}
	t.Fatalf("20 connections to %s all reached a backend on %s", vip, avoid.Name)
	return nil
}
