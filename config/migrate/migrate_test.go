package migrate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vipspeaker/vipspeaker/config"
)

func convertFile(t *testing.T, name string) (*Result, *config.Config) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := Convert(f)
	if err != nil {
		t.Fatalf("%v\n--- vipspeaker.toml\n%s\n--- gobgp.conf\n%s", err, res.TOML, res.GoBGP)
	}
	cfg, errs := config.Parse(config.FileName, []byte(res.TOML))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return res, cfg
}

func hasNote(t *testing.T, res *Result, parts ...string) {
	t.Helper()
	for _, n := range res.Notes {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(n, p)
		}
		if ok {
			return
		}
	}
	t.Errorf("no note with %q among:\n%s", parts, strings.Join(res.Notes, "\n"))
}

func TestMetalLB(t *testing.T) {
	res, cfg := convertFile(t, "testdata/metallb.yaml")
	prod := cfg.Pool("production")
	if prod == nil || prod.Mode != "bgp" || !prod.AvoidBuggyIPs || !prod.AutoAssign || strings.Join(prod.Namespaces, ",") != "web,shop" {
		t.Fatalf("production pool %+v", prod)
	}
	ad := prod.Advertise
	if ad.AggregationLength != 24 || ad.AggregationLengthV6 != 64 || ad.LocalPref != 150 ||
		strings.Join(ad.Communities, ",") != "64512:100" || strings.Join(ad.LargeCommunities, ",") != "64512:1:7" ||
		ad.NodeSelector != "topology.kubernetes.io/zone=rack1" {
		t.Errorf("production advertise %+v", ad)
	}
	office := cfg.Pool("office")
	if office == nil || office.Mode != "layer2" || office.AutoAssign || strings.Join(office.Layer2.Interfaces, ",") != "eth1" {
		t.Errorf("office pool %+v", office)
	}
	if spare := cfg.Pool("spare"); spare == nil || spare.AutoAssign {
		t.Errorf("spare pool (no advertisement in MetalLB) %+v, want auto-assign off", spare)
	}
	hasNote(t, res, "IPAddressPool/spare", "does not announce it")
	if prod.Priority != 50 {
		t.Errorf("production priority %d, want MetalLB's 50", prod.Priority)
	}
	if prod.NamespaceSelector != "team=web" {
		t.Errorf("production namespace-selector %q, want MetalLB's first namespaceSelectors (matchLabels team: web)", prod.NamespaceSelector)
	}
	hasNote(t, res, "IPAddressPool/production", "namespaceSelectors", "only the first")
	if strings.Join(ad.Peers, ",") != "198.18.0.1" {
		t.Errorf("production peers %q, want tor1's peerAddress (BGPAdvertisement prod's peers: [tor1])", ad.Peers)
	}
	for _, n := range res.Notes {
		if strings.Contains(n, "spec.peers") {
			t.Errorf("a note about spec.peers, which carries over: %s", n)
		}
	}
	hasNote(t, res, "BGPPeer/tor1", "passwordSecret", "tor1-password")
	hasNote(t, res, "BGPPeer/tor2", "routerID")
	hasNote(t, res, "Namespace/metallb-system", "passed over")

	for _, want := range []string{
		`neighbor-address = "198.18.0.1"`, "peer-as = 64500", `auth-password = "secret:tor1-password/password"`,
		"hold-time = 9", "keepalive-interval = 3", "desired-minimum-tx-interval = 100000", "detection-multiplier = 3",
		"[neighbors.graceful-restart.config]", `neighbor-address = "198.18.1.1"`, `afi-safi-name = "ipv6-unicast"`, "as = 64512",
	} {
		if !strings.Contains(res.GoBGP, want) {
			t.Errorf("gobgp.conf lacks %s:\n%s", want, res.GoBGP)
		}
	}
	if len(cfg.PeerNodes) != 1 || cfg.PeerNodes[0].Neighbors[0].String() != "198.18.1.1" ||
		cfg.PeerNodes[0].NodeSelector != "topology.kubernetes.io/zone in (rack2,rack3)" {
		t.Errorf("peer-nodes %+v", cfg.PeerNodes)
	}
}

func TestOpenELB(t *testing.T) {
	res, cfg := convertFile(t, "testdata/openelb.yaml")
	if len(cfg.Pools) != 3 {
		t.Fatalf("pools %+v, want eip-bgp, eip-layer2 and eip-off", cfg.Pools)
	}
	if p := cfg.Pool("eip-bgp"); p == nil || p.Mode != "bgp" || !p.AutoAssign || p.Priority != 0 {
		t.Errorf("eip-bgp %+v, want bgp and auto-assign without priority (the default Eip: tried last)", p)
	}
	// OpenELB assigns an Eip that lists a namespace to that namespace's
	// Services without being asked, before the default Eip.
	if p := cfg.Pool("eip-layer2"); p == nil || p.Mode != "layer2" || !p.AutoAssign || p.Priority != 1 ||
		strings.Join(p.Layer2.Interfaces, ",") != "eth0" || strings.Join(p.Namespaces, ",") != "project" {
		t.Errorf("eip-layer2 %+v, want layer2 on eth0, auto-assign for namespace project, priority 1 (OpenELB's 0)", p)
	}
	// Disabled: no new Services, existing ones keep their addresses.
	if p := cfg.Pool("eip-off"); p == nil || p.AutoAssign {
		t.Errorf("eip-off %+v, want kept with auto-assign off", p)
	}
	hasNote(t, res, "Eip/eip-off", "disabled", "auto-assign = false")
	hasNote(t, res, "Eip/eip-layer2", "namespaces", "by annotation")
	hasNote(t, res, "BgpConf/default", "listenPort 17900")
	hasNote(t, res, "BgpConf/default", "routerId 192.168.0.2", "its own address")
	for _, want := range []string{"as = 50000", `neighbor-address = "192.168.0.5"`, "peer-as = 50001", "hold-time = 9"} {
		if !strings.Contains(res.GoBGP, want) {
			t.Errorf("gobgp.conf lacks %s:\n%s", want, res.GoBGP)
		}
	}
	if strings.Contains(res.GoBGP, "router-id") {
		t.Errorf("gobgp.conf sets a router-id, shared by every node:\n%s", res.GoBGP)
	}
	if len(cfg.PeerNodes) != 1 || cfg.PeerNodes[0].NodeSelector != "openelb.kubesphere.io/rack=leaf1" {
		t.Errorf("peer-nodes %+v", cfg.PeerNodes)
	}
}

// BGPAdvertisement.peers names BGPPeers: their addresses become the pool's
// peers, merged over the pool's advertisements; an advertisement naming no
// peer (MetalLB: all of them) clears the list, and a name with no BGPPeer
// is noted and left out.
func TestMetalLBAdvertisementPeers(t *testing.T) {
	const peers = `apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor-a}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 198.18.0.1}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor-b}
spec: {myASN: 64512, peerASN: 64500, peerAddress: "2001:db8:18::1"}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: a}
spec: {addresses: ["198.51.100.0/26"]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: b}
spec: {addresses: ["198.51.100.64/26"]}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: to-a}
spec: {ipAddressPools: [a, b], peers: [tor-a, tor-x]}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: to-b}
spec: {ipAddressPools: [a], peers: [tor-b]}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: everyone}
spec: {ipAddressPools: [b]}
`
	res, err := Convert(strings.NewReader(peers))
	if err != nil {
		t.Fatalf("%v\n%s", err, res.TOML)
	}
	cfg, errs := config.Parse(config.FileName, []byte(res.TOML))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := strings.Join(cfg.Pool("a").Advertise.Peers, ","); got != "198.18.0.1,2001:db8:18::1" {
		t.Errorf("pool a's peers %q, want tor-a's and tor-b's addresses", got)
	}
	if got := cfg.Pool("b").Advertise.Peers; len(got) != 0 {
		t.Errorf("pool b's peers %q, want none (advertisement everyone names no peer: all)", got)
	}
	hasNote(t, res, "BGPAdvertisement/to-a", "spec.peers", `"tor-x"`, "left out")
}

// Input the agent would refuse (an aggregation that reaches outside the
// pool, as MetalLB refuses too) is an error naming the field, not a config
// that fails later.
func TestConvertRefusesWhatTheAgentRefuses(t *testing.T) {
	in := `apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: small}
spec: {addresses: ["198.51.100.0/26"]}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: agg}
spec: {aggregationLength: 24}
`
	_, err := Convert(strings.NewReader(in))
	if err == nil || !strings.Contains(err.Error(), "aggregation-length") {
		t.Fatalf("err = %v, want the agent's refusal of aggregation-length", err)
	}
}

// A file that is not YAML is named, with the lines of the document that
// does not parse (the YAML parser's own line numbers are not the file's).
func TestFilesNamesTheBadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [198.51.100.0/24]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("# first\nkind: Eip\n---\nkind: Eip\nmetadata:\n  name: x\n   bad: indent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Files([]string{good, bad}, nil)
	if err == nil || !strings.Contains(err.Error(), bad+": document 2 (lines 4-7)") {
		t.Fatalf("err = %v, want it to name %s, document 2, lines 4-7", err, bad)
	}
}
