package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vipspeaker/vipspeaker/routing"
)

func TestControlPlane(t *testing.T) {
	doc := `[control-plane]
address = "198.51.100.10"
interfaces = ["eth0"]
  [control-plane.health-check]
  url = "https://127.0.0.1:6443/readyz"
  ca-file = "/etc/kubernetes/pki/ca.crt"
`
	c, errs := Parse("f.toml", []byte(doc))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	cp := c.ControlPlane
	want := HealthCheck{URL: "https://127.0.0.1:6443/readyz", CAFile: "/etc/kubernetes/pki/ca.crt",
		Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond, Rise: 3, Fall: 3}
	if diff := cmp.Diff(want, cp.Check); diff != "" {
		t.Errorf("health check (-want +got):\n%s", diff)
	}
	if cp.Mode != routing.ModeLayer2 {
		t.Errorf("mode %q, want layer2 by default", cp.Mode)
	}
	p := c.Pool(ControlPlanePool)
	if p == nil || p.AutoAssign || len(p.Layer2.Interfaces) != 1 {
		t.Fatalf("pool of the control-plane VIP: %+v", p)
	}
	if v := cp.VIP(false); v.Attrs.Prepend != 0 {
		t.Errorf("layer2 VIP with prepend %d", v.Attrs.Prepend)
	}
	cp.Mode = routing.ModeBGP
	if v := cp.VIP(false); v.Attrs.Prepend != ControlPrepend {
		t.Errorf("bgp VIP of a failing node: prepend %d, want %d", v.Attrs.Prepend, ControlPrepend)
	}
	if v := cp.VIP(true); v.Attrs.Prepend != 0 {
		t.Errorf("bgp VIP of a passing node: prepend %d", v.Attrs.Prepend)
	}
	if errs := c.ClusterErrors("cm"); len(errs) != 1 || errs[0].Error()[:5] != "cm:1:" {
		t.Errorf("cluster mode: %v, want one error at line 1", errs)
	}
}

func TestControlPlaneErrors(t *testing.T) {
	doc := `[[pools]]
name = "control-plane"
addresses = ["203.0.113.0/28"]

[control-plane]
address = "203.0.113.5"
mode = "layer3"
  [control-plane.health-check]
  url = "ftp://x"
  ca-file = "rel/ca.crt"
  interval = "1ms"
  rise = 0
  cert-file = "/a"
`
	_, errs := Parse("f.toml", []byte(doc))
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{
		`f.toml:2: pools[0].name: "control-plane" is the name of the [control-plane] VIP's pool; choose another`,
		`f.toml:6: control-plane.address: 203.0.113.5 overlaps 203.0.113.0/28 of pool "control-plane" (line 3)`,
		`f.toml:7: control-plane.interfaces: layer2 mode needs interfaces (where ARP/NDP is answered for the VIP)`,
		`f.toml:7: control-plane.mode: "layer3" is not a mode (bgp or layer2)`,
		`f.toml:9: control-plane.health-check.url: "ftp://x" is not an http:// or https:// URL`,
		`f.toml:10: control-plane.health-check.ca-file: "rel/ca.crt" is not an absolute path`,
		`f.toml:11: control-plane.health-check.interval: 1ms is out of range 10ms..1m0s`,
		`f.toml:12: control-plane.health-check.rise: 0 is out of range 1..100`,
		`f.toml:13: control-plane.health-check.cert-file: cert-file and key-file go together`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	for _, tc := range []struct{ doc, want string }{
		{"[control-plane]\naddress = \"198.51.100.1\"\nmode = \"bgp\"\n", `f.toml:1: control-plane.health-check: needs url (like "https://127.0.0.1:6443/readyz") or tcp (host:port)`},
		{"[control-plane]\nmode = \"bgp\"\n[control-plane.health-check]\ntcp = \"127.0.0.1:6443\"\n", `f.toml:1: control-plane.address: missing: the control-plane VIP (kubeadm's controlPlaneEndpoint address)`},
		{"[control-plane]\naddress = \"198.51.100.1\"\nmode = \"bgp\"\n[control-plane.health-check]\ntcp = \"127.0.0.1\"\n", `f.toml:5: control-plane.health-check.tcp: "127.0.0.1" is not host:port`},
	} {
		_, errs := Parse("f.toml", []byte(tc.doc))
		if len(errs) != 1 || errs[0].Error() != tc.want {
			t.Errorf("%q: %v, want %s", tc.doc, errs, tc.want)
		}
	}
}

func TestControlPlaneBGPNeedsEBGP(t *testing.T) {
	toml := []byte("[control-plane]\naddress = \"198.51.100.10\"\nmode = \"bgp\"\n[control-plane.health-check]\ntcp = \"127.0.0.1:6443\"\n")
	c, errs := Parse("v.toml", toml)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	ebgp := []byte("[global.config]\nas = 64512\n[[neighbors]]\n[neighbors.config]\nneighbor-address = \"198.51.100.1\"\npeer-as = 64500\n")
	if errs := CheckWithGoBGP("v.toml", toml, c, "gobgp.conf", ebgp); len(errs) > 0 {
		t.Errorf("eBGP refused: %v", errs)
	}
	ibgp := []byte("[global.config]\nas = 64512\n[[neighbors]]\n[neighbors.config]\nneighbor-address = \"198.51.100.1\"\npeer-as = 64512\n")
	errs = CheckWithGoBGP("v.toml", toml, c, "gobgp.conf", ibgp)
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "v.toml:3: control-plane.mode: bgp mode needs eBGP sessions, and neighbor 198.51.100.1") {
		t.Errorf("iBGP: %v, want one error at line 3", errs)
	}
}
