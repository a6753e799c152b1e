package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// The lab: an FRR router (AS 65000) and a node running the real agent
// binary (AS 65001) with a Service manifest and gobgp.conf.
const (
	routerAddr = "198.18.4.1"
	nodeAddr   = "198.18.4.2"
	vipAddr    = "203.0.113.40"
)

// opsFRRConf is the router's bgpd: one eBGP session with the node.
var opsFRRConf = lab.FRRBGPConf{AS: 65000, RouterID: routerAddr,
	Neighbors: []lab.FRRNeighbor{{Addr: nodeAddr, AS: 65001, Timers: "3 9", ConnectRetry: 5}}}.String()

var opsGoBGPConf = lab.GoBGPConf{AS: 65001, RouterID: nodeAddr,
	Neighbors: []lab.GoBGPNeighbor{{Address: routerAddr, PeerAS: 65000, ConnectRetry: 2}}}.String()

const opsTOML = lab.IfbInterfaceTOML

var opsService = lab.ServiceFile{Name: "web", Addresses: []string{vipAddr}, Class: "vipspeaker.io/lb"}.String()

func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	if err := lab.WriteFileAtomic(path, content); err != nil {
		t.Fatal(err)
	}
}

func TestStatusInLab(t *testing.T) {
	lab.RequireFRR(t)
	bin := lab.Vipspeaker(t)

	l := lab.New(t)
	router, node := l.MustHost("router"), l.MustHost("node1")
	l.MustLink(router, "eth0", []string{routerAddr + "/30"}, node, "eth0", []string{nodeAddr + "/30"})
	frr, err := router.StartFRR(lab.FRRConfig{BGPd: opsFRRConf})
	if err != nil {
		t.Fatal(err)
	}

	agent, err := lab.NewAgent(node, bin)
	if err != nil {
		t.Fatal(err)
	}
	svcDir, cfgDir, runDir := agent.ServicesDir, agent.ConfigDir, agent.RunDir
	writeAtomic(t, filepath.Join(svcDir, "web.yaml"), opsService)
	writeAtomic(t, filepath.Join(cfgDir, "gobgp.conf"), opsGoBGPConf)
	writeAtomic(t, filepath.Join(cfgDir, "vipspeaker.toml"), opsTOML)
	textfile := filepath.Join(l.Dir(), "textfile", "vipspeaker.prom")
	if err := os.MkdirAll(filepath.Dir(textfile), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Start("--metrics-textfile", textfile); err != nil {
		t.Fatal(err)
	}
	if err := frr.WaitEstablished(nodeAddr, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// The router learns the VIP from the node.
	lab.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		rs, err := frr.RoutesIPv4()
		if err != nil {
			return err
		}
		if nh := rs[netip.MustParsePrefix(vipAddr+"/32")]; len(nh) != 1 || nh[0] != netip.MustParseAddr(nodeAddr) {
			return fmt.Errorf("router: %s/32 via %v, want via %s", vipAddr, nh, nodeAddr)
		}
		return nil
	})

	// `vipspeaker status` from inside the node's namespace, as through
	// kubectl exec in a pod.
	var out string
	lab.Eventually(t, 15*time.Second, 200*time.Millisecond, func() error {
		out, err = node.Run(context.Background(), bin, "status", "--run-dir", runDir)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		vip, peer := fields(out, vipAddr), fields(out, routerAddr)
		if len(vip) < 5 || vip[1] != "demo/web" || vip[2] != "bgp" || vip[4] != "announcing" {
			return fmt.Errorf("VIP row %q", vip)
		}
		if len(peer) < 5 || peer[1] != "65000" || peer[2] != "established" || peer[4] != "1" {
			return fmt.Errorf("peer row %q: want AS 65000 established, 1 prefix sent", peer)
		}
		return nil
	})
	t.Logf("vipspeaker status in the lab:\n%s", out)

	js, err := node.Run(context.Background(), bin, "status", "--run-dir", runDir, "-o", "json")
	if err != nil {
		t.Fatalf("status -o json: %v\n%s", err, js)
	}
	var r struct {
		Node string `json:"node"`
		VIPs []struct {
			Address, Service, Mode, Role string
		} `json:"vips"`
		BGP struct {
			Peers []struct {
				Peer         string `json:"peer"`
				State        string `json:"state"`
				PrefixesSent uint64 `json:"prefixesSent"`
			} `json:"peers"`
		} `json:"bgp"`
		Config struct {
			Generation           uint64 `json:"generation"`
			LastReloadSuccessful bool   `json:"lastReloadSuccessful"`
			LastError            string `json:"lastError"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, js)
	}
	if r.Node != "node1" || len(r.VIPs) != 1 || r.VIPs[0].Address != vipAddr || len(r.BGP.Peers) != 1 ||
		r.BGP.Peers[0].State != "established" || r.BGP.Peers[0].PrefixesSent != 1 || !r.Config.LastReloadSuccessful {
		t.Errorf("status -o json:\n%s", js)
	}

	// The textfile holds the same figures, in a form node_exporter reads.
	lab.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		return textfileHas(textfile, map[string]float64{
			`vipspeaker_vips{mode="bgp"}`:                           1,
			`vipspeaker_bgp_session_up{peer="198.18.4.1"}`:          1,
			`vipspeaker_bgp_advertised_prefixes{peer="198.18.4.1"}`: 1,
			`vipspeaker_config_last_reload_successful`:              1,
		})
	})

	// node_exporter's textfile collector takes the file without a scrape
	// error and exports the agent's series.
	nodeExporterScrape(t, node, filepath.Dir(textfile))

	// A broken vipspeaker.toml is refused: status says so and why, and
	// the VIP stays announced.
	writeAtomic(t, filepath.Join(cfgDir, "vipspeaker.toml"), opsTOML+"[[pools]]\nname = \"p\"\naddresses = [\"203.0.113.0/33\"]\n")
	lab.Eventually(t, 15*time.Second, 200*time.Millisecond, func() error {
		out, err = node.Run(context.Background(), bin, "status", "--run-dir", runDir)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.Contains(out, "refused") {
			return errors.New("the refused reload is not shown")
		}
		if !regexp.MustCompile(`last error\s+\S*vipspeaker\.toml:\d+: .*203\.0\.113\.0/33`).MatchString(out) {
			return errors.New("the last error does not name vipspeaker.toml:line and the bad prefix")
		}
		return nil
	})
	t.Logf("after a refused reload:\n%s", out)
	if v := fields(out, vipAddr); len(v) < 5 || v[4] != "announcing" {
		t.Errorf("VIP row after a refused reload: %q", v)
	}
	if err := textfileHas(textfile, map[string]float64{`vipspeaker_config_last_reload_successful`: 0}); err != nil {
		// The textfile is rewritten periodically; give it one interval.
		lab.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
			return textfileHas(textfile, map[string]float64{`vipspeaker_config_last_reload_successful`: 0})
		})
	}
}

// fields returns the whitespace-separated fields of the line that starts
// with first.
func fields(out, first string) []string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == first {
			return f
		}
	}
	return nil
}

// textfileHas parses a textfile and checks series values; keys are
// name{label="value",...} with labels in the order written.
func textfileHas(path string, want map[string]float64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	got := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := name
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Gauge != nil:
				got[key] = m.GetGauge().GetValue()
			case m.Counter != nil:
				got[key] = m.GetCounter().GetValue()
			case m.Untyped != nil:
				got[key] = m.GetUntyped().GetValue()
			}
		}
	}
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			return fmt.Errorf("%s: no %s", path, k)
		}
		if g != v {
			return fmt.Errorf("%s: %s = %v, want %v", path, k, g, v)
		}
	}
	return nil
}

// nodeExporterBin is Debian's prometheus-node-exporter.
const nodeExporterBin = "/usr/bin/prometheus-node-exporter"

// nodeExporterScrape runs node_exporter with only the textfile collector on
// dir inside h's namespace and checks what it serves.
func nodeExporterScrape(t *testing.T, h *lab.Host, dir string) {
	t.Helper()
	if _, err := os.Stat(nodeExporterBin); err != nil {
		nstest.Skip(t, "node_exporter: %v (apt-get install prometheus-node-exporter)", err)
	}
	if _, err := h.Start("node-exporter", []string{nodeExporterBin, "--collector.disable-defaults", "--collector.textfile",
		"--collector.textfile.directory=" + dir, "--web.listen-address=127.0.0.1:9100"}); err != nil {
		t.Fatal(err)
	}
	var body string
	lab.Eventually(t, 15*time.Second, 200*time.Millisecond, func() error {
		out, err := h.Run(context.Background(), "curl", "-sf", "http://127.0.0.1:9100/metrics")
		if err != nil {
			return fmt.Errorf("scrape node_exporter: %v", err)
		}
		body = out
		return nil
	})
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("node_exporter's output does not parse: %v", err)
	}
	if mf := mfs["node_textfile_scrape_error"]; mf == nil || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() != 0 {
		t.Errorf("node_textfile_scrape_error = %v, want 0", mf)
	}
	for _, name := range []string{"vipspeaker_vips", "vipspeaker_bgp_session_up", "vipspeaker_config_last_reload_successful",
		"vipspeaker_reconcile_duration_seconds"} {
		if mfs[name] == nil {
			t.Errorf("node_exporter does not export %s from the textfile", name)
		}
	}
}
