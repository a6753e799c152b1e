package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	frrEtcRoot = "/etc/frr"
	frrRunRoot = "/var/run/frr"
	frrBinDir  = "/usr/lib/frr"
)

// FRRConfig says which FRR daemons to run on a host and with what config.
// Daemons run in the foreground under the lab (output in the lab folder),
// with `-N <namespace>`, so their config is in /etc/frr/<namespace> and
// their sockets in /var/run/frr/<namespace>; both go away with the lab.
type FRRConfig struct {
	// Daemons to start, in order. Default: zebra, then bfdd when BFDd is
	// set, staticd when Staticd is set, then bgpd. zebra is always first.
	Daemons []string
	// Per-daemon config text. Remember `no bgp ebgp-requires-policy` and
	// `timers connect 5` (see LAB.md).
	Zebra, BGPd, BFDd, Staticd string
	// Other holds config for daemons without a field here (ospfd, ...).
	Other map[string]string
	// FRRConf is an integrated frr.conf, loaded with `vtysh -b` once every
	// daemon is up. It may be used alone or with the per-daemon configs.
	FRRConf string
	// LogLevel of the daemons' stdout logging (default "informational").
	LogLevel string
}

// FRR is a set of FRR daemons running on one host.
type FRR struct {
	host  *Host
	cfg   FRRConfig
	etc   string
	run   string
	procs map[string]*Process
	order []string
}

// HaveFRR reports whether FRR's zebra, bgpd and vtysh are installed.
func HaveFRR() error {
	for _, p := range []string{filepath.Join(frrBinDir, "zebra"), filepath.Join(frrBinDir, "bgpd")} {
		if !isExecutable(p) {
			return fmt.Errorf("frr: %s %w (apt-get install frr)", p, errNotInstalled)
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		return fmt.Errorf("frr: vtysh %w (apt-get install frr)", errNotInstalled)
	}
	if _, err := user.Lookup("frr"); err != nil {
		return fmt.Errorf("frr: user frr: %w", err)
	}
	return nil
}

// StartFRR writes the configs to /etc/frr/<namespace>, starts the daemons
// inside the host's namespace and waits until each answers on its vty
// socket.
func (h *Host) StartFRR(cfg FRRConfig) (*FRR, error) {
	if err := HaveFRR(); err != nil {
		return nil, err
	}
	daemons := cfg.Daemons
	if len(daemons) == 0 {
		daemons = []string{"zebra"}
		if cfg.BFDd != "" {
			daemons = append(daemons, "bfdd")
		}
		if cfg.Staticd != "" {
			daemons = append(daemons, "staticd")
		}
		daemons = append(daemons, "bgpd")
	}
	if daemons[0] != "zebra" {
		daemons = append([]string{"zebra"}, removeString(daemons, "zebra")...)
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "informational"
	}
	f := &FRR{
		host:  h,
		cfg:   cfg,
		etc:   filepath.Join(frrEtcRoot, h.netns),
		run:   filepath.Join(frrRunRoot, h.netns),
		procs: map[string]*Process{},
		order: daemons,
	}
	uid, gid, err := frrIDs()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{f.etc, f.run} {
		if err := h.lab.addDir(d); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("frr on %s: %w", h.name, err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			return nil, fmt.Errorf("frr on %s: %w", h.name, err)
		}
	}
	texts := map[string]string{"zebra": cfg.Zebra, "bgpd": cfg.BGPd, "bfdd": cfg.BFDd, "staticd": cfg.Staticd}
	for k, v := range cfg.Other {
		texts[k] = v
	}
	files := map[string]string{"vtysh.conf": ""}
	for _, d := range daemons {
		files[d+".conf"] = texts[d]
	}
	if cfg.FRRConf != "" {
		files["frr.conf"] = cfg.FRRConf
	}
	for name, text := range files {
		p := filepath.Join(f.etc, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return nil, fmt.Errorf("frr on %s: %w", h.name, err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return nil, fmt.Errorf("frr on %s: %w", h.name, err)
		}
	}
	for _, d := range daemons {
		if err := f.startDaemon(d); err != nil {
			return nil, err
		}
	}
	if cfg.FRRConf != "" {
		if err := f.loadIntegrated(""); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *FRR) startDaemon(d string) error {
	h := f.host
	bin := filepath.Join(frrBinDir, d)
	if !isExecutable(bin) {
		return fmt.Errorf("frr %s on %s: %s %w", d, h.name, bin, errNotInstalled)
	}
	argv := []string{bin,
		"-N", h.netns,
		"-f", filepath.Join(f.etc, d+".conf"),
		"-i", filepath.Join(f.run, d+".pid"),
		"-P", "0", // no TCP vty
		"--log", "stdout",
		"--log-level", f.cfg.LogLevel,
		"--limit-fds", "1024",
	}
	// A socket left by an earlier run of the daemon would look ready.
	for _, s := range []string{d + ".vty", d + ".pid"} {
		_ = os.Remove(filepath.Join(f.run, s))
	}
	p, err := h.Start("frr-"+d, argv, StopTimeout(3*time.Second))
	if err != nil {
		return err
	}
	f.procs[d] = p
	// Ready once the daemon answers on its vty socket (zebra also needs
	// its zserv socket).
	err = Poll(15*time.Second, 25*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("exited: %w", ErrGiveUp)
		}
		if d == "zebra" {
			if _, err := os.Stat(filepath.Join(f.run, "zserv.api")); err != nil {
				return err
			}
		}
		if _, err := os.Stat(filepath.Join(f.run, d+".vty")); err != nil {
			return err
		}
		_, err := f.vtysh([]string{"-d", d}, "show version")
		return err
	})
	if err != nil {
		return fmt.Errorf("frr %s on %s not ready: %w\n%s", d, h.name, err, Tail(p.Log(), 20))
	}
	return nil
}

// loadIntegrated sends frr.conf to the daemons (all, or the named one).
func (f *FRR) loadIntegrated(daemon string) error {
	args := []string{"-f", filepath.Join(f.etc, "frr.conf")}
	if daemon != "" {
		args = append([]string{"-d", daemon}, args...)
	}
	if _, err := f.vtysh(args); err != nil {
		return fmt.Errorf("frr on %s: load frr.conf: %w", f.host.name, err)
	}
	return nil
}

// Host is the host FRR runs on.
func (f *FRR) Host() *Host { return f.host }

// Renice sets the scheduling niceness of every daemon's threads (each
// daemon is its own process group; threads started later inherit it). A
// lab whose router shares the machine's cores with many agents gives it
// the head start a router with CPUs of its own has, so that what is
// measured is the agents and not a starved router.
func (f *FRR) Renice(nice int) error {
	for d, p := range f.procs {
		if err := syscall.Setpriority(syscall.PRIO_PGRP, p.pgid, nice); err != nil {
			return fmt.Errorf("renice frr %s: %w", d, err)
		}
	}
	return nil
}

// Process returns the process of one daemon ("zebra", "bgpd", ...), or nil.
func (f *FRR) Process(daemon string) *Process { return f.procs[daemon] }

// ConfigDir is /etc/frr/<namespace>.
func (f *FRR) ConfigDir() string { return f.etc }

// Vtysh runs vtysh commands (each one a -c) against the host's daemons and
// returns the output. Config works too: Vtysh("configure terminal",
// "router bgp 65001", "neighbor 198.18.0.1 shutdown").
func (f *FRR) Vtysh(cmds ...string) (string, error) {
	return f.vtysh(nil, cmds...)
}

func (f *FRR) vtysh(opts []string, cmds ...string) (string, error) {
	args := append([]string{"-N", f.host.netns}, opts...)
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "vtysh", args...).CombinedOutput()
	if err != nil {
		what := strings.Join(cmds, "; ")
		if len(cmds) == 0 {
			what = strings.Join(opts, " ")
		}
		return string(out), fmt.Errorf("vtysh %q on %s: %w: %s", what, f.host.name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// VtyshJSON runs one show command (add "json" yourself) and decodes its
// output into v.
func (f *FRR) VtyshJSON(cmd string, v any) error {
	out, err := f.Vtysh(cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("vtysh %q on %s: decode: %w: %.200s", cmd, f.host.name, err, out)
	}
	return nil
}

// PeerState returns the BGP state of a neighbor ("Established", "Active",
// ...).
func (f *FRR) PeerState(peer string) (string, error) {
	var m map[string]struct {
		BGPState string `json:"bgpState"`
	}
	if err := f.VtyshJSON("show bgp neighbors "+peer+" json", &m); err != nil {
		return "", err
	}
	n, ok := m[peer]
	if !ok {
		return "", fmt.Errorf("frr on %s: no neighbor %s", f.host.name, peer)
	}
	return n.BGPState, nil
}

// WaitEstablished waits until the BGP session with peer is Established.
func (f *FRR) WaitEstablished(peer string, timeout time.Duration) error {
	return Poll(timeout, 100*time.Millisecond, func() error {
		s, err := f.PeerState(peer)
		if err != nil {
			return err
		}
		if s != "Established" {
			return fmt.Errorf("frr on %s: neighbor %s is %s", f.host.name, peer, s)
		}
		return nil
	})
}

// BGPPath is one path of FRR's BGP table.
type BGPPath struct {
	NextHops []netip.Addr
	ASPath   string
	Best     bool
}

// BGPRoutes returns FRR's BGP table for "ipv4" or "ipv6" unicast: prefix to
// its valid paths, the best first.
func (f *FRR) BGPRoutes(afi string) (map[netip.Prefix][]BGPPath, error) {
	var doc struct {
		Routes map[string][]struct {
			Valid    bool   `json:"valid"`
			Bestpath bool   `json:"bestpath"`
			Path     string `json:"path"`
			NextHops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"routes"`
	}
	if err := f.VtyshJSON("show bgp "+afi+" unicast json", &doc); err != nil {
		return nil, err
	}
	out := map[netip.Prefix][]BGPPath{}
	for k, paths := range doc.Routes {
		pfx, err := netip.ParsePrefix(k)
		if err != nil {
			return nil, fmt.Errorf("frr on %s: prefix %q: %w", f.host.name, k, err)
		}
		for _, p := range paths {
			if !p.Valid {
				continue
			}
			bp := BGPPath{ASPath: p.Path, Best: p.Bestpath}
			for _, nh := range p.NextHops {
				if a, err := netip.ParseAddr(nh.IP); err == nil {
					bp.NextHops = append(bp.NextHops, a)
				}
			}
			if bp.Best {
				out[pfx] = append([]BGPPath{bp}, out[pfx]...)
			} else {
				out[pfx] = append(out[pfx], bp)
			}
		}
	}
	return out, nil
}

// RoutesIPv4 returns, for every IPv4 unicast prefix of FRR's BGP table, the
// next hops of its best path.
func (f *FRR) RoutesIPv4() (map[netip.Prefix][]netip.Addr, error) { return f.bestNextHops("ipv4") }

// RoutesIPv6 is RoutesIPv4 for IPv6 unicast.
func (f *FRR) RoutesIPv6() (map[netip.Prefix][]netip.Addr, error) { return f.bestNextHops("ipv6") }

func (f *FRR) bestNextHops(afi string) (map[netip.Prefix][]netip.Addr, error) {
	rs, err := f.BGPRoutes(afi)
	if err != nil {
		return nil, err
	}
	out := make(map[netip.Prefix][]netip.Addr, len(rs))
	for p, paths := range rs {
		if len(paths) > 0 && paths[0].Best {
			out[p] = paths[0].NextHops
		}
	}
	return out, nil
}

// Stop stops every daemon (bgpd first, zebra last).
func (f *FRR) Stop() error {
	var errs []error
	for i := len(f.order) - 1; i >= 0; i-- {
		if p := f.procs[f.order[i]]; p != nil {
			if err := p.Stop(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Restart stops one daemon and starts it again with the same config
// (frr.conf too, when given). Config made since through Vtysh is lost.
func (f *FRR) Restart(daemon string) error {
	p := f.procs[daemon]
	if p == nil {
		return fmt.Errorf("frr on %s: %s is not running", f.host.name, daemon)
	}
	if err := p.Stop(); err != nil {
		return err
	}
	if err := f.startDaemon(daemon); err != nil {
		return err
	}
	if f.cfg.FRRConf != "" {
		return f.loadIntegrated(daemon)
	}
	return nil
}

func frrIDs() (int, int, error) {
	u, err := user.Lookup("frr")
	if err != nil {
		return 0, 0, fmt.Errorf("frr: user frr: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("frr: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("frr: gid %q: %w", u.Gid, err)
	}
	return uid, gid, nil
}

func removeString(list []string, s string) []string {
	out := list[:0:0]
	for _, v := range list {
		if v != s {
			out = append(out, v)
		}
	}
	return out
}
