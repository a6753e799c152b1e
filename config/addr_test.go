package config

import (
	"math"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestPrefixRange(t *testing.T) {
	for _, tc := range []struct{ prefix, want string }{
		{"203.0.113.0/28", "203.0.113.0-203.0.113.15"},
		{"203.0.113.7/32", "203.0.113.7"},
		{"0.0.0.0/0", "0.0.0.0-255.255.255.255"},
		{"2001:db8:100::/120", "2001:db8:100::-2001:db8:100::ff"},
		{"2001:db8::/33", "2001:db8::-2001:db8:7fff:ffff:ffff:ffff:ffff:ffff"},
		{"2001:db8::1/128", "2001:db8::1"},
	} {
		if got := PrefixRange(netip.MustParsePrefix(tc.prefix)).String(); got != tc.want {
			t.Errorf("PrefixRange(%s) = %s, want %s", tc.prefix, got, tc.want)
		}
	}
}

func TestRangeSize(t *testing.T) {
	for _, tc := range []struct {
		r    Range
		want uint64
	}{
		{PrefixRange(netip.MustParsePrefix("203.0.113.0/24")), 256},
		{Range{netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.20")}, 11},
		{PrefixRange(netip.MustParsePrefix("0.0.0.0/0")), 1 << 32},
		{PrefixRange(netip.MustParsePrefix("2001:db8::/65")), 1 << 63},
		{PrefixRange(netip.MustParsePrefix("2001:db8::/64")), math.MaxUint64}, // saturated
		{PrefixRange(netip.MustParsePrefix("2001:db8::/32")), math.MaxUint64},
	} {
		if got := tc.r.Size(); got != tc.want {
			t.Errorf("%s.Size() = %d, want %d", tc.r, got, tc.want)
		}
	}
}

func TestPoolAddresses(t *testing.T) {
	cfg, errs := Parse("f.toml", []byte(`
[[pools]]
name = "p"
addresses = ["2001:db8:100::fe/127", "198.51.100.254-198.51.101.1", "203.0.113.0/30"]
`))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	p := cfg.Pools[0]

	got := slices.Collect(p.All())
	want := addrs("198.51.100.254", "198.51.100.255", "198.51.101.0", "198.51.101.1",
		"203.0.113.0", "203.0.113.1", "203.0.113.2", "203.0.113.3",
		"2001:db8:100::fe", "2001:db8:100::ff")
	if diff := cmp.Diff(want, got, netipCmp); diff != "" {
		t.Errorf("All() (-want +got):\n%s", diff)
	}
	if v4, v6 := p.Size(); v4 != 8 || v6 != 2 {
		t.Errorf("Size() = %d, %d; want 8, 2", v4, v6)
	}
	for _, a := range want {
		if !p.Contains(a) {
			t.Errorf("Contains(%s) = false", a)
		}
	}
	for _, a := range addrs("198.51.100.253", "198.51.101.2", "203.0.113.4", "2001:db8:100::100", "2001:db8:100::fd") {
		if p.Contains(a) {
			t.Errorf("Contains(%s) = true", a)
		}
	}

	// avoid-buggy-ips drops .0 and .255 from every view.
	p.AvoidBuggyIPs = true
	got = slices.Collect(p.All())
	want = addrs("198.51.100.254", "198.51.101.1",
		"203.0.113.1", "203.0.113.2", "203.0.113.3",
		"2001:db8:100::fe", "2001:db8:100::ff")
	if diff := cmp.Diff(want, got, netipCmp); diff != "" {
		t.Errorf("All() with avoid-buggy-ips (-want +got):\n%s", diff)
	}
	if v4, v6 := p.Size(); v4 != 5 || v6 != 2 {
		t.Errorf("Size() with avoid-buggy-ips = %d, %d; want 5, 2", v4, v6)
	}
	for _, a := range addrs("198.51.100.255", "198.51.101.0", "203.0.113.0") {
		if p.Contains(a) {
			t.Errorf("Contains(%s) with avoid-buggy-ips = true", a)
		}
	}
}

func TestBuggyCount(t *testing.T) {
	// Cross-check the arithmetic against a walk.
	for _, r := range []Range{
		PrefixRange(netip.MustParsePrefix("198.51.100.0/22")),
		{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.254")},
		{netip.MustParseAddr("198.51.100.255"), netip.MustParseAddr("198.51.101.0")},
		{netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("0.0.1.0")},
	} {
		var walk uint64
		for a := range r.All() {
			if buggy(a) {
				walk++
			}
		}
		if got := buggyIn(r); got != walk {
			t.Errorf("buggyIn(%s) = %d, walk says %d", r, got, walk)
		}
	}
}

func TestAllStopsEarly(t *testing.T) {
	p := Pool{Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}}
	n := 0
	for range p.All() {
		n++
		if n == 1000 {
			break
		}
	}
	if n != 1000 {
		t.Errorf("iterated %d addresses, want 1000", n)
	}
}

func BenchmarkPoolContains(b *testing.B) {
	p := Pool{Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:100::/64")},
		Ranges: []Range{{netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.200")}}}
	a := netip.MustParseAddr("198.51.100.100")
	for b.Loop() {
		p.Contains(a)
	}
}
