package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vipspeaker/vipspeaker/routing"
)

var netipCmp = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func errStrings(errs []error) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func TestDefaults(t *testing.T) {
	want := &Config{
		Interface:      Interface{Name: "kube-lb0", Kind: KindDummy},
		Layer2:         Layer2{GratuitousCount: 3, GratuitousInterval: 500 * time.Millisecond, FastPath: FastPathAuto},
		ImportToKernel: ImportToKernel{Table: 254},
		VIPCounters:    VIPCounters{Fallback: CountersNFTables},
	}
	got, errs := Parse("vipspeaker.toml", []byte("# nothing set\n"))
	if len(errs) > 0 {
		t.Fatalf("Parse(empty): %v", errs)
	}
	if diff := cmp.Diff(want, got, netipCmp); diff != "" {
		t.Errorf("Parse(empty) (-want +got):\n%s", diff)
	}

	// A directory without the file: defaults, no error.
	got, errs = LoadDir(t.TempDir())
	if len(errs) > 0 {
		t.Fatalf("LoadDir(empty dir): %v", errs)
	}
	if diff := cmp.Diff(want, got, netipCmp); diff != "" {
		t.Errorf("LoadDir(empty dir) (-want +got):\n%s", diff)
	}
}

func TestParseFull(t *testing.T) {
	const doc = `
default-class = true

[import-to-kernel]
enabled = true
table = 100

[interface]
name = "vip0"
kind = "ifb"

[[pools]]
name = "public"
addresses = ["203.0.113.0/28", "198.51.100.10 - 198.51.100.20", "2001:db8:100::/120", "198.51.100.99"]
auto-assign = false
avoid-buggy-ips = true
namespaces = ["web", "dns"]

[[pools]]
name = "lan"
addresses = ["198.51.100.128/27"]
mode = "layer2"
  [pools.layer2]
  interfaces = ["eth0", "eth1"]

[layer2]
gratuitous-count = 0
gratuitous-interval = "1s"
fast-path = "off"

[vip-counters]
fallback = "off"

[membership]
join = ["198.18.0.2", "198.18.0.3:7946", "speaker-3.example"]
secret-file = "/etc/vipspeaker/secret/key"

[[peer-nodes]]
neighbors = ["198.18.0.1", "2001:db8:ffff::1"]
node-selector = "topology.kubernetes.io/zone in (rack1, rack2)"
`
	want := &Config{
		DefaultClass: true,
		Interface:    Interface{Name: "vip0", Kind: KindIFB},
		Pools: []Pool{
			{
				Name:          "public",
				Prefixes:      []netip.Prefix{netip.MustParsePrefix("203.0.113.0/28"), netip.MustParsePrefix("2001:db8:100::/120")},
				Ranges:        []Range{{netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.20")}, {netip.MustParseAddr("198.51.100.99"), netip.MustParseAddr("198.51.100.99")}},
				Mode:          routing.ModeBGP,
				AutoAssign:    false,
				AvoidBuggyIPs: true,
				Namespaces:    []string{"web", "dns"},
			},
			{
				Name:       "lan",
				Prefixes:   []netip.Prefix{netip.MustParsePrefix("198.51.100.128/27")},
				Mode:       routing.ModeLayer2,
				AutoAssign: true,
				Layer2:     PoolLayer2{Interfaces: []string{"eth0", "eth1"}},
			},
		},
		Layer2:         Layer2{GratuitousCount: 0, GratuitousInterval: time.Second, FastPath: FastPathOff},
		ImportToKernel: ImportToKernel{Enabled: true, Table: 100},
		VIPCounters:    VIPCounters{Fallback: CountersOff},
		Membership: Membership{
			Join:       []string{"198.18.0.2", "198.18.0.3:7946", "speaker-3.example"},
			SecretFile: "/etc/vipspeaker/secret/key",
		},
		PeerNodes: []PeerNodes{{
			Neighbors:    []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8:ffff::1")},
			NodeSelector: "topology.kubernetes.io/zone in (rack1, rack2)",
		}},
	}
	got, errs := Parse("vipspeaker.toml", []byte(doc))
	if len(errs) > 0 {
		t.Fatalf("Parse: %v", errStrings(errs))
	}
	if diff := cmp.Diff(want, got, netipCmp); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
	if p := got.PoolOf(netip.MustParseAddr("198.51.100.140")); p == nil || p.Name != "lan" {
		t.Errorf("PoolOf(198.51.100.140) = %v, want lan", p)
	}
	if p := got.Pool("public"); p == nil || !p.Contains(netip.MustParseAddr("2001:db8:100::ff")) {
		t.Errorf("Pool(public) does not contain 2001:db8:100::ff")
	}
}

// TestParseErrors has one seed per kind of error; each must name the file,
// the line of the offending key or element, and the field.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []string
	}{
		{
			name: "syntax error",
			doc:  "[interface]\nname = \"kube-lb0\n",
			want: []string{`f.toml:2: basic strings cannot have new lines`},
		},
		{
			name: "wrong type",
			doc:  "[layer2]\n\ngratuitous-count = \"three\"\n",
			want: []string{`f.toml:3: layer2.gratuitous-count: expected an integer, found a string`},
		},
		{
			name: "unknown keys, all of them",
			doc:  "default-klass = true\n[interface]\nnaem = \"x\"\n[[pools]]\nname = \"p\"\naddresses = [\"203.0.113.0/28\"]\n[pools.layer2]\ninterface = [\"eth0\"]\n[bgp]\n",
			want: []string{
				`f.toml:1: default-klass: unknown key`,
				`f.toml:3: interface.naem: unknown key`,
				`f.toml:8: pools[0].layer2.interface: unknown key`,
				`f.toml:9: bgp: unknown key`,
			},
		},
		{
			name: "bad CIDR",
			doc:  "[[pools]]\nname = \"p\"\naddresses = [\n  \"203.0.113.0/28\",\n  \"203.0.113.0/33\",\n]\n",
			want: []string{`f.toml:5: pools[0].addresses[1]: "203.0.113.0/33" is not a CIDR: prefix length out of range`},
		},
		{
			name: "CIDR with host bits",
			doc:  "[[pools]]\nname = \"p\"\naddresses = [\"203.0.113.5/28\"]\n",
			want: []string{`f.toml:3: pools[0].addresses[0]: "203.0.113.5/28" has host bits set (did you mean 203.0.113.0/28?)`},
		},
		{
			name: "not an address",
			doc:  "[[pools]]\nname = \"p\"\naddresses = [\"203.0.113.300\"]\n",
			want: []string{`f.toml:3: pools[0].addresses[0]: "203.0.113.300" is not an IP address`},
		},
		{
			name: "range start after end",
			doc:  "[[pools]]\nname = \"p\"\naddresses = [\"198.51.100.20-198.51.100.10\"]\n",
			want: []string{`f.toml:3: pools[0].addresses[0]: range "198.51.100.20-198.51.100.10": start is after end`},
		},
		{
			name: "range mixes families",
			doc:  "[[pools]]\nname = \"p\"\naddresses = [\"198.51.100.20-2001:db8::1\"]\n",
			want: []string{`f.toml:3: pools[0].addresses[0]: range "198.51.100.20-2001:db8::1" mixes IPv4 and IPv6`},
		},
		{
			name: "special address space",
			doc:  "[[pools]]\nname = \"p\"\naddresses = [\n\"127.0.0.0/30\",\n\"fe80::/64\",\n\"0.0.0.0/0\",\n\"ff02::1\",\n\"::ffff:203.0.113.1\",\n]\n",
			want: []string{
				`f.toml:4: pools[0].addresses[0]: "127.0.0.0/30" includes loopback space (127.0.0.0-127.255.255.255)`,
				`f.toml:5: pools[0].addresses[1]: "fe80::/64" includes link-local space (fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff)`,
				`f.toml:6: pools[0].addresses[2]: "0.0.0.0/0" includes the unspecified address (0.0.0.0)`,
				`f.toml:7: pools[0].addresses[3]: "ff02::1" includes multicast space (ff00::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff)`,
				`f.toml:8: pools[0].addresses[4]: "::ffff:203.0.113.1" includes IPv4-mapped space (write the IPv4 address) (::ffff:0.0.0.0-::ffff:255.255.255.255)`,
			},
		},
		{
			name: "overlapping pools",
			doc:  "[[pools]]\nname = \"a\"\naddresses = [\"203.0.113.0/28\", \"2001:db8:100::/120\"]\n\n[[pools]]\nname = \"b\"\naddresses = [\"2001:db8:100::80-2001:db8:100::1:0\", \"203.0.113.15\"]\n",
			want: []string{
				`f.toml:7: pools[1].addresses[0]: 2001:db8:100::80-2001:db8:100::1:0 overlaps 2001:db8:100::/120 of pool "a" (line 3)`,
				`f.toml:7: pools[1].addresses[1]: 203.0.113.15 overlaps 203.0.113.0/28 of pool "a" (line 3)`,
			},
		},
		{
			name: "overlap inside one pool",
			doc:  "[[pools]]\nname = \"a\"\naddresses = [\n\"203.0.113.0/28\",\n\"203.0.113.8-203.0.113.9\",\n]\n",
			want: []string{`f.toml:5: pools[0].addresses[1]: 203.0.113.8-203.0.113.9 overlaps 203.0.113.0/28 of the same pool (line 4)`},
		},
		{
			name: "duplicate pool name",
			doc:  "[[pools]]\nname = \"a\"\naddresses = [\"203.0.113.0/28\"]\n[[pools]]\nname = \"a\"\naddresses = [\"203.0.113.16/28\"]\n",
			want: []string{`f.toml:5: pools[1].name: pool "a" is already defined (line 2)`},
		},
		{
			name: "pool without name or addresses",
			doc:  "[[pools]]\nmode = \"bgp\"\n",
			want: []string{
				`f.toml:1: pools[0].addresses: a pool needs at least one address`,
				`f.toml:1: pools[0].name: missing pool name`,
			},
		},
		{
			name: "bad pool and namespace names",
			doc:  "[[pools]]\nname = \"Public_1\"\naddresses = [\"203.0.113.0/28\"]\nnamespaces = [\"web\", \"Web!\", \"web\"]\n",
			want: []string{
				`f.toml:2: pools[0].name: "Public_1" is not a valid name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
				`f.toml:4: pools[0].namespaces[1]: "Web!" is not a namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
				`f.toml:4: pools[0].namespaces[2]: namespace "web" is listed twice`,
			},
		},
		{
			name: "unknown mode",
			doc:  "[[pools]]\nname = \"a\"\naddresses = [\"203.0.113.0/28\"]\nmode = \"l2\"\n",
			want: []string{`f.toml:4: pools[0].mode: "l2" is not a mode (bgp or layer2)`},
		},
		{
			name: "layer2 pool without interfaces",
			doc:  "[[pools]]\nname = \"a\"\naddresses = [\"203.0.113.0/28\"]\nmode = \"layer2\"\n",
			want: []string{`f.toml:4: pools[0].layer2.interfaces: a layer2 pool needs [pools.layer2] interfaces (where ARP/NDP is answered)`},
		},
		{
			name: "layer2 pool with empty interfaces points at the section",
			doc:  "[[pools]]\nname = \"a\"\naddresses = [\"203.0.113.0/28\"]\nmode = \"layer2\"\n[pools.layer2]\ninterfaces = []\n",
			want: []string{`f.toml:6: pools[0].layer2.interfaces: a layer2 pool needs [pools.layer2] interfaces (where ARP/NDP is answered)`},
		},
		{
			name: "interface names",
			doc:  "[interface]\nname = \"kube-lb0-far-too-long\"\nkind = \"bridge\"\n[[pools]]\nname = \"a\"\naddresses = [\"203.0.113.0/28\"]\nmode = \"layer2\"\n[pools.layer2]\ninterfaces = [\"eth0\", \"\", \"a/b\"]\n",
			want: []string{
				`f.toml:2: interface.name: interface name "kube-lb0-far-too-long" is longer than 15 characters`,
				`f.toml:3: interface.kind: "bridge" is not a link kind (dummy or ifb)`,
				`f.toml:9: pools[0].layer2.interfaces[1]: empty interface name`,
				`f.toml:9: pools[0].layer2.interfaces[2]: "a/b" is not a valid interface name`,
			},
		},
		{
			name: "layer2 section",
			doc:  "[layer2]\ngratuitous-count = -1\ngratuitous-interval = \"5 s\"\nfast-path = \"fast\"\npin-dir = \"bpf/here\"\n",
			want: []string{
				`f.toml:2: layer2.gratuitous-count: -1 is out of range 0..100`,
				`f.toml:3: layer2.gratuitous-interval: "5 s" is not a duration (like "500ms")`,
				`f.toml:4: layer2.fast-path: "fast" is not auto, xdp or off`,
				`f.toml:5: layer2.pin-dir: "bpf/here" is not an absolute path`,
			},
		},
		{
			name: "vip counters",
			doc:  "[layer2]\nfast-path = \"off\"\n[vip-counters]\nfallback = \"iptables\"\n",
			want: []string{
				`f.toml:4: vip-counters.fallback: "iptables" is not nftables or off`,
			},
		},
		{
			name: "durations out of range",
			doc:  "[layer2]\ngratuitous-count = 101\ngratuitous-interval = \"-1s\"\n",
			want: []string{
				`f.toml:2: layer2.gratuitous-count: 101 is out of range 0..100`,
				`f.toml:3: layer2.gratuitous-interval: -1s is out of range 1ms..1m`,
			},
		},
		{
			name: "membership",
			doc:  "[membership]\njoin = [\"198.18.0.2:0\", \"\", \":7946\"]\nsecret-file = \"key\"\n",
			want: []string{
				`f.toml:2: membership.join[0]: "198.18.0.2:0": port "0" is not 1..65535`,
				`f.toml:2: membership.join[1]: empty address`,
				`f.toml:2: membership.join[2]: ":7946" has no host`,
				`f.toml:3: membership.secret-file: "key" is not an absolute path (or secret:NAME/KEY in cluster mode)`,
			},
		},
		{
			name: "membership secret references",
			doc:  "[membership]\nsecret-file = \"secret:Bad_Name/key\"\n",
			want: []string{
				`f.toml:2: membership.secret-file: "secret:Bad_Name/key": "Bad_Name" is not a Secret name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
			},
		},
		{
			name: "membership secret reference without key",
			doc:  "[membership]\nsecret-file = \"secret:memberlist\"\n",
			want: []string{
				`f.toml:2: membership.secret-file: "secret:memberlist": want secret:NAME/KEY (a Secret in the agent's namespace and one of its keys)`,
			},
		},
		{
			name: "peer nodes",
			doc: "[[peer-nodes]]\nneighbors = [\"198.18.0.1\", \"rr1\"]\nnode-selector = \"zone in rack1\"\n" +
				"[[peer-nodes]]\nneighbors = [\"198.18.0.1\"]\nnode-selector = \"\"\n[[peer-nodes]]\nnode-selector = \"a=b\"\n",
			want: []string{
				`f.toml:2: peer-nodes[0].neighbors[1]: "rr1" is not an IP address`,
				`f.toml:3: peer-nodes[0].node-selector: "zone in rack1" is not a label selector: unable to parse requirement: found 'rack1' expected: '('`,
				`f.toml:5: peer-nodes[1].neighbors[0]: neighbor 198.18.0.1 is already restricted by peer-nodes[0].neighbors[0] (line 2); use one selector such as "zone in (a,b)"`,
				`f.toml:6: peer-nodes[1].node-selector: needs a label selector (an empty one matches every node)`,
				`f.toml:7: peer-nodes[2].neighbors: needs at least one neighbor address`,
			},
		},
		{
			name: "inline tables and dotted keys are located too",
			doc:  "pools = [\n  { name = \"a\", addresses = [\"203.0.113.0/28\"] },\n  { name = \"b\", mode = \"anycast\", addresses = [\"198.51.100.0/24\"] },\n]\nlayer2.fast-path = \"on\"\n",
			want: []string{
				`f.toml:3: pools[1].mode: "anycast" is not a mode (bgp or layer2)`,
				`f.toml:5: layer2.fast-path: "on" is not auto, xdp or off`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, errs := Parse("f.toml", []byte(tc.doc))
			if cfg != nil {
				t.Errorf("Parse returned a config despite errors")
			}
			if diff := cmp.Diff(tc.want, errStrings(errs)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			for _, err := range errs {
				var ce *Error
				if !errors.As(err, &ce) || ce.File != "f.toml" || ce.Line == 0 {
					t.Errorf("error %v is not a *config.Error with file and line", err)
				}
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		err  Error
		want string
	}{
		{Error{File: "a.toml", Line: 3, Field: "interface.name", Msg: "bad"}, "a.toml:3: interface.name: bad"},
		{Error{File: "a.toml", Field: "interface.name", Msg: "bad"}, "a.toml: interface.name: bad"},
		{Error{File: "a.toml", Line: 1, Msg: "bad"}, "a.toml:1: bad"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, FileName)
	if err := os.WriteFile(file, []byte("[interface]\nname = \"vip0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, errs := LoadDir(dir)
	if len(errs) > 0 {
		t.Fatalf("LoadDir: %v", errs)
	}
	if cfg.Interface.Name != "vip0" || cfg.Interface.Kind != KindDummy {
		t.Errorf("interface = %+v, want vip0/dummy", cfg.Interface)
	}

	if err := os.WriteFile(file, []byte("[interface]\nkind = \"veth\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, errs = LoadDir(dir)
	if cfg != nil || len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), file+":2: interface.kind: ") {
		t.Errorf("LoadDir(bad kind) = %v, %v; want nil and one error at %s:2", cfg, errs, file)
	}

	// Unreadable: the name is a directory.
	dir2 := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir2, FileName), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, errs = LoadDir(dir2)
	if cfg != nil || len(errs) != 1 || !strings.Contains(errs[0].Error(), "read: is a directory") {
		t.Errorf("LoadDir(dir as file) = %v, %v; want a read error", cfg, errs)
	}
}

// TestExampleConfig keeps the shipped example valid.
func TestExampleConfig(t *testing.T) {
	cfg, errs := LoadDir(filepath.Join("..", "deploy", "examples", "config"))
	if len(errs) > 0 {
		t.Fatalf("example config: %v", errStrings(errs))
	}
	if len(cfg.Pools) != 3 || cfg.Pools[1].Mode != routing.ModeLayer2 || len(cfg.PeerNodes) != 1 ||
		cfg.Pools[2].Advertise.AggregationLength != 26 || cfg.Pools[2].Advertise.NodeSelector == "" {
		t.Errorf("example config parsed to %+v", cfg)
	}
	v4, v6 := cfg.Pools[0].Size()
	if v4 != 16+11 || v6 != 256 {
		t.Errorf("public pool size = %d v4, %d v6; want 27, 256", v4, v6)
	}
}

func TestSecretRef(t *testing.T) {
	cfg, errs := Parse("f.toml", []byte("[membership]\nsecret-file = \"secret:memberlist/key.txt\"\n"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := SecretRef{Name: "memberlist", Key: "key.txt"}
	if cfg.Membership.SecretRef != want || cfg.Membership.SecretFile != "secret:memberlist/key.txt" {
		t.Errorf("membership = %+v, want SecretRef %+v and the text kept", cfg.Membership, want)
	}
	if got := want.String(); got != "secret:memberlist/key.txt" {
		t.Errorf("String() = %q", got)
	}
	cfg, errs = Parse("f.toml", []byte("[membership]\nsecret-file = \"/etc/key\"\n"))
	if len(errs) > 0 || !cfg.Membership.SecretRef.IsZero() {
		t.Errorf("a path: %v, ref %+v", errs, cfg.Membership.SecretRef)
	}
	for _, s := range []string{"secret:a/", "secret:/k", "secret:a/b/c"} {
		if _, ok, err := ParseSecretRef(s); !ok || err == nil {
			t.Errorf("ParseSecretRef(%q): ok %v err %v, want a refusal", s, ok, err)
		}
	}
}
