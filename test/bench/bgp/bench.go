// Package bgpbench measures the BGP side of vipspeaker in a lab, with the
// real agent binary and a real FRR router, beside gobgpd of the same GoBGP
// version fed by its own CLI as the baseline:
//
//   - VIP added (a Service manifest written) → route in the router's kernel,
//     p50 and p99 over 200 additions; gobgpd: `gobgp global rib add` → route;
//   - policy change (gobgp.conf rewritten) → new MED in FRR's table, and the
//     session resets it caused (none expected); gobgpd: `gobgp policy
//     statement … add action med set` + `gobgp neighbor … softresetout`;
//   - 10,000 VIPs from a cold start → all in FRR's table, and the agent's RSS.
//
// Run is called by the project's bench command (`make bench`); it needs root.
package bgpbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vipspeaker/vipspeaker/test/bench/report"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

type bench struct {
	l      *lab.Lab
	router *lab.Host
	frr    *lab.FRR
	agent  *lab.Host
	base   *lab.Host
	bin    string
	a      *lab.Agent // on the agent's node
	conf   string
	svc    string
	proc   *lab.Process
}

const (
	agentAddr = "198.18.1.2"
	agentPeer = "198.18.1.1"
	baseAddr  = "198.18.2.2"
	basePeer  = "198.18.2.1"
)

// Run measures and adds lines and figures to r. With only, just the sections
// whose name (vip, policy, cold) contains one of them run.
func Run(r *report.Report, only ...string) (err error) {
	only = slices.DeleteFunc(only, func(s string) bool { return s == "" })
	want := func(name string) bool {
		if len(only) == 0 {
			return true
		}
		for _, o := range only {
			if o != "" && strings.Contains(name, o) {
				return true
			}
		}
		return false
	}
	bin, err := lab.BuildBinary("./cmd/vipspeaker")
	if err != nil {
		return err
	}
	if _, _, err := lab.GoBGPBinaries(); err != nil {
		return err
	}
	state, err := os.MkdirTemp("", "vsbgpbench-")
	if err != nil {
		return err
	}
	l, err := lab.NewPersistent("vsbgpbench", state)
	if err != nil {
		return err
	}
	defer func() {
		if terr := lab.Teardown("vsbgpbench", state); terr != nil && err == nil {
			err = terr
		}
	}()
	b := &bench{l: l, bin: bin}
	if err := b.setup(); err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(b.conf, "gobgp.conf"), b.agentConf(50)); err != nil {
		return err
	}
	if want("vip") || want("policy") {
		if err := b.vipLatency(r); err != nil {
			return fmt.Errorf("vip latency: %w", err)
		}
	}
	if want("policy") {
		if err := b.policyLatency(r); err != nil {
			return fmt.Errorf("policy latency: %w", err)
		}
	}
	if want("cold") {
		if err := b.coldStart(r, 10000); err != nil {
			return fmt.Errorf("cold start: %w", err)
		}
	}
	return nil
}

// setup builds the lab: the agent's node (node1) and gobgpd's (node2),
// each linked to the router, which runs FRR in AS 65000.
func (b *bench) setup() error {
	tp, err := lab.BuildRouted(b.l, lab.RoutedOptions{Nodes: 2, Bin: b.bin})
	if err != nil {
		return err
	}
	b.router, b.agent, b.base, b.a = tp.Router, tp.Nodes[0].Host, tp.Nodes[1].Host, tp.Nodes[0].Agent
	b.conf, b.svc = b.a.ConfigDir, b.a.ServicesDir
	nbs := tp.FRRNeighbors(65001)
	nbs[0].IPv6, nbs[1].IPv6, nbs[1].AS = false, false, 65002
	b.frr, err = tp.StartFRR(lab.FRRBGPConf{AS: 65000, RouterID: "198.18.0.1", Neighbors: nbs}, "")
	return err
}

func (b *bench) agentConf(med int) string {
	return lab.GoBGPConf{AS: 65001, Neighbors: []lab.GoBGPNeighbor{{Address: agentPeer, PeerAS: 65000, ConnectRetry: 1}},
		Extra: lab.GoBGPPolicy{Name: "vips", Default: "accept-route",
			CommunitySets: []lab.GoBGPSet{{Name: "gold", Members: []string{"65000:100"}}},
			Statements:    []lab.GoBGPStatement{{Name: "gold", CommunitySet: "gold", Disposition: "accept-route", SetMED: fmt.Sprint(med)}},
		}.String()}.String()
}

func writeAtomic(path, content string) error { return lab.WriteFileAtomic(path, content) }

func service(name, communities string, addrs []string) string {
	return lab.ServiceFile{Name: name, Namespace: "bench", Addresses: addrs, Communities: communities}.String()
}

func (b *bench) startAgent() error {
	p, err := b.a.Start()
	if err != nil {
		return err
	}
	b.proc = p
	return nil
}

// waitRoute polls the router's kernel every millisecond for prefix.
func (b *bench) waitRoute(prefix string, timeout time.Duration) error {
	return lab.Poll(timeout, 5*time.Millisecond, func() error {
		_, ok, err := b.router.KernelRoute(prefix)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no route to %s", prefix)
		}
		return nil
	})
}

func (b *bench) vipLatency(r *report.Report) error {
	const n = 200
	if err := writeAtomic(filepath.Join(b.conf, "gobgp.conf"), b.agentConf(50)); err != nil {
		return err
	}
	if err := b.startAgent(); err != nil {
		return err
	}
	if err := b.frr.WaitEstablished(agentAddr, 30*time.Second); err != nil {
		return err
	}
	var agent []time.Duration
	seen := map[string]time.Time{} // VIP → when its route was in the router's kernel
	for i := range n {
		a := fmt.Sprintf("203.0.113.%d", i+1)
		start := time.Now()
		if err := writeAtomic(filepath.Join(b.svc, fmt.Sprintf("s%03d.yaml", i)), service(fmt.Sprintf("s%03d", i), "65000:100", []string{a})); err != nil {
			return err
		}
		if err := b.waitRoute(a+"/32", 10*time.Second); err != nil {
			return err
		}
		agent = append(agent, time.Since(start))
		seen[a] = time.Now()
	}
	r.Printf("- VIP added (Service manifest written) → route in the router's kernel, %d additions: p50 %s, p99 %s, max %s (targets p50 ≤ 50 ms, p99 ≤ 150 ms)",
		len(agent), ms(pct(agent, 50)), ms(pct(agent, 99)), ms(pct(agent, 100)))
	inAgent, atRouter := splitFromLog(b.proc.Log(), seen)
	if len(inAgent) > 0 {
		r.Printf("  - of which VIP in the table → UPDATE sent by the agent (its log, ms resolution): p50 %s, p99 %s; UPDATE sent → route in the router's kernel (FRR bgpd + zebra): p50 %s, p99 %s; the rest is the manifest watcher (100 ms debounce) and the VIP table",
			ms(pct(inAgent, 50)), ms(pct(inAgent, 99)), ms(pct(atRouter, 50)), ms(pct(atRouter, 99)))
	}

	// baseline: gobgpd fed by its CLI
	g, err := b.base.StartGoBGPd(lab.GoBGPConf{AS: 65002, RouterID: baseAddr,
		Neighbors: []lab.GoBGPNeighbor{{Address: basePeer, PeerAS: 65000, ConnectRetry: 1}}}.String(), lab.GoBGPdOptions{LogLevel: "warn"})
	if err != nil {
		return err
	}
	if err := b.frr.WaitEstablished(baseAddr, 30*time.Second); err != nil {
		return err
	}
	var base, cli []time.Duration
	for i := range n {
		a := fmt.Sprintf("198.51.100.%d", i+1)
		start := time.Now()
		if _, err := g.CLI("global", "rib", "add", a+"/32", "-a", "ipv4"); err != nil {
			return err
		}
		cli = append(cli, time.Since(start))
		if err := b.waitRoute(a+"/32", 10*time.Second); err != nil {
			return err
		}
		base = append(base, time.Since(start))
	}
	r.Printf("- baseline, gobgpd %s fed by `gobgp global rib add` → route in the router's kernel, %d additions: p50 %s, p99 %s (of which the CLI call p50 %s)",
		lab.GoBGPVersion(), len(base), ms(pct(base, 50)), ms(pct(base, 99)), ms(pct(cli, 50)))
	r.Printf("- ratio agent/gobgpd p50: %.2f", float64(pct(agent, 50))/float64(pct(base, 50)))
	r.Add(report.Figure{Name: "VIP added (manifest written) → route in the router's kernel", Unit: "ms", Samples: len(agent),
		P50: report.F(report.Ms(pct(agent, 50))), P99: report.F(report.Ms(pct(agent, 99))),
		Baseline: &report.Baseline{Name: "gobgpd fed by `gobgp global rib add`", P50: report.F(report.Ms(pct(base, 50))), P99: report.F(report.Ms(pct(base, 99)))},
		Target:   &report.Target{Text: "p50 ≤ 50 ms, p99 ≤ 150 ms", Checks: []report.Check{report.AtMost("p50", 50), report.AtMost("p99", 150)}}})
	if len(inAgent) > 0 {
		r.Add(report.Figure{Name: "of which VIP in the table → UPDATE sent (agent log)", Unit: "ms", Samples: len(inAgent),
			P50: report.F(report.Ms(pct(inAgent, 50))), P99: report.F(report.Ms(pct(inAgent, 99)))})
		r.Add(report.Figure{Name: "of which UPDATE sent → route in the router's kernel (FRR)", Unit: "ms", Samples: len(atRouter),
			P50: report.F(report.Ms(pct(atRouter, 50))), P99: report.F(report.Ms(pct(atRouter, 99)))})
	}
	return g.Stop()
}

func (b *bench) neighbor(addr string) (lab.Session, error) { return b.frr.Session(addr) }

func (b *bench) med(prefix string) (int, error) {
	ps, err := b.frr.PrefixPaths("ipv4", prefix)
	if err != nil {
		return 0, err
	}
	if len(ps) == 0 {
		return 0, fmt.Errorf("no path to %s", prefix)
	}
	return ps[0].MED, nil
}

func (b *bench) policyLatency(r *report.Report) error {
	const n = 20
	before, err := b.neighbor(agentAddr)
	if err != nil {
		return err
	}
	var d []time.Duration
	var seenAt []time.Time
	k0 := len(appliedTimes(b.proc.Log()))
	for i := range n {
		med := 100 + i
		start := time.Now()
		if err := writeAtomic(filepath.Join(b.conf, "gobgp.conf"), b.agentConf(med)); err != nil {
			return err
		}
		err := lab.Poll(10*time.Second, time.Millisecond, func() error {
			m, err := b.med("203.0.113.1/32")
			if err != nil {
				return err
			}
			if m != med {
				return fmt.Errorf("med %d", m)
			}
			return nil
		})
		if err != nil {
			return err
		}
		d = append(d, time.Since(start))
		seenAt = append(seenAt, time.Now())
	}
	after, err := b.neighbor(agentAddr)
	if err != nil {
		return err
	}
	r.Printf("- policy change (gobgp.conf rewritten, new MED) → new MED in FRR's table, %d changes: p50 %s, p99 %s; session resets: %d (includes the config watcher's 200 ms debounce and vtysh polling; target p50 ≤ 100 ms, zero resets)",
		n, ms(pct(d, 50)), ms(pct(d, 99)), after.Established-before.Established)
	r.Add(report.Figure{Name: "policy change (gobgp.conf rewritten) → new MED in FRR's table", Unit: "ms", Samples: len(d),
		P50: report.F(report.Ms(pct(d, 50))), P99: report.F(report.Ms(pct(d, 99))),
		Target: &report.Target{Text: "p50 ≤ 100 ms", Checks: []report.Check{report.AtMost("p50", 100)}}})
	r.Add(report.Figure{Name: "BGP session resets caused by those policy changes", Unit: "resets", Value: report.F(float64(after.Established - before.Established)),
		Target: &report.Target{Text: "0", Checks: []report.Check{report.AtMost("value", 0)}}})
	if at := appliedTimes(b.proc.Log()); len(at) >= k0+n {
		var inner []time.Duration
		for i := range n {
			inner = append(inner, max(0, seenAt[i].Sub(at[k0+i])))
		}
		r.Printf("  - of which config applied by the agent (its log) → new MED seen in FRR's table (polled with vtysh, ~20-40 ms per call): p50 %s, p99 %s", ms(pct(inner, 50)), ms(pct(inner, 99)))
	}
	return nil
}

func (b *bench) coldStart(r *report.Report, n int) error {
	if b.proc == nil {
		if err := b.startAgent(); err != nil {
			return err
		}
	}
	if err := b.proc.Stop(); err != nil {
		return err
	}
	ents, _ := os.ReadDir(b.svc)
	for _, e := range ents {
		_ = os.Remove(filepath.Join(b.svc, e.Name()))
	}
	// wait until FRR has nothing from the agent
	if err := lab.Poll(30*time.Second, 100*time.Millisecond, func() error {
		if nb, err := b.neighbor(agentAddr); err != nil || nb.State == "Established" {
			return fmt.Errorf("agent session still up")
		}
		return nil
	}); err != nil {
		return err
	}
	// remove the VIPs the stopped agent left on its interface, so the cold
	// start really starts from nothing
	if out, err := b.agent.Run(context.Background(), "ip", "link", "del", "kube-lb0"); err != nil && !strings.Contains(out+err.Error(), "Cannot find device") {
		return fmt.Errorf("remove kube-lb0: %w", err)
	}
	addrs := make([]string, 0, n)
	for i := range n {
		addrs = append(addrs, fmt.Sprintf("198.19.%d.%d", i/250, i%250+1))
	}
	const perFile = 500
	for i := 0; i < n; i += perFile {
		if err := writeAtomic(filepath.Join(b.svc, fmt.Sprintf("bulk%03d.yaml", i/perFile)), service(fmt.Sprintf("bulk%03d", i/perFile), "", addrs[i:min(i+perFile, n)])); err != nil {
			return err
		}
	}
	start := time.Now()
	if err := b.startAgent(); err != nil {
		return err
	}
	var got int
	err := lab.Poll(120*time.Second, 100*time.Millisecond, func() error {
		var doc struct {
			Peers map[string]struct {
				PfxRcd int `json:"pfxRcd"`
			} `json:"peers"`
		}
		if err := b.frr.VtyshJSON("show bgp ipv4 unicast summary json", &doc); err != nil {
			return err
		}
		got = doc.Peers[agentAddr].PfxRcd
		if got < n {
			return fmt.Errorf("%d of %d in FRR's table", got, n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	total := time.Since(start)
	rss := rssMiB(b.proc.PID())
	r.Printf("- %d VIPs from a cold start (agent started, %d manifests) → all in FRR's BGP table: %s (target ≤ 5 s); agent RSS then: %.0f MiB (target ≤ 200 MiB)",
		n, n/perFile, ms(total), rss)
	r.Add(report.Figure{Name: fmt.Sprintf("%d VIPs from a cold start → all in FRR's BGP table", n), Unit: "ms", Value: report.F(report.Ms(total)),
		Target: &report.Target{Text: "≤ 5 s", Checks: []report.Check{report.AtMost("value", 5000)}}})
	r.Add(report.Figure{Name: fmt.Sprintf("agent RSS with %d VIPs announced", n), Unit: "MiB", Value: report.F(rss),
		Target: &report.Target{Text: "≤ 200 MiB", Checks: []report.Check{report.AtMost("value", 200)}}})
	var milestones []string
	for _, l := range strings.Split(b.proc.Log(), "\n") {
		ts, ok := logTime(l)
		if !ok {
			continue
		}
		for _, m := range []string{`msg="vipspeaker starting"`, `msg="Peer Up"`, `msg="VIP table applied"`, `msg="vip paths updated"`, `msg="bgp speaker running"`} {
			if strings.Contains(l, m) {
				f := strings.Fields(l[strings.Index(l, m)+len(m):])
				extra := ""
				if len(f) > 0 && !strings.HasPrefix(f[0], "component=gobgp") {
					extra = " " + strings.Join(f[:min(len(f), 3)], " ")
				}
				milestones = append(milestones, fmt.Sprintf("%s at +%s%s", strings.Trim(strings.TrimPrefix(m, "msg="), `"`), ms(ts.Sub(start)), extra))
			}
		}
	}
	if len(milestones) > 0 {
		r.Printf("  - agent log milestones: %s", strings.Join(milestones, "; "))
	}
	r.Printf("- baseline gobgpd at %d paths: not measured (feeding it through its CLI takes one process per path)", n)
	return b.proc.Stop()
}

func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[min(i, len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// splitFromLog reads the agent's debug log: for the k-th VIP
// (203.0.113.k), when the VIP table held k VIPs ("VIP table applied"
// vips=k) and when GoBGP sent its UPDATE ("sent update ... nlri=[VIP/32"),
// against when the router had the route. An UPDATE logged before the
// table's own log line counts as 0.
func splitFromLog(log string, routed map[string]time.Time) (inAgent, atRouter []time.Duration) {
	applied := map[string]time.Time{}
	sent := map[string]time.Time{}
	for _, l := range strings.Split(log, "\n") {
		ts, ok := logTime(l)
		if !ok {
			continue
		}
		if strings.Contains(l, `msg="VIP table applied"`) {
			if i := strings.Index(l, "vips="); i >= 0 {
				n := strings.Fields(l[i+len("vips="):])
				if len(n) > 0 {
					applied["203.0.113."+n[0]] = ts
				}
			}
			continue
		}
		if !strings.Contains(l, `msg="sent update"`) {
			continue
		}
		i := strings.Index(l, "nlri=[")
		if i < 0 {
			continue
		}
		rest := l[i+len("nlri=["):]
		if j := strings.Index(rest, "/32"); j >= 0 {
			if _, dup := sent[rest[:j]]; !dup {
				sent[rest[:j]] = ts
			}
		}
	}
	for vip, r := range routed {
		s, ok1 := sent[vip]
		a, ok2 := applied[vip]
		if !ok1 || !ok2 {
			continue
		}
		inAgent = append(inAgent, max(0, s.Sub(a)))
		if d := r.Sub(s); d >= 0 {
			atRouter = append(atRouter, d)
		}
	}
	return inAgent, atRouter
}
func logTime(l string) (time.Time, bool) {
	if !strings.HasPrefix(l, "time=") {
		return time.Time{}, false
	}
	f := strings.SplitN(strings.TrimPrefix(l, "time="), " ", 2)
	t, err := time.Parse(time.RFC3339Nano, f[0])
	return t, err == nil
}

// appliedTimes lists when the agent logged "config applied", in order.
func appliedTimes(log string) []time.Time {
	var out []time.Time
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `msg="config applied"`) {
			if ts, ok := logTime(l); ok {
				out = append(out, ts)
			}
		}
	}
	return out
}
