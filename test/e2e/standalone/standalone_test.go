// Package standalone_test runs the real agent binary in standalone mode in
// a lab: a client, a router and a node, each a network namespace. The router
// sends the VIPs to the node through static routes, so what these tests see
// depends only on the VIP table: a VIP in a manifest becomes reachable from
// the client, and unreachable once the manifest is gone.
package standalone_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// topo is lab.Routed with one node and the client; the router sends the
// VIP ranges to the node by static routes.
type topo struct {
	*lab.Routed
	client, router, node *lab.Host
	a                    *lab.Node
}

func newTopo(t *testing.T) *topo {
	t.Helper()
	nstest.RequireRoot(t)
	r := lab.NewRouted(t, lab.RoutedOptions{Nodes: 1, Client: true})
	tp := &topo{Routed: r, client: r.Client, router: r.Router, node: r.Nodes[0].Host, a: r.Nodes[0]}
	for _, rt := range [][2]string{{"203.0.113.0/24", tp.a.Addr4}, {"2001:db8:100::/64", tp.a.Addr6}} {
		if err := tp.router.AddRoute(rt[0], rt[1]); err != nil {
			t.Fatal(err)
		}
	}
	return tp
}

func (tp *topo) startAgent(t *testing.T, extra ...string) {
	t.Helper()
	if _, err := tp.a.Start(extra...); err != nil {
		t.Fatal(err)
	}
}

// agent is the agent last started.
func (tp *topo) agent() *lab.Process { return tp.a.Proc }

// write writes a file of the node's services folder (name.yaml).
func (tp *topo) write(t *testing.T, name, content string) {
	t.Helper()
	if err := lab.WriteFileAtomic(tp.path(name), content); err != nil {
		t.Fatal(err)
	}
}

func (tp *topo) path(name string) string { return filepath.Join(tp.a.ServicesDir, name+".yaml") }

func service(name string, addrs ...string) string {
	return lab.ServiceFile{Name: name, Addresses: addrs}.String()
}

// serve builds the lab, writes web.yaml with vips, starts the agent and
// waits until the client reaches every VIP.
func serve(t *testing.T, vips ...string) *topo {
	t.Helper()
	tp := newTopo(t)
	tp.write(t, "web", service("web", vips...))
	tp.startAgent(t)
	for _, vip := range vips {
		lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error { return pingOnce(tp.client, vip) })
	}
	return tp
}

// waitLog waits until the agent's log holds s; else the test fails with
// what (the state it is not in yet).
func (tp *topo) waitLog(t *testing.T, s, what string) {
	t.Helper()
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(tp.agent().Log(), s) {
			return errors.New(what)
		}
		return nil
	})
}

func pingOnce(h *lab.Host, addr string) error {
	_, err := h.Run(context.Background(), "ping", "-n", "-q", "-c", "1", "-W", "1", addr)
	return err
}

func TestManifestVIPReachableThenGone(t *testing.T) {
	t.Parallel()
	tp := serve(t, "203.0.113.10", "2001:db8:100::10")
	// An address nobody asked for is not reachable: the router sends it to
	// the node, which has nothing there.
	if err := pingOnce(tp.client, "203.0.113.99"); err == nil {
		t.Error("203.0.113.99 answered, but no manifest names it")
	}

	// A second Service appears in another file, with several documents.
	tp.write(t, "more", service("dns", "203.0.113.11")+"---\n"+service("bad", "224.0.0.5"))
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error { return pingOnce(tp.client, "203.0.113.11") })

	// The first manifest is removed: its VIPs stop answering; the other stays.
	if err := os.Remove(tp.path("web")); err != nil {
		t.Fatal(err)
	}
	for _, vip := range []string{"203.0.113.10", "2001:db8:100::10"} {
		lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
			if pingOnce(tp.client, vip) == nil {
				return fmt.Errorf("%s still answers after its manifest was removed", vip)
			}
			return nil
		})
	}
	if err := pingOnce(tp.client, "203.0.113.11"); err != nil {
		t.Errorf("203.0.113.11 stopped answering: %v", err)
	}
	// The bad document was reported with its file, document and field.
	if log := tp.agent().Log(); !strings.Contains(log, "more.yaml") || !strings.Contains(log, "document 2") || !strings.Contains(log, "vipspeaker.io/addresses") {
		t.Errorf("the agent's log does not name the bad document's file, document and field:\n%s", log)
	}
}

func TestBrokenEditKeepsGoodVIPs(t *testing.T) {
	t.Parallel()
	tp := serve(t, "203.0.113.20")
	p, err := tp.client.StartPinger("203.0.113.20", 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	if err := p.WaitReplies(20, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	tp.write(t, "web", "apiVersion: v1\nkind: Service\nmetadata: [this is not\n")
	tp.waitLog(t, "web.yaml", "the broken file is not reported yet")
	// Once the agent has read the broken file, the VIP answers on: 50
	// pings in a row after the report, and none lost since the edit.
	if err := p.WaitReplies(50, 10*time.Second); err != nil {
		t.Errorf("a broken edit removed a good VIP: %v", err)
	}
	if r := p.Stop().Since(from); r.Lost() != 0 {
		t.Errorf("a broken edit interrupted a good VIP: %v", r)
	}
}

func TestRestartIsHitless(t *testing.T) {
	t.Parallel()
	tp := serve(t, "203.0.113.30")
	if err := tp.agent().Stop(); err != nil {
		t.Fatal(err)
	}
	// With the agent gone the VIP stays on the interface and answers.
	if err := pingOnce(tp.client, "203.0.113.30"); err != nil {
		t.Fatalf("VIP gone while the agent is stopped: %v", err)
	}
	tp.startAgent(t)
	tp.waitLog(t, "adopted VIPs already on the interface", "restarted agent has not adopted the VIPs yet")
	if err := pingOnce(tp.client, "203.0.113.30"); err != nil {
		t.Errorf("VIP gone after restart: %v", err)
	}
	// --remove-vips-on-exit takes everything away on SIGTERM.
	if err := tp.agent().Stop(); err != nil {
		t.Fatal(err)
	}
	tp.startAgent(t, "--remove-vips-on-exit")
	tp.waitLog(t, "VIP table applied", "agent not ready")
	if err := tp.agent().Stop(); err != nil {
		t.Fatal(err)
	}
	if out, err := tp.node.Run(context.Background(), "ip", "link", "show", "kube-lb0"); err == nil {
		t.Errorf("kube-lb0 still exists after --remove-vips-on-exit:\n%s", out)
	}
}

func TestRestartWithBrokenManifestKeepsVIPs(t *testing.T) {
	t.Parallel()
	tp := serve(t, "203.0.113.40")
	path := tp.path("web")
	if err := tp.agent().Stop(); err != nil {
		t.Fatal(err)
	}
	// The file breaks while the agent is away: the new agent has never
	// read it cleanly, so it must not take the VIP away.
	tp.write(t, "web", "apiVersion: v1\nkind: Service\nmetadata: [broken\n")
	tp.startAgent(t)
	tp.waitLog(t, "VIP table applied", "agent has not applied its table yet")
	if err := pingOnce(tp.client, "203.0.113.40"); err != nil {
		t.Fatalf("a manifest broken before the restart withdrew its VIP: %v", err)
	}
	// Once the file is fixed and then removed, the VIP goes as usual.
	tp.write(t, "web", service("web", "203.0.113.40"))
	tp.waitLog(t, `msg="applying services" component=standalone vips=1`, "the agent has not read the fixed manifest yet")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		if pingOnce(tp.client, "203.0.113.40") == nil {
			return fmt.Errorf("203.0.113.40 still answers after its manifest was removed")
		}
		return nil
	})
}
