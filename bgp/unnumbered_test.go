package bgp

import (
	"strings"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/config/oc"
)

const unnumberedConf = `[global.config]
  as = 65001
  router-id = "198.18.0.2"

[[neighbors]]
  [neighbors.config]
    neighbor-interface = "uplink-nowhere"
    peer-as = 65000
`

// A neighbor-interface is validated without looking at this host (the
// interface need not exist where `vipspeaker check` runs), and reaches
// GoBGP as an unnumbered neighbor with both unicast families, as gobgpd
// would configure it.
func TestValidateUnnumberedOffline(t *testing.T) {
	cfg, errs := parseConfig("gobgp.conf", []byte(unnumberedConf))
	if len(errs) != 0 {
		t.Fatalf("unnumbered neighbor refused: %v", errs)
	}
	n := cfg.set.Neighbors[0]
	if n.Config.NeighborInterface != "uplink-nowhere" || n.Config.NeighborAddress.IsValid() || n.State.NeighborAddress.IsValid() ||
		n.Transport.Config.LocalAddress.IsValid() {
		t.Errorf("neighbor = %+v %+v %+v, want the interface and no address", n.Config, n.State.NeighborAddress, n.Transport.Config)
	}
	var fams []oc.AfiSafiType
	for _, af := range n.AfiSafis {
		if af.Config.Enabled {
			fams = append(fams, af.Config.AfiSafiName)
		}
	}
	if len(fams) != 2 || fams[0] != oc.AFI_SAFI_TYPE_IPV4_UNICAST || fams[1] != oc.AFI_SAFI_TYPE_IPV6_UNICAST {
		t.Errorf("families = %v, want ipv4-unicast and ipv6-unicast", fams)
	}
	if k := neighborKey(&n); k != "interface uplink-nowhere" {
		t.Errorf("key = %q", k)
	}
}

func TestValidateUnnumberedErrors(t *testing.T) {
	for _, c := range []struct{ name, conf, want string }{
		{"both", strings.Replace(unnumberedConf, "peer-as = 65000", "peer-as = 65000\n    neighbor-address = \"198.18.0.1\"", 1),
			"gobgp.conf:7: neighbor 1: set neighbor-address or neighbor-interface, not both"},
		{"bfd", unnumberedConf + "  [neighbors.bfd.config]\n    enabled = true\n",
			"gobgp.conf:10: neighbor uplink-nowhere: BFD is not supported with neighbor-interface"},
		{"route server", unnumberedConf + "  [neighbors.route-server.config]\n    route-server-client = true\n",
			"gobgp.conf:10: neighbor uplink-nowhere: a route-server client cannot be unnumbered"},
		{"no peer-as", strings.Replace(unnumberedConf, "    peer-as = 65000\n", "", 1),
			"gobgp.conf:6: neighbor uplink-nowhere: peer-as is missing"},
	} {
		errs := Validate("gobgp.conf", []byte(c.conf))
		if len(errs) == 0 || !strings.HasPrefix(errs[0].Error(), c.want) {
			t.Errorf("%s: errors %v, want %q", c.name, errs, c.want)
		}
	}
}

// Families from the neighbor's peer group are kept.
func TestValidateUnnumberedPeerGroupFamilies(t *testing.T) {
	conf := strings.Replace(unnumberedConf, "    peer-as = 65000\n", "    peer-as = 65000\n    peer-group = \"tor\"\n", 1) + `
[[peer-groups]]
  [peer-groups.config]
    peer-group-name = "tor"
    peer-as = 65000
  [[peer-groups.afi-safis]]
    [peer-groups.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
`
	cfg, errs := parseConfig("gobgp.conf", []byte(conf))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if afs := cfg.set.Neighbors[0].AfiSafis; len(afs) != 1 || afs[0].Config.AfiSafiName != oc.AFI_SAFI_TYPE_IPV6_UNICAST {
		t.Errorf("families = %+v, want the peer group's ipv6-unicast", afs)
	}
}
