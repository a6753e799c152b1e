package migrate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vipspeaker/vipspeaker/config"
	configcheck "github.com/vipspeaker/vipspeaker/config/check"
)

// The examples of MetalLB's and OpenELB's own documentation and sample
// folders (testdata/upstream, each file's header names its source) convert
// as `vipspeaker migrate FILE` converts them, the ConfigMap written passes
// `vipspeaker check`'s own code (check.Path), and what did not carry over
// is said: each case lists the notes it must give and what the pools and
// gobgp.conf must hold.
func TestUpstreamExamples(t *testing.T) {
	for _, tc := range []struct {
		file  string
		notes [][]string // each note: parts one line must all contain
		gobgp []string   // lines gobgp.conf must contain ("": no gobgp.conf)
		pools func(t *testing.T, cfg *config.Config)
	}{
		{file: "metallb-simple_pool_adv_bgp.yaml", pools: func(t *testing.T, cfg *config.Config) {
			wantPool(t, cfg, "example", "bgp", true, "192.168.10.0/24,fc00:f853:ccd:e799::/124", "192.168.9.1-192.168.9.5")
		}},
		{file: "metallb-simple_pool_adv_l2.yaml", notes: [][]string{{"pool example", "eth0 is a guess"}},
			pools: func(t *testing.T, cfg *config.Config) {
				wantPool(t, cfg, "example", "layer2", true, "192.168.10.0/24,fc00:f853:ccd:e799::/124", "192.168.9.1-192.168.9.5")
			}},
		{file: "metallb-ipaddresspool_with_selector.yaml", notes: [][]string{{"IPAddressPool/ippool-ns-service-alloc-sample", "does not announce it"}},
			pools: func(t *testing.T, cfg *config.Config) {
				p := wantPool(t, cfg, "ippool-ns-service-alloc-sample", "bgp", false, "192.168.20.0/24", "")
				if p != nil && (p.Priority != 50 || strings.Join(p.Namespaces, ",") != "namespace-a,namespace-b" ||
					p.NamespaceSelector != "foo=bar" || p.ServiceSelector != "app in (bar)" || !p.AvoidBuggyIPs) {
					t.Errorf("service allocation %+v", p)
				}
			}},
		{file: "metallb-bgpadvertisement_community_alias.yaml", notes: [][]string{{"BGPAdvertisement/advertisement", `no IPAddressPool "bgp-with-advertisement"`}}},
		{file: "metallb-bgpadvertisement_with_node_selector.yaml", notes: [][]string{{"BGPAdvertisement/advertisement", `no IPAddressPool "first-pool"`}}},
		{file: "metallb-bgppeer_with_bfdprofile.yaml", gobgp: []string{`neighbor-address = "172.30.0.3"`, "peer-as = 64512",
			"desired-minimum-tx-interval = 270000", "required-minimum-receive = 380000", "detection-multiplier = 3"}},
		{file: "metallb-bgppeer_withsecret.yaml", notes: [][]string{{"BGPPeer/peer-with-secret", "passwordSecret", "secretname"}, {"BGPPeer/peer-with-secret", "keepaliveTime 0s"}},
			gobgp: []string{`auth-password = "secret:secretname/password"`, "hold-time = 540", "remote-port = 179"}},
		{file: "metallb-deployment_bgp.yaml",
			notes: [][]string{{"Deployment/nginx", "passed over"}, {"Service/nginx", "passed over"},
				{"IPAddressPool/example", "LOCAL_PREF 0", "BGPPeer/peer"}},
			gobgp: []string{`neighbor-address = "172.30.0.3"`, `neighbor-address = "fc00:f853:ccd:e793::5"`, `afi-safi-name = "ipv6-unicast"`},
			pools: func(t *testing.T, cfg *config.Config) {
				wantPool(t, cfg, "example", "bgp", true, "192.168.10.0/24,fc00:f853:ccd:e799::/124", "")
			}},
		{file: "metallb-docs-layer2.yaml", notes: [][]string{{"pool first-pool", "eth0 is a guess"}},
			pools: func(t *testing.T, cfg *config.Config) {
				wantPool(t, cfg, "first-pool", "layer2", true, "", "192.168.1.240-192.168.1.250")
			}},
		{file: "metallb-docs-bgp.yaml", notes: [][]string{{"IPAddressPool/first-pool", "LOCAL_PREF 0", "BGPPeer/peersample"}},
			gobgp: []string{"as = 64500", `neighbor-address = "10.0.0.1"`, "peer-as = 64501", `neighbor-address = "172.30.0.3"`,
				"local-as = 64512", "desired-minimum-tx-interval = 270000"},
			pools: func(t *testing.T, cfg *config.Config) {
				wantPool(t, cfg, "first-pool", "bgp", true, "", "192.168.1.240-192.168.1.250")
			}},
		// The documentation's aggregation example: MetalLB announces the /32
		// (no-advertise, local-pref 100) and the covering /24 side by side.
		// The host routes carry over with their attributes; the /24 is a
		// note, not a /24 with the /32's no-advertise on it.
		{file: "metallb-docs-aggregation.yaml",
			notes: [][]string{{"IPAddressPool/first-pool", `"198.51.100.10/24" has host bits set`, "198.51.100.0/24"},
				{"BGPAdvertisement/external", "/24 aggregate", "not carried over"},
				{"BGPPeer/example", "nodeSelectors", "only the first"}},
			gobgp: []string{`neighbor-address = "172.30.0.3"`, "remote-port = 180"},
			pools: func(t *testing.T, cfg *config.Config) {
				p := wantPool(t, cfg, "first-pool", "bgp", true, "198.51.100.0/24", "")
				if ad := p.Advertise; p != nil && (ad.AggregationLength != 0 || ad.LocalPref != 100 || strings.Join(ad.Communities, ",") != "65535:65282") {
					t.Errorf("first-pool advertise %+v, want host routes with local-pref 100 and no-advertise", ad)
				}
				if len(cfg.PeerNodes) != 1 || cfg.PeerNodes[0].NodeSelector != "network-speed notin (slow),rack=frontend" {
					t.Errorf("peer-nodes %+v", cfg.PeerNodes)
				}
			}},
		{file: "openelb-sample-eip.yaml", pools: func(t *testing.T, cfg *config.Config) {
			wantPool(t, cfg, "eip-sample", "bgp", false, "", "139.198.121.228")
		}},
		{file: "openelb-sample-eip_layer2.yaml", pools: func(t *testing.T, cfg *config.Config) {
			if p := wantPool(t, cfg, "eip-sample-layer2", "layer2", false, "", "172.22.0.188-172.22.0.200"); p != nil &&
				strings.Join(p.Layer2.Interfaces, ",") != "eth0" {
				t.Errorf("interfaces %v, want eth0", p.Layer2.Interfaces)
			}
		}},
		{file: "openelb-sample-bgp.yaml",
			notes: [][]string{{"BgpConf/default", "routerId 172.22.0.10"}, {"BgpConf/default", "listenPort 17900"}},
			gobgp: []string{"as = 50001", `neighbor-address = "172.22.0.2"`, "peer-as = 50000"}},
		{file: "openelb-docs-eip.yaml",
			notes: [][]string{{"Eip/eip-sample-pool", "by annotation"}, {"Eip/eip-sample-pool", "default Eip is also scoped"}},
			pools: func(t *testing.T, cfg *config.Config) {
				p := wantPool(t, cfg, "eip-sample-pool", "layer2", true, "", "192.168.0.91-192.168.0.100")
				if p != nil && (p.Priority != 101 || strings.Join(p.Namespaces, ",") != "test,default" ||
					p.NamespaceSelector != "kubesphere.io/workspace=workspace" || strings.Join(p.Layer2.Interfaces, ",") != "eth0") {
					t.Errorf("eip-sample-pool %+v, want priority 101 (OpenELB's 100), namespaces test and default, the workspace selector, eth0", p)
				}
			}},
		{file: "openelb-docs-bgp.yaml",
			notes: [][]string{{"BgpConf/default", "routerId"}, {"BgpConf/default", "listenPort"}, {"BgpPeer/bgppeer-sample", "addPaths"}},
			gobgp: []string{"as = 50000", `neighbor-address = "192.168.0.5"`, "peer-as = 50001"},
			pools: func(t *testing.T, cfg *config.Config) {
				if len(cfg.PeerNodes) != 1 || cfg.PeerNodes[0].NodeSelector != "openelb.kubesphere.io/rack=leaf1" {
					t.Errorf("peer-nodes %+v", cfg.PeerNodes)
				}
			}},
	} {
		t.Run(strings.TrimSuffix(tc.file, ".yaml"), func(t *testing.T) {
			res, err := Files([]string{filepath.Join("testdata", "upstream", tc.file)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			cm, err := res.ConfigMap("vipspeaker-system")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "cm.yaml")
			if err := os.WriteFile(path, []byte(cm), 0o644); err != nil {
				t.Fatal(err)
			}
			if errs, err := configcheck.Path(path); err != nil || len(errs) > 0 {
				t.Fatalf("vipspeaker check of the migrated ConfigMap: %v %v\n%s", err, errs, cm)
			}
			for _, parts := range tc.notes {
				hasNote(t, res, parts...)
			}
			if len(res.Notes) != len(tc.notes) {
				t.Errorf("%d notes, want %d:\n%s", len(res.Notes), len(tc.notes), strings.Join(res.Notes, "\n"))
			}
			if len(tc.gobgp) == 0 && res.GoBGP != "" {
				t.Errorf("gobgp.conf written for input without peers:\n%s", res.GoBGP)
			}
			for _, want := range tc.gobgp {
				if !strings.Contains(res.GoBGP, want) {
					t.Errorf("gobgp.conf lacks %s:\n%s", want, res.GoBGP)
				}
			}
			cfg, errs := config.Parse(config.FileName, []byte(res.TOML))
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			// MetalLB takes the Services that name no class; OpenELB
			// only those with its opt-in annotation, which the agent
			// takes anyway.
			if want := strings.HasPrefix(tc.file, "metallb-"); cfg.DefaultClass != want {
				t.Errorf("default-class = %t, want %t", cfg.DefaultClass, want)
			}
			if tc.pools != nil {
				tc.pools(t, cfg)
			}
		})
	}
}

// wantPool checks a pool's mode, auto-assign, CIDRs and ranges (each
// comma-separated as the config holds them) and returns it.
func wantPool(t *testing.T, cfg *config.Config, name, mode string, auto bool, prefixes, ranges string) *config.Pool {
	t.Helper()
	p := cfg.Pool(name)
	if p == nil {
		t.Errorf("no pool %q in %+v", name, cfg.Pools)
		return nil
	}
	var pfx, rng []string
	for _, x := range p.Prefixes {
		pfx = append(pfx, x.String())
	}
	for _, x := range p.Ranges {
		rng = append(rng, x.String())
	}
	if string(p.Mode) != mode || p.AutoAssign != auto || strings.Join(pfx, ",") != prefixes || strings.Join(rng, ",") != ranges {
		t.Errorf("pool %s: mode %s auto-assign %t prefixes %q ranges %q; want %s %t %q %q",
			name, p.Mode, p.AutoAssign, pfx, rng, mode, auto, prefixes, ranges)
	}
	return p
}
