package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vipspeaker/vipspeaker/routing"
)

const peersGoBGP = `[global.config]
  as = 65001
[[neighbors]]
  [neighbors.config]
    neighbor-address = "198.18.0.1"
    peer-as = 65000
[[neighbors]]
  [neighbors.config]
    neighbor-address = "2001:DB8:18::1"
    peer-as = 65000
[[neighbors]]
  [neighbors.config]
    neighbor-interface = "eth1"
    peer-as = 65000
`

func TestPoolPeers(t *testing.T) {
	const doc = `
[[pools]]
name = "a"
addresses = ["203.0.113.0/25", "198.51.100.10-198.51.100.20", "2001:db8:100::/120"]
[pools.advertise]
peers = ["198.18.0.1", " 2001:db8:18:0::1 ", "eth1"]

[[pools]]
name = "b"
addresses = ["203.0.113.128/25"]
`
	c, errs := Parse("vipspeaker.toml", []byte(doc))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if errs := CheckWithGoBGP("vipspeaker.toml", []byte(doc), c, "gobgp.conf", []byte(peersGoBGP)); len(errs) > 0 {
		t.Fatalf("every peer is a neighbor of gobgp.conf: %v", errs)
	}
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	want := []routing.PoolPeers{{
		Pool: "a",
		// the range as the fewest prefixes holding exactly its addresses
		Prefixes: pfx("198.51.100.10/31", "198.51.100.12/30", "198.51.100.16/30", "198.51.100.20/32",
			"203.0.113.0/25", "2001:db8:100::/120"),
		Peers: []string{"198.18.0.1", "2001:db8:18::1", "eth1"},
	}}
	if diff := cmp.Diff(want, c.PoolPeers()); diff != "" {
		t.Errorf("PoolPeers (-want +got):\n%s", diff)
	}
}

func TestRangePrefixes(t *testing.T) {
	for _, tc := range []struct {
		first, last string
		want        []string
	}{
		{"203.0.113.7", "203.0.113.7", []string{"203.0.113.7/32"}},
		{"203.0.113.0", "203.0.113.255", []string{"203.0.113.0/24"}},
		{"0.0.0.0", "255.255.255.255", []string{"0.0.0.0/0"}},
		{"203.0.113.255", "203.0.114.1", []string{"203.0.113.255/32", "203.0.114.0/31"}},
		{"2001:db8::1", "2001:db8::3", []string{"2001:db8::1/128", "2001:db8::2/127"}},
	} {
		var got []string
		for _, p := range (Range{First: netip.MustParseAddr(tc.first), Last: netip.MustParseAddr(tc.last)}).Prefixes() {
			got = append(got, p.String())
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s-%s (-want +got):\n%s", tc.first, tc.last, diff)
		}
	}
}

// Bad peers are refused with the line and the field: what is not an
// address or an interface name, a repeat, a layer2 pool's peers, and (with
// gobgp.conf) a peer that gobgp.conf does not define.
func TestPoolPeersErrors(t *testing.T) {
	const doc = `
[[pools]]
name = "a"
addresses = ["203.0.113.0/25"]
[pools.advertise]
peers = [
  "198.18.0.1",
  "fe80::1%eth0",
  "not an address",
  "::ffff:198.18.0.1",
]

[[pools]]
name = "b"
addresses = ["203.0.113.128/25"]
mode = "layer2"
[pools.layer2]
interfaces = ["eth0"]
[pools.advertise]
peers = ["198.18.0.1"]
`
	_, errs := Parse("vipspeaker.toml", []byte(doc))
	want := []string{
		`vipspeaker.toml:8: pools[0].advertise.peers[1]: "fe80::1%eth0": name an unnumbered neighbor by its interface (neighbor-interface), not a zoned address`,
		`vipspeaker.toml:9: pools[0].advertise.peers[2]: "not an address" is neither a neighbor address nor an interface name (neighbor-interface)`,
		`vipspeaker.toml:10: pools[0].advertise.peers[3]: peer 198.18.0.1 is already listed (line 7)`,
		`vipspeaker.toml:20: pools[1].advertise.peers: a layer2 pool is not announced over BGP: peers apply to bgp pools`,
	}
	if diff := cmp.Diff(want, errStrings(errs)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}

	// a peer gobgp.conf does not define, in a config directory: LoadDir
	// refuses the whole config
	dir := t.TempDir()
	const undefined = `[[pools]]
name = "a"
addresses = ["203.0.113.0/25"]
  [pools.advertise]
  peers = ["198.18.0.1",
    "198.18.0.9", "eth2"]
`
	for name, data := range map[string]string{FileName: undefined, GoBGPFileName: peersGoBGP} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, errs := LoadDir(dir)
	file, gobgp := filepath.Join(dir, FileName), filepath.Join(dir, GoBGPFileName)
	want = []string{
		file + `:6: pools[0].advertise.peers[1]: 198.18.0.9 is not a neighbor in ` + gobgp + ` (a [[neighbors]] entry's neighbor-address, or neighbor-interface for an unnumbered one)`,
		file + `:6: pools[0].advertise.peers[2]: eth2 is not a neighbor in ` + gobgp + ` (a [[neighbors]] entry's neighbor-address, or neighbor-interface for an unnumbered one)`,
	}
	if diff := cmp.Diff(want, errStrings(errs)); diff != "" || c != nil {
		t.Errorf("LoadDir = %v, errors (-want +got):\n%s", c, diff)
	}
	// without a gobgp.conf there is nothing to check the peers against
	if errs := CheckWithGoBGP("vipspeaker.toml", []byte(undefined), &Config{Pools: []Pool{{Advertise: PoolAdvertise{Peers: []string{"198.18.0.9"}}}}},
		"gobgp.conf", nil); len(errs) > 0 {
		t.Errorf("without gobgp.conf: %v", errs)
	}
}
