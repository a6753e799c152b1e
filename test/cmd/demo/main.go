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
				fmt.Fprintf(os.Stderr, "--- %s on %s (%s) ---\n%s\n", p.Name(), p.Host().Name(), p.LogPath(), lastLines(p.Log(), 20))
			}
		}
		_ = lab.Teardown(labName, stateDir)
		return err
	}

	step("Building the lab: one router, two nodes and a client, each a network namespace")
	hosts := map[string]*lab.Host{}
	for _, n := range []string{"router", "node1", "node2", "client"} {
		h, err := l.Host(n)
		if err != nil {
			return fail(err)
		}
		hosts[n] = h
	}
	r := hosts["router"]
	links := []struct {
		h          *lab.Host
		ifn, rIf   string
		addr, rAdr []string
	}{
		{hosts["client"], "eth0", "client", []string{"198.18.0.2/24", "2001:db8:18::2/64"}, []string{"198.18.0.1/24", "2001:db8:18::1/64"}},
		{hosts["node1"], "eth0", "node1", []string{"198.18.1.2/24", "2001:db8:18:1::2/64"}, []string{"198.18.1.1/24", "2001:db8:18:1::1/64"}},
		{hosts["node2"], "eth0", "node2", []string{"198.18.2.2/24", "2001:db8:18:2::2/64"}, []string{"198.18.2.1/24", "2001:db8:18:2::1/64"}},
	}
	for _, k := range links {
		if err := l.Link(k.h, k.ifn, k.addr, r, k.rIf, k.rAdr); err != nil {
			return fail(err)
		}
		gw4 := strings.Split(k.rAdr[0], "/")[0]
		gw6 := strings.Split(k.rAdr[1], "/")[0]
		if err := k.h.AddRoute("default", gw4); err != nil {
			return fail(err)
		}
		if err := k.h.AddRoute("default6", gw6); err != nil {
			return fail(err)
		}
		say("    %-7s %s, %s  <->  router %s", k.h.Name(), k.addr[0], k.addr[1], k.rAdr[0])
	}
	if err := r.EnableForwarding(); err != nil {
		return fail(err)
	}

	step("Starting FRR on the router: bgpd peers with both nodes (AS 65000 <-> AS 65001)")
	if err := lab.HaveFRR(); err != nil {
		return fail(fmt.Errorf("the demo router runs FRR: %w", err))
	}
	frr, err := r.StartFRR(lab.FRRConfig{
		Zebra: "hostname router\nlog stdout informational\n",
		BGPd:  routerBGPd,
	})
	if err != nil {
		return fail(err)
	}
	say("    router: zebra + bgpd, neighbors 198.18.1.2 (node1) and 198.18.2.2 (node2), graceful restart, ECMP")

	step("Starting `vipspeaker run` on node1 and node2 (standalone mode, embedded GoBGP)")
	svcDir := filepath.Join(root, "deploy", "examples", "services")
	for _, n := range []string{"node1", "node2"} {
		cfgDir := filepath.Join(stateDir, "config-"+n)
		if err := os.MkdirAll(cfgDir, 0o755); err != nil {
			return fail(err)
		}
		toml, err := os.ReadFile(filepath.Join(root, "deploy", "examples", "demo", "vipspeaker.toml"))
		if err != nil {
			return fail(err)
		}
		if err := os.WriteFile(filepath.Join(cfgDir, "vipspeaker.toml"), toml, 0o644); err != nil {
			return fail(err)
		}
		peer := map[string]string{"node1": "198.18.1.1", "node2": "198.18.2.1"}[n]
		conf := fmt.Sprintf(nodeGoBGPConf, peer)
		if err := os.WriteFile(filepath.Join(cfgDir, "gobgp.conf"), []byte(conf), 0o644); err != nil {
			return fail(err)
		}
		runDir := filepath.Join(stateDir, "run-"+n)
		argv := []string{bin, "run", "--services-dir", svcDir, "--config-dir", cfgDir,
			"--node-name", n, "--run-dir", runDir}
		p, err := hosts[n].Start("vipspeaker", argv)
		if err != nil {
			return fail(err)
		}
		say("    %s: vipspeaker %s\n           log: %s", n, strings.Join(argv[1:], " "), p.LogPath())
	}
	say("    Both read the Services in %s:", svcDir)
	entries, _ := os.ReadDir(svcDir)
	for _, e := range entries {
		say("      - %s", e.Name())
	}
	say("    and peer with the router as gobgp.conf in %s/config-nodeN says.", stateDir)

	step("The VIPs on each node's kube-lb0 (the kernel is vipspeaker's source of truth)")
	vips := []string{"203.0.113.10", "203.0.113.11", "2001:db8:100::10"}
	for _, n := range []string{"node1", "node2"} {
		h := hosts[n]
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
		if err := hosts["client"].Ping(v); err != nil {
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
      ip netns exec %[1]s-node1 bin/vipspeaker status --run-dir %[2]s/run-node1
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

// routerBGPd is the demo router's bgpd: one eBGP session per node carrying
// IPv4 and IPv6, graceful restart, and ECMP over both nodes.
const routerBGPd = `frr defaults traditional
hostname router
log stdout informational
!
router bgp 65000
 bgp router-id 198.18.0.1
 no bgp ebgp-requires-policy
 bgp graceful-restart
 neighbor 198.18.1.2 remote-as 65001
 neighbor 198.18.1.2 timers connect 1
 neighbor 198.18.2.2 remote-as 65001
 neighbor 198.18.2.2 timers connect 1
 address-family ipv4 unicast
  maximum-paths 8
 exit-address-family
 address-family ipv6 unicast
  maximum-paths 8
  neighbor 198.18.1.2 activate
  neighbor 198.18.2.2 activate
 exit-address-family
!
`

// nodeGoBGPConf is a node's gobgp.conf (GoBGP's own TOML): AS 65001, the
// router as its one neighbor (%s), IPv4 and IPv6, graceful restart. No
// router-id: the node's own address is used.
const nodeGoBGPConf = `[global.config]
  as = 65001

[[neighbors]]
  [neighbors.config]
    neighbor-address = "%s"
    peer-as = 65000
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
    idle-hold-time-after-reset = 1
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 30
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
`

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
