// Command demo builds the `make demo` lab: a client, a router and two nodes,
// each a network namespace, with the real vipspeaker agent running on both
// nodes in standalone mode, reading the example Services of the repository.
// It then shows the VIPs on kube-lb0 and the client reaching them, and
// leaves the lab running until `make demo-down` (demo down).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

const (
	labName  = "vsdemo"
	stateDir = "/run/vipspeaker-demo"
)

func main() {
	if len(os.Args) != 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: demo up|down")
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root (it creates network namespaces)")
		os.Exit(1)
	}
	var err error
	if os.Args[1] == "up" {
		err = up()
	} else {
		err = lab.Teardown(labName, stateDir)
		if err == nil {
			fmt.Println("The demo lab is gone: namespaces, processes and files removed.")
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func up() error {
	root, err := lab.ModuleRoot()
	if err != nil {
		return err
	}
	bin := filepath.Join(root, "bin", "vipspeaker")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s not built (run `make demo`, which builds it first): %w", bin, err)
	}
	l, err := lab.NewPersistent(labName, stateDir)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		// Say what the agents said before everything is removed.
		for _, p := range l.Processes() {
			if strings.HasPrefix(p.Name(), "vipspeaker") {
				fmt.Fprintf(os.Stderr, "--- %s on %s (%s) ---\n%s\n", p.Name(), p.Host().Name(), p.LogPath(), lab.Tail(p.Log(), 20))
			}
		}
		_ = lab.Teardown(labName, stateDir)
		return err
	}

	step("Building the lab: one router, two nodes and a client, each a network namespace")
	tp, err := lab.BuildRouted(l, lab.RoutedOptions{Nodes: 2, Client: true, Bin: bin})
	if err != nil {
		return fail(err)
	}
	r := tp.Router
	say("    %-7s %s, %s  <->  router %s", "client", "198.18.0.2/24", "2001:db8:18::2/64", "198.18.0.1")
	for _, n := range tp.Nodes {
		say("    %-7s %s/30, %s/64  <->  router %s", n.Host.Name(), n.Addr4, n.Addr6, n.Peer4)
	}

	step("Starting FRR on the router: bgpd peers with both nodes (AS 65000 <-> AS 65001)")
	if err := lab.HaveFRR(); err != nil {
		return fail(fmt.Errorf("the demo router runs FRR: %w", err))
	}
	// One eBGP session per node carrying IPv4 and IPv6, graceful restart,
	// and ECMP over both nodes.
	frr, err := tp.StartFRR(lab.FRRBGPConf{AS: 65000, RouterID: "198.18.0.1", Global: []string{"bgp graceful-restart"},
		MaximumPaths: 8, Neighbors: tp.FRRNeighbors(65001)}, "")
	if err != nil {
		return fail(err)
	}
	say("    router: zebra + bgpd, neighbors 198.18.1.2 (node1) and 198.18.2.2 (node2), graceful restart, ECMP")

	step("Starting `vipspeaker run` on node1 and node2 (standalone mode, embedded GoBGP)")
	svcDir := filepath.Join(root, "deploy", "examples", "services")
	toml, err := os.ReadFile(filepath.Join(root, "deploy", "examples", "demo", "vipspeaker.toml"))
	if err != nil {
		return fail(err)
	}
	for _, n := range tp.Nodes {
		// gobgp.conf: AS 65001, the router as its one neighbor, IPv4 and
		// IPv6, graceful restart; no router-id, so the node's own address.
		nb := n.RouterGoBGP()
		nb.GracefulRestart = true
		n.ServicesDir, n.LogLevel = svcDir, "info"
		for _, f := range [][2]string{{"vipspeaker.toml", string(toml)}, {"gobgp.conf", lab.GoBGPConf{AS: 65001, Neighbors: []lab.GoBGPNeighbor{nb}}.String()}} {
			if err := n.WriteConfig(f[0], f[1]); err != nil {
				return fail(err)
			}
		}
		p, err := n.Start()
		if err != nil {
			return fail(err)
		}
		say("    %s: vipspeaker %s\n           log: %s", n.Host.Name(), strings.Join(n.Args()[1:], " "), p.LogPath())
	}
	say("    Both read the Services in %s:", svcDir)
	entries, _ := os.ReadDir(svcDir)
	for _, e := range entries {
		say("      - %s", e.Name())
	}
	say("    and peer with the router as gobgp.conf in %s/nodeN/config says.", l.Dir())

	step("The VIPs on each node's kube-lb0 (the kernel is vipspeaker's source of truth)")
	vips := []string{"203.0.113.10", "203.0.113.11", "2001:db8:100::10"}
	for _, node := range tp.Nodes {
		h, n := node.Host, node.Host.Name()
		err := lab.Poll(15*time.Second, 100*time.Millisecond, func() error {
			out, err := h.Run(context.Background(), "ip", "-br", "addr", "show", "dev", "kube-lb0")
			if err != nil {
				return err
			}
			for _, v := range vips {
				if !strings.Contains(out, v) {
					return fmt.Errorf("%s not on %s's kube-lb0 yet: %s", v, n, out)
				}
			}
			return nil
		})
		if err != nil {
			return fail(err)
		}
		out, _ := h.Run(context.Background(), "ip", "-br", "addr", "show", "dev", "kube-lb0")
		say("    %s$ ip -br addr show dev kube-lb0\n    %s", n, strings.TrimSpace(out))
	}

	step("The router learns every VIP over BGP from both nodes (ECMP)")
	err = lab.Poll(30*time.Second, 200*time.Millisecond, func() error {
		for _, fam := range []string{"-4", "-6"} {
			out, err := r.Run(context.Background(), "ip", fam, "route", "show", "proto", "bgp")
			if err != nil {
				return err
			}
			for _, v := range vips {
				if strings.Contains(v, ":") == (fam == "-6") && !strings.Contains(out, v) {
					return fmt.Errorf("router has no BGP route for %s yet", v)
				}
			}
			if strings.Count(out, "nexthop via") < 2*len(strings.Split(strings.TrimSpace(out), "\n"))/3 {
				return fmt.Errorf("router's BGP routes are not ECMP yet:\n%s", out)
			}
		}
		return nil
	})
	if err != nil {
		out, _ := frr.Vtysh("show bgp summary")
		return fail(fmt.Errorf("%w\nFRR says:\n%s", err, out))
	}
	out, _ := frr.Vtysh("show bgp summary")
	say("    router# show bgp summary\n%s", indent(out))
	for _, fam := range []string{"-4", "-6"} {
		out, _ := r.Run(context.Background(), "ip", fam, "route", "show", "proto", "bgp")
		say("    router$ ip %s route show proto bgp\n%s", fam, indent(out))
	}
	out, _ = frr.Vtysh("show bgp ipv4 unicast 203.0.113.10/32")
	say("    router# show bgp ipv4 unicast 203.0.113.10/32   (communities from the Service's annotation)\n%s", indent(out))

	step("The client reaches every VIP")
	var errs []error
	for _, v := range vips {
		if err := tp.Client.Ping(v); err != nil {
			errs = append(errs, err)
			say("    client$ ping %s  -> FAILED: %v", v, err)
			continue
		}
		say("    client$ ping %s  -> reply", v)
	}
	if len(errs) > 0 {
		return fail(errors.Join(errs...))
	}

	step("What this shows")
	say(`    Each node runs the real agent. It read the Service manifests, took their
    vipspeaker.io/addresses annotation as the VIPs, and put them on kube-lb0
    (an ifb interface here, because this kernel has no dummy link type).
    Its embedded GoBGP announces one path per VIP to the router, next hop the
    node itself, with the communities the Service asked for. FRR on the router
    installs each VIP with both nodes as next hops, and the client's pings are
    answered by whichever node the router picks.

    Try it:
      ip netns exec %[1]s-client ping 203.0.113.10
      ip netns exec %[1]s-node1 bin/vipspeaker status --run-dir %[2]s/node1/run
      ip netns exec %[1]s-node1 ip addr del 203.0.113.10/32 dev kube-lb0   # vipspeaker puts it back at once
      ip netns exec %[1]s-router vtysh -N %[1]s-router -c 'show bgp ipv4 unicast'
      edit or remove a file in deploy/examples/services/ and watch the router follow
      logs: %[2]s

    make demo-down removes everything.`, labName, stateDir)
	return nil
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("      " + line + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}
