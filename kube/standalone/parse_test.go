package standalone

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplitDocuments(t *testing.T) {
	in := strings.Join([]string{
		"---",                   // 1: leading separator, empty doc dropped
		"# comment only",        // 2
		"---",                   // 3
		"apiVersion: v1",        // 4  doc 1 starts
		"kind: ConfigMap",       // 5
		"--- ",                  // 6
		"",                      // 7
		"  # indented comment",  // 8
		"kind: Service",         // 9  doc 2 starts
		"---- not a separator",  // 10
		"--- {kind: Namespace}", // 11 doc 3 on the separator line
		"---",                   // 12
		"",                      // 13 trailing blank doc dropped
	}, "\n")
	type got struct {
		Index, Start, Base int
		First              string
	}
	var docs []got
	for _, d := range splitDocuments([]byte(in)) {
		docs = append(docs, got{d.index, d.startLine, d.baseLine, strings.TrimSpace(strings.SplitN(strings.TrimLeft(string(d.data), "\n"), "\n", 2)[0])})
	}
	want := []got{
		{1, 4, 4, "apiVersion: v1"},
		{2, 9, 7, "# indented comment"},
		{3, 11, 11, "{kind: Namespace}"},
	}
	if diff := cmp.Diff(want, docs); diff != "" {
		t.Errorf("splitDocuments (-want +got):\n%s", diff)
	}
}

func TestParseVIP(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"203.0.113.10", ""},
		{"2001:db8:100::10", ""},
		{"198.51.100.255", ""}, // a host address, whatever the subnet
		{"203.0.113.300", `"203.0.113.300" is not an IP address`},
		{"web", `"web" is not an IP address`},
		{"203.0.113.10/32", `"203.0.113.10/32" is a prefix, not an address`},
		{"0.0.0.0", `"0.0.0.0" is the unspecified address, not a unicast VIP`},
		{"::", `"::" is the unspecified address, not a unicast VIP`},
		{"127.0.0.2", `"127.0.0.2" is a loopback address, not a unicast VIP`},
		{"::1", `"::1" is a loopback address, not a unicast VIP`},
		{"239.1.1.1", `"239.1.1.1" is a multicast address, not a unicast VIP`},
		{"ff05::2", `"ff05::2" is a multicast address, not a unicast VIP`},
		{"169.254.1.1", `"169.254.1.1" is a link-local address, not a unicast VIP`},
		{"fe80::1", `"fe80::1" is a link-local address, not a unicast VIP`},
		{"fe80::1%eth0", `"fe80::1%eth0" has a zone, not a unicast VIP`},
		{"255.255.255.255", `"255.255.255.255" is the limited broadcast address, not a unicast VIP`},
		{"::ffff:203.0.113.10", `"::ffff:203.0.113.10" is IPv4-mapped IPv6 (write 203.0.113.10), not a unicast VIP`},
	} {
		a, err := parseVIP(tc.in)
		got := ""
		if err != nil {
			got = err.Error()
		} else if a != netip.MustParseAddr(tc.in) {
			t.Errorf("parseVIP(%q) = %s", tc.in, a)
		}
		if got != tc.err {
			t.Errorf("parseVIP(%q) error = %q, want %q", tc.in, got, tc.err)
		}
	}
}

func TestParseCommunities(t *testing.T) {
	for _, tc := range []struct {
		in         string
		std, large []string
		errs       []string
	}{
		{in: "65000:100", std: []string{"65000:100"}},
		{in: "65000:100,large:65000:1:2", std: []string{"65000:100"}, large: []string{"65000:1:2"}},
		{
			in:  " 65000:200, 65000:100 ,65000:20,65000:100,no-export, NO-ADVERTISE ,local-as",
			std: []string{"65000:20", "65000:100", "65000:200", "65535:65281", "65535:65282", "65535:65283"},
		},
		{in: "no-peer blackhole graceful-shutdown", std: []string{"65535:0", "65535:666", "65535:65284"}},
		{in: "large:4294967295:0:1,large:10:2:3", large: []string{"10:2:3", "4294967295:0:1"}},
		{in: "", std: nil},
		{in: "65536:1", errs: []string{`"65536:1": "65536" is not a number in 0..65535`}},
		{in: "65000:-1", errs: []string{`"65000:-1": "-1" is not a number in 0..65535`}},
		{in: "65000", errs: []string{`"65000" is not a community (ASN:value, large:A:B:C or a well-known name)`}},
		{in: "no-exports", errs: []string{`"no-exports" is not a community (ASN:value, large:A:B:C or a well-known name)`}},
		{in: "large:1:2", errs: []string{`"large:1:2": a large community is large:A:B:C`}},
		{in: "large:1:2:4294967296", errs: []string{`"large:1:2:4294967296": "4294967296" is not a number in 0..4294967295`}},
		{
			in:   "65000:1,1:2:3,65000:x",
			std:  []string{"65000:1"},
			errs: []string{`"1:2:3" is not a community (ASN:value, large:A:B:C or a well-known name)`, `"65000:x": "x" is not a number in 0..65535`},
		},
	} {
		std, large, errs := parseCommunities(tc.in)
		var es []string
		for _, e := range errs {
			es = append(es, e.Error())
		}
		if diff := cmp.Diff([]any{tc.std, tc.large, tc.errs}, []any{std, large, es}); diff != "" {
			t.Errorf("parseCommunities(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}
