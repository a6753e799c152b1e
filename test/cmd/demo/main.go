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

	step("Starting `vipspeaker run` on node1 and node2 (standalone mode)")
	svcDir := filepath.Join(root, "deploy", "examples", "services")
	cfgDir := filepath.Join(root, "deploy", "examples", "demo")
	for _, n := range []string{"node1", "node2"} {
		argv := []string{bin, "run", "--services-dir", svcDir, "--config-dir", cfgDir,
			"--node-name", n, "--run-dir", filepath.Join(stateDir, "run-"+n)}
		p, err := hosts[n].Start("vipspeaker", argv)
		if err != nil {
			return fail(err)
		}
		say("    %s: %s (log: %s)", n, strings.Join(argv[1:], " "), p.LogPath())
	}
	say("    Both read the Services in %s:", svcDir)
	entries, _ := os.ReadDir(svcDir)
	for _, e := range entries {
		say("      - %s", e.Name())
	}

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

	step("The router sends the VIPs to both nodes (ECMP)")
	// Until the BGP speaker is wired in, the router has static routes;
	// with BGP the same routes are learned from the nodes.
	for _, rt := range [][]string{
		{"203.0.113.0/24", "198.18.1.2", "198.18.2.2"},
		{"2001:db8:100::/64", "2001:db8:18:1::2", "2001:db8:18:2::2"},
	} {
		if err := r.AddRoute(rt[0], rt[1:]...); err != nil {
			return fail(err)
		}
	}
	for _, fam := range []string{"-4", "-6"} {
		out, _ := r.Run(context.Background(), "ip", fam, "route", "show", "proto", "static")
		if strings.TrimSpace(out) == "" {
			out, _ = r.Run(context.Background(), "ip", fam, "route")
		}
		say("    router$ ip %s route\n%s", fam, indent(out))
	}

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
    The router forwards the VIPs to both nodes, and the client's pings are
    answered by whichever node the router picks.

    Try it:
      ip netns exec %[1]s-client ping 203.0.113.10
      ip netns exec %[1]s-node1 ip addr del 203.0.113.10/32 dev kube-lb0   # vipspeaker puts it back at once
      ip netns exec %[1]s-node1 ip -br addr show dev kube-lb0
      edit or remove a file in deploy/examples/services/ and watch the VIPs follow
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
