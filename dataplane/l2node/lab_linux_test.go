package l2node_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/dataplane/l2node"
	"github.com/vipspeaker/vipspeaker/routing"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// childEnv names the node a re-executed test binary runs (see runChild).
const childEnv = "VIPSPEAKER_L2NODE_CHILD"

// TestMain runs a Node in place of the tests when the lab re-executes this
// binary inside a node's network namespace: the membership and the packet
// sockets work in the namespace of the process, as in the agent.
func TestMain(m *testing.M) {
	if node := os.Getenv(childEnv); node != "" {
		if err := runChild(node, os.Getenv(childEnv+"_CONFIG"), os.Getenv(childEnv+"_VIPS")); err != nil {
			fmt.Fprintln(os.Stderr, "l2node child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild does for one node what the agent does: a VIP table on kube-lb0
// holding vips (comma-separated) with pools and modes from the config, and
// a Node following it, until SIGTERM.
func runChild(node, toml, vips string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", node)
	cfg, errs := config.Parse("vipspeaker.toml", []byte(toml))
	if len(errs) > 0 {
		return fmt.Errorf("config: %v", errs)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reg := prometheus.NewRegistry()
	table, err := routing.New(routing.Options{Kind: "ifb", Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	defer table.Close()
	runDir, err := os.MkdirTemp("", "l2node-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(runDir)
	n, err := l2node.New(l2node.Options{Config: cfg, NodeName: node, RunDir: runDir, RemoveOnExit: true, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	tableErr := make(chan error, 1)
	go func() { tableErr <- table.Run(ctx) }()
	<-table.Ready()
	var want []routing.VIP
	for _, s := range strings.Split(vips, ",") {
		want = append(want, routing.VIP{Addr: netip.MustParseAddr(s), Attrs: routing.Attrs{Service: "demo/web"}})
	}
	if err := table.Set(ctx, cfg.WithPools(want)); err != nil {
		return err
	}
	err = n.Run(ctx, table)
	if terr := <-tableErr; err == nil {
		err = terr
	}
	return err
}

// Two nodes run a Node each on one segment with a client: exactly one of
// them answers ARP for the layer2 VIP, and when its process is killed
// (kill -9, no goodbye) the other one answers. The fast path is off, so
// the userspace responder answers.
func TestNodeOwnerAnswersAndSurvivorTakesOver(t *testing.T) {
	l := lab.New(t)
	client, n1, n2 := l.MustHost("client"), l.MustHost("n1"), l.MustHost("n2")
	l.MustBridge(client, "br0", []string{"198.18.0.1/24"})
	l.MustLinkToBridge(n1, "eth0", []string{"198.18.0.11/24"}, client, "br0")
	l.MustLinkToBridge(n2, "eth0", []string{"198.18.0.12/24"}, client, "br0")
	const vip = "203.0.113.10"
	client.MustRun("ip", "route", "add", "203.0.113.0/24", "dev", "br0")

	macs := map[string]string{}
	procs := map[string]*lab.Process{}
	for _, nd := range []struct {
		h    *lab.Host
		peer string
	}{{n1, "198.18.0.12"}, {n2, "198.18.0.11"}} {
		h, name, peer := nd.h, nd.h.Name(), nd.peer
		macs[strings.TrimSpace(h.MustRun("cat", "/sys/class/net/eth0/address"))] = name
		toml := fmt.Sprintf(`[[pools]]
name = "lan"
addresses = ["203.0.113.0/24"]
mode = "layer2"
  [pools.layer2]
  interfaces = ["eth0"]
[layer2]
fast-path = "off"
[membership]
join = [%q]
`, peer)
		p, err := h.Start("l2node", []string{os.Args[0], "-test.run=^$"},
			lab.Env(childEnv+"="+name, childEnv+"_CONFIG="+toml, childEnv+"_VIPS="+vip))
		if err != nil {
			t.Fatal(err)
		}
		procs[name] = p
	}
	probe, err := client.StartARPProber("br0", netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr(vip), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { probe.Stop(0) })

	// Both memberships see each other (before that each node owns the VIP
	// alone, as a node with no live peer must).
	lab.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		for name, p := range procs {
			other := map[string]string{"n1": "n2", "n2": "n1"}[name]
			if p.Exited() {
				return fmt.Errorf("%s exited", name)
			}
			if !strings.Contains(p.Log(), `msg="speaker joined" node=`+name+` component=membership node=`+other) {
				return fmt.Errorf("%s has not seen %s join", name, other)
			}
		}
		return nil
	})
	// Then one owner answers alone (replies from before both had joined
	// do not count).
	joined := time.Now()
	var owner string
	lab.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		since := joined
		r, ok := probe.FirstFrom(since)
		if !ok {
			return fmt.Errorf("no ARP reply for %s in the last second", vip)
		}
		owner = macs[r.MAC]
		if owner == "" {
			return fmt.Errorf("reply from %s, which is neither node", r.MAC)
		}
		if other, ok := probe.FirstFrom(since, r.MAC); ok {
			return fmt.Errorf("both nodes answer (%s and %s)", r.MAC, other.MAC)
		}
		return nil
	})
	for _, p := range procs {
		if p.Exited() {
			t.Fatalf("%s exited:\n%s", p.Host().Name(), p.Log())
		}
	}
	// Steady: for the next 20 probes, only the owner answers.
	start, sent := time.Now(), probe.Sent()
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if n := probe.Sent() - sent; n < 20 {
			return fmt.Errorf("%d probes sent", n)
		}
		return nil
	})
	var ownerMAC string
	for m, n := range macs {
		if n == owner {
			ownerMAC = m
		}
	}
	if r, ok := probe.FirstFrom(start, ownerMAC); ok {
		t.Fatalf("%s (not the owner %s) answered at %s", macs[r.MAC], owner, r.At.Format(time.RFC3339Nano))
	}

	// The owner's process dies without a goodbye: the survivor takes over.
	if err := procs[owner].Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	lab.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		if _, ok := probe.FirstFrom(killed, ownerMAC); !ok {
			return fmt.Errorf("no reply from the survivor since %s was killed", owner)
		}
		return nil
	})
	r, _ := probe.FirstFrom(killed, ownerMAC)
	t.Logf("%s killed; %s answered after %v", owner, macs[r.MAC], r.At.Sub(killed).Round(time.Millisecond))
}
