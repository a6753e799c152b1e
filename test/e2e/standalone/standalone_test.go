// Package standalone_test runs the real agent binary in standalone mode in
// a lab: a client, a router and a node, each a network namespace. The router
// sends the VIPs to the node through static routes, so what these tests see
// depends only on the VIP table: a VIP in a manifest becomes reachable from
// the client, and unreachable once the manifest is gone.
package standalone_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

type topo struct {
	l      *lab.Lab
	client *lab.Host
	router *lab.Host
	node   *lab.Host
	svcDir string
	agent  *lab.Process
	starts int
	bin    string
}

func newTopo(t *testing.T) *topo {
	t.Helper()
	nstest.RequireRoot(t)
	bin, err := lab.BuildBinary("./cmd/vipspeaker")
	if err != nil {
		t.Fatalf("build vipspeaker: %v", err)
	}
	l := lab.New(t)
	tp := &topo{l: l, bin: bin}
	tp.client, tp.router, tp.node = l.MustHost("client"), l.MustHost("router"), l.MustHost("node1")
	l.MustLink(tp.client, "eth0", []string{"198.18.0.2/30", "2001:db8:18::2/64"},
		tp.router, "client0", []string{"198.18.0.1/30", "2001:db8:18::1/64"})
	l.MustLink(tp.router, "node1", []string{"198.18.1.1/30", "2001:db8:18:1::1/64"},
		tp.node, "eth0", []string{"198.18.1.2/30", "2001:db8:18:1::2/64"})
	if err := tp.router.EnableForwarding(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		h        *lab.Host
		dst, via string
	}{
		{tp.client, "default", "198.18.0.1"},
		{tp.client, "default6", "2001:db8:18::1"},
		{tp.node, "default", "198.18.1.1"},
		{tp.node, "default6", "2001:db8:18:1::1"},
		{tp.router, "203.0.113.0/24", "198.18.1.2"},
		{tp.router, "2001:db8:100::/64", "2001:db8:18:1::2"},
	} {
		if err := r.h.AddRoute(r.dst, r.via); err != nil {
			t.Fatal(err)
		}
	}
	tp.svcDir = filepath.Join(l.Dir(), "services")
	if err := os.MkdirAll(tp.svcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return tp
}

func (tp *topo) startAgent(t *testing.T, extra ...string) {
	t.Helper()
	argv := append([]string{tp.bin, "run", "--services-dir", tp.svcDir,
		"--run-dir", filepath.Join(tp.l.Dir(), "run-node1"), "--node-name", "node1", "--log-level", "debug"}, extra...)
	tp.starts++
	p, err := tp.node.Start(fmt.Sprintf("vipspeaker-%d", tp.starts), argv)
	if err != nil {
		t.Fatal(err)
	}
	tp.agent = p
}

func service(name string, addrs ...string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
  namespace: demo
  annotations:
    vipspeaker.io/addresses: "%s"
spec:
  type: LoadBalancer
  ports:
  - port: 80
`, name, strings.Join(addrs, ","))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func pingOnce(h *lab.Host, addr string) error {
	_, err := h.Run(context.Background(), "ping", "-n", "-q", "-c", "1", "-W", "1", addr)
	return err
}

func TestManifestVIPReachableThenGone(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	writeFile(t, filepath.Join(tp.svcDir, "web.yaml"), service("web", "203.0.113.10", "2001:db8:100::10"))
	tp.startAgent(t)

	for _, vip := range []string{"203.0.113.10", "2001:db8:100::10"} {
		lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error { return pingOnce(tp.client, vip) })
	}
	// An address nobody asked for is not reachable: the router sends it to
	// the node, which has nothing there.
	if err := pingOnce(tp.client, "203.0.113.99"); err == nil {
		t.Error("203.0.113.99 answered, but no manifest names it")
	}

	// A second Service appears in another file, with several documents.
	writeFile(t, filepath.Join(tp.svcDir, "more.yaml"), service("dns", "203.0.113.11")+"---\n"+service("bad", "224.0.0.5"))
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error { return pingOnce(tp.client, "203.0.113.11") })

	// The first manifest is removed: its VIPs stop answering; the other stays.
	if err := os.Remove(filepath.Join(tp.svcDir, "web.yaml")); err != nil {
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
	if log := tp.agent.Log(); !strings.Contains(log, "more.yaml") || !strings.Contains(log, "document 2") || !strings.Contains(log, "vipspeaker.io/addresses") {
		t.Errorf("the agent's log does not name the bad document's file, document and field:\n%s", log)
	}
}

func TestBrokenEditKeepsGoodVIPs(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	path := filepath.Join(tp.svcDir, "web.yaml")
	writeFile(t, path, service("web", "203.0.113.20"))
	tp.startAgent(t)
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error { return pingOnce(tp.client, "203.0.113.20") })
	p, err := tp.client.StartPinger("203.0.113.20", 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	if err := p.WaitReplies(20, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	writeFile(t, path, "apiVersion: v1\nkind: Service\nmetadata: [this is not\n")
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(tp.agent.Log(), "web.yaml") {
			return fmt.Errorf("the broken file is not reported yet")
		}
		return nil
	})
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
	tp := newTopo(t)
	writeFile(t, filepath.Join(tp.svcDir, "web.yaml"), service("web", "203.0.113.30"))
	tp.startAgent(t)
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error { return pingOnce(tp.client, "203.0.113.30") })
	if err := tp.agent.Stop(); err != nil {
		t.Fatal(err)
	}
	// With the agent gone the VIP stays on the interface and answers.
	if err := pingOnce(tp.client, "203.0.113.30"); err != nil {
		t.Fatalf("VIP gone while the agent is stopped: %v", err)
	}
	tp.startAgent(t)
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(tp.agent.Log(), "adopted VIPs already on the interface") {
			return fmt.Errorf("restarted agent has not adopted the VIPs yet")
		}
		return nil
	})
	if err := pingOnce(tp.client, "203.0.113.30"); err != nil {
		t.Errorf("VIP gone after restart: %v", err)
	}
	// --remove-vips-on-exit takes everything away on SIGTERM.
	if err := tp.agent.Stop(); err != nil {
		t.Fatal(err)
	}
	tp.startAgent(t, "--remove-vips-on-exit")
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(tp.agent.Log(), "VIP table applied") {
			return fmt.Errorf("agent not ready")
		}
		return nil
	})
	if err := tp.agent.Stop(); err != nil {
		t.Fatal(err)
	}
	if out, err := tp.node.Run(context.Background(), "ip", "link", "show", "kube-lb0"); err == nil {
		t.Errorf("kube-lb0 still exists after --remove-vips-on-exit:\n%s", out)
	}
}

func TestRestartWithBrokenManifestKeepsVIPs(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	path := filepath.Join(tp.svcDir, "web.yaml")
	writeFile(t, path, service("web", "203.0.113.40"))
	tp.startAgent(t)
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error { return pingOnce(tp.client, "203.0.113.40") })
	if err := tp.agent.Stop(); err != nil {
		t.Fatal(err)
	}
	// The file breaks while the agent is away: the new agent has never
	// read it cleanly, so it must not take the VIP away.
	writeFile(t, path, "apiVersion: v1\nkind: Service\nmetadata: [broken\n")
	tp.startAgent(t)
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		if !strings.Contains(tp.agent.Log(), "VIP table applied") {
			return fmt.Errorf("agent has not applied its table yet")
		}
		return nil
	})
	if err := pingOnce(tp.client, "203.0.113.40"); err != nil {
		t.Fatalf("a manifest broken before the restart withdrew its VIP: %v", err)
	}
	// Once the file is fixed and then removed, the VIP goes as usual.
	writeFile(t, path, service("web", "203.0.113.40"))
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(tp.agent.Log(), `msg="applying services" component=standalone vips=1`) {
			return fmt.Errorf("the agent has not read the fixed manifest yet")
		}
		return nil
	})
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
