package sidebyside

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// migrationConfig is a MetalLB configuration as an operator writes it
// after MetalLB's documentation: two pools, each with a BGPAdvertisement
// carrying communities (one through a Community alias) and localPref, one
// aggregated to its /24, a third pool advertised plainly, and the router
// (routerAddr, routerAS) as an iBGP peer (MetalLB sends LOCAL_PREF to iBGP
// peers only, and so does GoBGP).
const migrationConfig = `apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: web
spec:
  addresses: ["198.19.1.0/24"]
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: batch
spec:
  addresses: ["198.19.2.0/24"]
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: plain
spec:
  addresses: ["198.19.3.0/24"]
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata:
  name: aliases
spec:
  communities:
  - name: vpn-only
    value: "64500:1"
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: web
spec:
  ipAddressPools: ["web"]
  communities: ["64500:100", "vpn-only"]
  localPref: 150
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: batch
spec:
  ipAddressPools: ["batch"]
  aggregationLength: 24
  communities: ["65535:65281"]
  localPref: 200
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: plain
spec:
  ipAddressPools: ["plain"]
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata:
  name: router
spec:
  myASN: 64500
  peerASN: 64500
  peerAddress: 198.18.30.1
  holdTime: 3s`

// TestMigrateAnnouncesWhatMetalLBDid runs MetalLB v0.15.2 with
// migrationConfig on Services that carry MetalLB's annotations, records
// what FRR learns (each prefix with its paths' next hops, communities and
// local-pref), stops MetalLB, converts the same YAML with `vipspeaker
// migrate`, checks the ConfigMap with `vipspeaker check`, starts
// vipspeaker with it on the same Services, untouched, and wants FRR to
// learn the same, but for the two differences the migration notes name:
// the plain pool's LOCAL_PREF (MetalLB's native mode sends 0 to an iBGP
// peer, GoBGP 100), and the host route a Local Service of the aggregated
// pool keeps (MetalLB folds it into the /24). The Services pin their
// addresses with metallb.io/loadBalancerIPs (read by both), so allocation
// order plays no part.
func TestMigrateAnnouncesWhatMetalLBDid(t *testing.T) {
	m := newMetalLB(t)
	m.config, m.as = migrationConfig, routerAS
	v := newVipspeaker(t)
	e := newEnv(t, m, false)

	pinned := func(addr string) map[string]string { return map[string]string{kube.MetalLBAddresses: addr} }
	services := []svc{
		{name: "web-cluster", annotations: pinned("198.19.1.10")},
		{name: "web-local", local: true, annotations: pinned("198.19.1.11")},
		{name: "batch-a", annotations: pinned("198.19.2.5")},
		{name: "batch-b", annotations: pinned("198.19.2.6")},
		{name: "batch-local", local: true, annotations: pinned("198.19.2.7")},
		{name: "plain", annotations: pinned("198.19.3.1")},
	}
	for _, s := range services {
		e.createService(t, s)
	}
	for _, s := range services {
		if got := e.waitIngress(t, s.name, 30*time.Second).String(); got != s.annotations[kube.MetalLBAddresses] {
			t.Fatalf("MetalLB gave %s %s, want %s", s.name, got, s.annotations[kube.MetalLBAddresses])
		}
	}

	// What MetalLB announces, as its documentation says: a host route per
	// VIP of "web" with the alias resolved, the Local Service's from n1
	// only; one /24 for the three VIPs of "batch", its Local one's
	// included; "plain" with LOCAL_PREF 0.
	all := func(attrs string) []string {
		var out []string
		for _, n := range nodeNames {
			out = append(out, nodeAddr(n)+" "+attrs)
		}
		return out
	}
	want := frrTable{
		"198.19.1.10/32": all("lp=150 comm=64500:1 64500:100"),
		"198.19.1.11/32": {nodeAddr("n1") + " lp=150 comm=64500:1 64500:100"},
		"198.19.2.0/24":  all("lp=200 comm=no-export"),
		"198.19.3.1/32":  all("lp=0 comm="),
	}
	metallbSaw := e.waitTable(t, "MetalLB", want)
	t.Logf("FRR under MetalLB: %v", metallbSaw)
	// What the notes announce for vipspeaker; everything else the same.
	noted := maps.Clone(metallbSaw)
	noted["198.19.3.1/32"] = all("lp=100 comm=")
	noted["198.19.2.7/32"] = []string{nodeAddr("n1") + " lp=200 comm=no-export"}

	// MetalLB goes; FRR forgets its routes when the sessions close.
	for _, p := range append([]*lab.Process{m.controller}, slices.Collect(maps.Values(m.speakers))...) {
		if err := p.Stop(); err != nil {
			t.Logf("stop %s: %v", p.Name(), err)
		}
	}
	e.waitTable(t, "nothing after MetalLB stopped", frrTable{})

	// The operator's migration: the same YAML in, a ConfigMap out, checked.
	dir := t.TempDir()
	in := filepath.Join(dir, "metallb.yaml")
	if err := os.WriteFile(in, []byte(migrationConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	var cmYAML, notes bytes.Buffer
	cmd := exec.Command(v.bin, "migrate", in)
	cmd.Stdout, cmd.Stderr = &cmYAML, &notes
	if err := cmd.Run(); err != nil && cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("vipspeaker migrate: %v\n%s", err, notes.String())
	}
	t.Logf("vipspeaker migrate said:\n%s", notes.String())
	for _, n := range []string{"IPAddressPool/plain: no localPref: MetalLB's native mode sends LOCAL_PREF 0 to iBGP peers",
		"IPAddressPool/batch: aggregation: here Services with externalTrafficPolicy Local keep their host routes"} {
		if !strings.Contains(notes.String(), n) {
			t.Errorf("vipspeaker migrate did not say %q", n)
		}
	}
	cmFile := filepath.Join(dir, "cm.yaml")
	if err := os.WriteFile(cmFile, cmYAML.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(v.bin, "check", cmFile).CombinedOutput(); err != nil {
		t.Fatalf("vipspeaker check of the migrated ConfigMap: %v\n%s\n%s", err, out, cmYAML.String())
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(cmYAML.Bytes(), &cm); err != nil {
		t.Fatal(err)
	}
	v.migrated = cm.Data

	e.sys = v
	v.Install(t, e)
	v.Start(t, e)
	e.waitSessions(t)
	e.waitTable(t, "vipspeaker with the migrated configuration", noted)
}

// frrTable is what FRR's BGP table holds: prefix → one line per path,
// sorted: "NEXTHOP lp=LOCALPREF comm=COMMUNITIES[ large=…]" (communities
// sorted, as FRR writes them).
type frrTable map[string][]string

func (e *env) table() (frrTable, error) {
	routes, err := e.frr.BGPRoutes("ipv4")
	if err != nil {
		return nil, err
	}
	out := frrTable{}
	for pfx := range routes {
		paths, err := e.frr.PrefixPaths("ipv4", pfx.String())
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			comm := strings.Fields(p.Community)
			slices.Sort(comm)
			line := fmt.Sprintf("%s lp=%d comm=%s", strings.Join(p.NextHops, ","), p.LocalPref, strings.Join(comm, " "))
			if p.Large != "" {
				line += " large=" + p.Large
			}
			out[pfx.String()] = append(out[pfx.String()], line)
		}
		slices.Sort(out[pfx.String()])
	}
	return out, nil
}

// waitTable waits until FRR's table is want and returns it.
func (e *env) waitTable(t *testing.T, who string, want frrTable) frrTable {
	t.Helper()
	var got frrTable
	err := lab.Poll(45*time.Second, 100*time.Millisecond, func() error {
		var err error
		if got, err = e.table(); err != nil {
			return err
		}
		if !maps.EqualFunc(got, want, slices.Equal) {
			return fmt.Errorf("FRR holds %v", got)
		}
		return nil
	})
	if err != nil {
		log := ""
		if p := e.sys.Speaker(nodeNames[0]); p != nil {
			log = p.Log()
			log = log[max(0, len(log)-4000):]
		}
		t.Fatalf("%s: FRR's table is not %v: %v\n%s on %s, the end of its log:\n%s", who, want, err, e.sys.Name(), nodeNames[0], log)
	}
	return got
}
