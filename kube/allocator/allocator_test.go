package allocator

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vipspeaker/vipspeaker/config"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// pools parses a vipspeaker.toml so the tests use pools exactly as the
// config package builds them.
func pools(t *testing.T, toml string) []config.Pool {
	t.Helper()
	cfg, errs := config.Parse("test.toml", []byte(toml))
	if len(errs) > 0 {
		t.Fatalf("config: %v", errs)
	}
	return cfg.Pools
}

// stdPools: the IPv4 blocks are ranges, so every address of them is handed
// out (TestNetworkAndBroadcast covers CIDRs).
const stdPools = `
[[pools]]
name = "public"
addresses = ["203.0.113.0-203.0.113.3", "2001:db8:100::/126"]

[[pools]]
name = "v4only"
addresses = ["198.51.100.10-198.51.100.11"]

[[pools]]
name = "reserved"
addresses = ["198.51.100.128-198.51.100.131"]
auto-assign = false

[[pools]]
name = "team"
addresses = ["198.51.100.200/31"]
auto-assign = false
namespaces = ["team-a"]
`

func svc(name string) Request {
	return Request{Service: "default/" + name, Namespace: "default"}
}

func mustAssign(t *testing.T, a *Allocator, r Request) Assignment {
	t.Helper()
	res, err := a.Assign(r)
	if err != nil {
		t.Fatalf("assign %s: %v", r.Service, err)
	}
	return res
}

func wantReason(t *testing.T, err error, want Reason) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v, want reason %s", err, want)
	}
	if e.Reason != want {
		t.Fatalf("reason = %s (%s), want %s", e.Reason, e.Msg, want)
	}
}

func TestFamilies(t *testing.T) {
	tests := []struct {
		name      string
		fams      []Family
		require   bool
		pool      string
		want      []netip.Addr
		wantPool  string
		wantError Reason
	}{
		{name: "default is IPv4", want: addrs("203.0.113.0"), wantPool: "public"},
		{name: "IPv4", fams: []Family{IPv4}, want: addrs("203.0.113.0"), wantPool: "public"},
		{name: "IPv6", fams: []Family{IPv6}, want: addrs("2001:db8:100::"), wantPool: "public"},
		{name: "dual", fams: []Family{IPv4, IPv6}, require: true, want: addrs("203.0.113.0", "2001:db8:100::"), wantPool: "public"},
		{name: "dual v6 first", fams: []Family{IPv6, IPv4}, require: true, want: addrs("203.0.113.0", "2001:db8:100::"), wantPool: "public"},
		{name: "prefer dual in v4-only pool", fams: []Family{IPv4, IPv6}, pool: "v4only", want: addrs("198.51.100.10"), wantPool: "v4only"},
		{name: "require dual in v4-only pool", fams: []Family{IPv4, IPv6}, require: true, pool: "v4only", wantError: ReasonWrongFamily},
		{name: "IPv6 from v4-only pool", fams: []Family{IPv6}, pool: "v4only", wantError: ReasonWrongFamily},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(pools(t, stdPools))
			r := svc("web")
			r.Families, r.RequireAll, r.Pool = tt.fams, tt.require, tt.pool
			res, err := a.Assign(r)
			if tt.wantError != "" {
				wantReason(t, err, tt.wantError)
				if got, _ := a.Holding(r.Service); got != nil {
					t.Errorf("failed service holds %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, res.Addrs, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("addresses (-want +got):\n%s", diff)
			}
			if res.Pool != tt.wantPool || !res.Changed {
				t.Errorf("pool %q changed %v, want %q true", res.Pool, res.Changed, tt.wantPool)
			}
		})
	}
}

func TestPreferDualFallsBackToPoolWithFirstFamily(t *testing.T) {
	a := New(pools(t, `
[[pools]]
name = "v4"
addresses = ["203.0.113.1"]
[[pools]]
name = "dual"
addresses = ["203.0.113.10", "2001:db8::10"]
`))
	// Pool "dual" has both families: preferred although listed second.
	r := svc("a")
	r.Families = []Family{IPv4, IPv6}
	res := mustAssign(t, a, r)
	if res.Pool != "dual" || len(res.Addrs) != 2 {
		t.Fatalf("got %v from %s, want both families from dual", res.Addrs, res.Pool)
	}
	// dual's IPv6 is gone now: the next one gets only IPv4, from the first
	// pool with room.
	r = svc("b")
	r.Families = []Family{IPv4, IPv6}
	res = mustAssign(t, a, r)
	if res.Pool != "v4" || fmt.Sprint(res.Addrs) != "[203.0.113.1]" {
		t.Fatalf("got %v from %s, want [203.0.113.1] from v4", res.Addrs, res.Pool)
	}
}

func TestRequestedAddresses(t *testing.T) {
	tests := []struct {
		name      string
		req       func(r *Request)
		want      string
		wantPool  string
		wantError Reason
	}{
		{name: "in auto pool", req: func(r *Request) { r.Addresses = addrs("203.0.113.2") }, want: "[203.0.113.2]", wantPool: "public"},
		{name: "in non-auto pool", req: func(r *Request) { r.Addresses = addrs("198.51.100.129") }, want: "[198.51.100.129]", wantPool: "reserved"},
		{name: "dual", req: func(r *Request) {
			r.Families, r.RequireAll = []Family{IPv4, IPv6}, true
			r.Addresses = addrs("2001:db8:100::3", "203.0.113.3")
		}, want: "[203.0.113.3 2001:db8:100::3]", wantPool: "public"},
		{name: "outside every pool", req: func(r *Request) { r.Addresses = addrs("203.0.113.99") }, wantError: ReasonNotInPool},
		{name: "IPv6 for IPv4-only service", req: func(r *Request) {
			r.Families = []Family{IPv4}
			r.Addresses = addrs("2001:db8:100::1")
		}, wantError: ReasonWrongFamily},
		{name: "two of one family", req: func(r *Request) { r.Addresses = addrs("203.0.113.1", "203.0.113.2") }, wantError: ReasonWrongFamily},
		{name: "require dual, one given", req: func(r *Request) {
			r.Families, r.RequireAll = []Family{IPv4, IPv6}, true
			r.Addresses = addrs("203.0.113.1")
		}, wantError: ReasonWrongFamily},
		{name: "not in the named pool", req: func(r *Request) {
			r.Pool = "v4only"
			r.Addresses = addrs("203.0.113.1")
		}, wantError: ReasonNotInPool},
		{name: "unknown pool", req: func(r *Request) {
			r.Pool = "nope"
			r.Addresses = addrs("203.0.113.1")
		}, wantError: ReasonUnknownPool},
		{name: "namespace not allowed", req: func(r *Request) { r.Addresses = addrs("198.51.100.200") }, wantError: ReasonNamespace},
		{name: "namespace allowed", req: func(r *Request) {
			r.Service, r.Namespace = "team-a/web", "team-a"
			r.Addresses = addrs("198.51.100.200")
		}, want: "[198.51.100.200]", wantPool: "team"},
		{name: "different pools", req: func(r *Request) {
			r.Families = []Family{IPv4, IPv6}
			r.Addresses = addrs("198.51.100.10", "2001:db8:100::1")
		}, wantError: ReasonMixedPools},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(pools(t, stdPools))
			r := svc("web")
			tt.req(&r)
			res, err := a.Assign(r)
			if tt.wantError != "" {
				wantReason(t, err, tt.wantError)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(res.Addrs); got != tt.want || res.Pool != tt.wantPool {
				t.Errorf("got %s from %q, want %s from %q", got, res.Pool, tt.want, tt.wantPool)
			}
		})
	}
}

func TestRequestedAddressInUse(t *testing.T) {
	a := New(pools(t, stdPools))
	r := svc("a")
	r.Addresses = addrs("203.0.113.1")
	mustAssign(t, a, r)
	r = svc("b")
	r.Addresses = addrs("203.0.113.1")
	_, err := a.Assign(r)
	wantReason(t, err, ReasonInUse)
	// Auto-assignment skips it.
	if got := mustAssign(t, a, svc("c")).Addrs; fmt.Sprint(got) != "[203.0.113.0]" {
		t.Errorf("c got %v", got)
	}
	if got := mustAssign(t, a, svc("d")).Addrs; fmt.Sprint(got) != "[203.0.113.2]" {
		t.Errorf("d got %v, want the next free address after the taken one", got)
	}
}

func TestPoolSelection(t *testing.T) {
	a := New(pools(t, stdPools))
	// Named pool without auto-assign works; unknown pool fails.
	r := svc("named")
	r.Pool = "reserved"
	if res := mustAssign(t, a, r); res.Pool != "reserved" || fmt.Sprint(res.Addrs) != "[198.51.100.128]" {
		t.Errorf("named: %v from %s", res.Addrs, res.Pool)
	}
	r = svc("unknown")
	r.Pool = "nope"
	_, err := a.Assign(r)
	wantReason(t, err, ReasonUnknownPool)
	// Namespace restriction applies to named pools.
	r = svc("team")
	r.Pool = "team"
	_, err = a.Assign(r)
	wantReason(t, err, ReasonNamespace)
	r.Service, r.Namespace = "team-a/x", "team-a"
	if res := mustAssign(t, a, r); res.Pool != "team" {
		t.Errorf("team-a got pool %q", res.Pool)
	}
	// No auto-assign pool for a namespace at all.
	b := New(pools(t, `
[[pools]]
name = "only-b"
addresses = ["203.0.113.0/30"]
namespaces = ["b"]
`))
	_, err = b.Assign(svc("x"))
	wantReason(t, err, ReasonNoPool)
}

func TestExhaustionAndRelease(t *testing.T) {
	a := New(pools(t, `
[[pools]]
name = "tiny"
addresses = ["203.0.113.10-203.0.113.11"]
`))
	mustAssign(t, a, svc("a"))
	mustAssign(t, a, svc("b"))
	_, err := a.Assign(svc("c"))
	wantReason(t, err, ReasonExhausted)
	if !a.Release("default/a") {
		t.Fatal("release of a holder reported nothing held")
	}
	if a.Release("default/a") {
		t.Error("second release reported something held")
	}
	if got := mustAssign(t, a, svc("c")).Addrs; fmt.Sprint(got) != "[203.0.113.10]" {
		t.Errorf("c got %v after a freed 203.0.113.10", got)
	}
	if v4, v6 := a.InUse("tiny"); v4 != 2 || v6 != 0 {
		t.Errorf("in use %d/%d, want 2/0", v4, v6)
	}
}

func TestAvoidBuggyIPs(t *testing.T) {
	a := New(pools(t, `
[[pools]]
name = "p"
addresses = ["203.0.113.254-203.0.114.1"]
avoid-buggy-ips = true
`))
	var got []string
	for i := range 3 {
		res, err := a.Assign(svc(fmt.Sprint(i)))
		if err != nil {
			got = append(got, string(err.(*Error).Reason))
			continue
		}
		got = append(got, res.Addrs[0].String())
	}
	want := []string{"203.0.113.254", "203.0.114.1", string(ReasonExhausted)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	r := svc("x")
	r.Addresses = addrs("203.0.114.0")
	_, err := a.Assign(r)
	wantReason(t, err, ReasonNotInPool)
}

func TestSharing(t *testing.T) {
	a := New(pools(t, stdPools))
	web := svc("web")
	web.SharingKey, web.Ports = "k", []Port{{"TCP", 80}}
	ip := mustAssign(t, a, web).Addrs[0]

	// Same key, other port: auto-assignment joins the shared address.
	dns := svc("dns")
	dns.SharingKey, dns.Ports = "k", []Port{{"UDP", 53}, {"TCP", 53}}
	if got := mustAssign(t, a, dns).Addrs[0]; got != ip {
		t.Errorf("dns got %s, want the shared %s", got, ip)
	}
	// Same key, clashing port: a new address.
	web2 := svc("web2")
	web2.SharingKey, web2.Ports = "k", []Port{{"", 80}}
	if got := mustAssign(t, a, web2).Addrs[0]; got == ip {
		t.Errorf("web2 shares %s although port 80 clashes", got)
	}
	// Asking for it by address with a clash fails; without key fails.
	web2.Addresses = []netip.Addr{ip}
	_, err := a.Assign(web2)
	wantReason(t, err, ReasonInUse)
	other := svc("other")
	other.Addresses, other.Ports = []netip.Addr{ip}, []Port{{"TCP", 443}}
	_, err = a.Assign(other)
	wantReason(t, err, ReasonInUse)
	// UDP 80 does not clash with TCP 80.
	udp := svc("udp")
	udp.SharingKey, udp.Ports, udp.Addresses = "k", []Port{{"UDP", 80}}, []netip.Addr{ip}
	mustAssign(t, a, udp)
	if got := a.Holders(ip); fmt.Sprint(got) != "[default/dns default/udp default/web]" {
		t.Errorf("holders of %s: %v", ip, got)
	}
	// The address stays until its last holder goes.
	for _, s := range []string{"default/web", "default/dns"} {
		a.Release(s)
		if a.Holders(ip) == nil {
			t.Fatalf("%s freed after releasing only %s", ip, s)
		}
	}
	a.Release("default/udp")
	if a.Holders(ip) != nil {
		t.Errorf("%s still held after every holder left", ip)
	}
}

func TestRebuildKeepsCurrent(t *testing.T) {
	ps := pools(t, stdPools)
	a := New(ps)
	// A first leader allocated these.
	var reqs []Request
	for i := range 3 {
		r := svc(fmt.Sprint(i))
		r.Families = []Family{IPv4, IPv6}
		r.RequireAll = true
		res := mustAssign(t, a, r)
		r.Current = res.Addrs
		reqs = append(reqs, r)
	}
	// A new leader rebuilds from the Services in another order, then
	// serves a new one: nothing moves and the new one gets a free address.
	b := New(ps)
	for _, i := range []int{2, 0, 1} {
		res := mustAssign(t, b, reqs[i])
		if res.Changed || fmt.Sprint(res.Addrs) != fmt.Sprint(reqs[i].Current) {
			t.Errorf("%s moved from %v to %v", reqs[i].Service, reqs[i].Current, res.Addrs)
		}
	}
	n := svc("new")
	n.Families, n.RequireAll = []Family{IPv4, IPv6}, true
	if res := mustAssign(t, b, n); fmt.Sprint(res.Addrs) != "[203.0.113.3 2001:db8:100::3]" {
		t.Errorf("new service got %v, want the only free pair", res.Addrs)
	}
}

func TestCurrentNoLongerFits(t *testing.T) {
	ps := pools(t, stdPools)
	a := New(ps)
	r := svc("web")
	res := mustAssign(t, a, r)
	r.Current = res.Addrs

	// Same request again: nothing changes.
	if res := mustAssign(t, a, r); res.Changed {
		t.Errorf("unchanged request moved the service to %v", res.Addrs)
	}
	// A pool is now named: the service moves there.
	r.Pool = "v4only"
	res = mustAssign(t, a, r)
	if !res.Changed || res.Pool != "v4only" {
		t.Fatalf("after naming v4only: %v from %s", res.Addrs, res.Pool)
	}
	if a.Holders(r.Current[0]) != nil {
		t.Errorf("old address %s still held", r.Current[0])
	}
	r.Current = res.Addrs
	// The service becomes dual-stack (prefer): its IPv4 stays, an IPv6 is
	// added only if the pool has one (v4only has none).
	r.Families = []Family{IPv4, IPv6}
	if res := mustAssign(t, a, r); res.Changed {
		t.Errorf("prefer-dual on a v4-only pool moved the service: %v", res.Addrs)
	}
	// The pool disappears from the config: the next assign moves it.
	a.SetPools(pools(t, `
[[pools]]
name = "new"
addresses = ["198.51.100.50", "2001:db8:200::1"]
`))
	r.Pool = ""
	res = mustAssign(t, a, r)
	if fmt.Sprint(res.Addrs) != "[198.51.100.50 2001:db8:200::1]" || res.Pool != "new" {
		t.Errorf("after the pool went: %v from %s", res.Addrs, res.Pool)
	}
}

func TestCurrentGainsFamily(t *testing.T) {
	a := New(pools(t, stdPools))
	r := svc("web")
	res := mustAssign(t, a, r)
	r.Current = res.Addrs
	r.Families, r.RequireAll = []Family{IPv4, IPv6}, true
	res = mustAssign(t, a, r)
	if fmt.Sprint(res.Addrs) != "[203.0.113.0 2001:db8:100::]" || !res.Changed {
		t.Errorf("got %v (changed %v), want the IPv4 kept and an IPv6 added", res.Addrs, res.Changed)
	}
}

func TestRebuildConflictFirstWins(t *testing.T) {
	a := New(pools(t, stdPools))
	x := svc("x")
	x.Current = addrs("203.0.113.1")
	y := svc("y")
	y.Current = addrs("203.0.113.1")
	if res := mustAssign(t, a, x); res.Changed {
		t.Fatalf("x moved: %v", res.Addrs)
	}
	res := mustAssign(t, a, y)
	if !res.Changed || res.Addrs[0] == netip.MustParseAddr("203.0.113.1") {
		t.Errorf("y kept the address x holds: %v", res.Addrs)
	}
}

func TestErrorKeepsHolding(t *testing.T) {
	a := New(pools(t, stdPools))
	r := svc("web")
	res := mustAssign(t, a, r)
	r.Current = res.Addrs
	r.Pool = "nope"
	_, err := a.Assign(r)
	wantReason(t, err, ReasonUnknownPool)
	if got, pool := a.Holding(r.Service); fmt.Sprint(got) != fmt.Sprint(res.Addrs) || pool != "public" {
		t.Errorf("after a failed assign the service holds %v from %q", got, pool)
	}
}

func TestLargeIPv6Pool(t *testing.T) {
	a := New(pools(t, `
[[pools]]
name = "big"
addresses = ["2001:db8::/64"]
`))
	for i := range 100 {
		r := svc(fmt.Sprint(i))
		r.Families = []Family{IPv6}
		res := mustAssign(t, a, r)
		want := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
		if fmt.Sprint(res.Addrs) != fmt.Sprint([]netip.Addr{want}) {
			t.Fatalf("service %d got %v, want %s", i, res.Addrs, want)
		}
	}
}

func BenchmarkAssign5000(b *testing.B) {
	ps, errs := config.Parse("b.toml", []byte(`
[[pools]]
name = "p"
addresses = ["10.0.0.0/16"]
`))
	if errs != nil {
		b.Fatal(errs)
	}
	for b.Loop() {
		a := New(ps.Pools)
		for i := range 5000 {
			if _, err := a.Assign(Request{Service: fmt.Sprint("ns/", i), Namespace: "ns"}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func TestKeepProtectsAddresses(t *testing.T) {
	a := New(pools(t, stdPools))
	bad := svc("bad")
	bad.Current = addrs("203.0.113.0", "198.18.5.5") // the second is in no pool
	if got := a.Keep(bad); fmt.Sprint(got) != "[203.0.113.0 198.18.5.5]" {
		t.Fatalf("kept %v", got)
	}
	if got := mustAssign(t, a, svc("new")).Addrs; fmt.Sprint(got) != "[203.0.113.1]" {
		t.Errorf("new service got %v, want to skip the kept address", got)
	}
	other := svc("other")
	other.Current = addrs("203.0.113.1")
	if got := a.Keep(other); len(got) != 0 {
		t.Errorf("kept %v although another service holds it", got)
	}
}

// Freed addresses are given out again first, lowest first, as MetalLB does:
// churning Services in a large pool reuse a small set of addresses instead
// of walking through the pool.
func TestFreedAddressesReusedLowestFirst(t *testing.T) {
	a := New(pools(t, `
[[pools]]
name = "big"
addresses = ["2001:db8:100::/112"]
`))
	v6 := func(name string) Request {
		r := svc(name)
		r.Families = []Family{IPv6}
		return r
	}
	for round := range 3 {
		var got []netip.Addr
		for i := range 5 {
			got = append(got, mustAssign(t, a, v6(fmt.Sprintf("r%d-%d", round, i))).Addrs...)
		}
		want := addrs("2001:db8:100::", "2001:db8:100::1", "2001:db8:100::2", "2001:db8:100::3", "2001:db8:100::4")
		if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
			t.Fatalf("round %d: addresses (-want +got):\n%s", round, diff)
		}
		for i := range 5 {
			a.Release(fmt.Sprintf("default/r%d-%d", round, i))
		}
	}
	// A hole in the middle is filled before the end grows.
	for i := range 4 {
		mustAssign(t, a, v6(fmt.Sprintf("h%d", i)))
	}
	a.Release("default/h1")
	if got := mustAssign(t, a, v6("fill")).Addrs; fmt.Sprint(got) != "[2001:db8:100::1]" {
		t.Errorf("fill got %v, want the freed 2001:db8:100::1", got)
	}
	if got := mustAssign(t, a, v6("next")).Addrs; fmt.Sprint(got) != "[2001:db8:100::4]" {
		t.Errorf("next got %v, want 2001:db8:100::4", got)
	}
}

var addrEq = cmp.Comparer(func(x, y netip.Addr) bool { return x == y })

// Auto-assignment skips the network and broadcast address of an IPv4 CIDR
// (/30 or wider), not those of a range, a /31 or IPv6; a Service may still
// ask for one, and one already held is kept.
func TestNetworkAndBroadcast(t *testing.T) {
	ps := pools(t, `
[[pools]]
name = "cidr"
addresses = ["203.0.113.0/30", "2001:db8:100::/127"]

[[pools]]
name = "range"
addresses = ["198.51.100.0-198.51.100.1"]
auto-assign = false

[[pools]]
name = "p2p"
addresses = ["192.0.2.0/31"]
auto-assign = false

[[pools]]
name = "buggy"
addresses = ["192.0.2.252/30", "198.18.0.0/24"]
avoid-buggy-ips = true
auto-assign = false
`)
	a := New(ps)
	var got []netip.Addr
	for i := range 3 {
		r := svc(fmt.Sprint("v4-", i))
		res, err := a.Assign(r)
		if i == 2 {
			wantReason(t, err, ReasonExhausted)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, res.Addrs...)
	}
	if diff := cmp.Diff(addrs("203.0.113.1", "203.0.113.2"), got, addrEq); diff != "" {
		t.Errorf("from 203.0.113.0/30 (-want +got):\n%s", diff)
	}
	got = nil
	for i := range 2 {
		got = append(got, mustAssign(t, a, Request{Service: fmt.Sprint("default/v6-", i), Namespace: "default", Families: []Family{IPv6}}).Addrs...)
	}
	if diff := cmp.Diff(addrs("2001:db8:100::", "2001:db8:100::1"), got, addrEq); diff != "" {
		t.Errorf("from 2001:db8:100::/127 (-want +got):\n%s", diff)
	}
	for _, tc := range []struct{ pool, want string }{
		{"range", "198.51.100.0"}, {"p2p", "192.0.2.0"},
	} {
		r := svc("from-" + tc.pool)
		r.Pool = tc.pool
		if res := mustAssign(t, a, r); len(res.Addrs) != 1 || res.Addrs[0].String() != tc.want {
			t.Errorf("pool %s gave %v, want %s", tc.pool, res.Addrs, tc.want)
		}
	}
	r := svc("wants-network")
	r.Addresses = addrs("203.0.113.0")
	mustAssign(t, a, r)
	a2 := New(ps)
	r = svc("holds-broadcast")
	r.Current = addrs("203.0.113.3")
	if res := mustAssign(t, a2, r); !cmp.Equal(res.Addrs, addrs("203.0.113.3"), addrEq) || res.Changed {
		t.Errorf("a Service holding 203.0.113.3 got %v (changed %v), want it kept", res.Addrs, res.Changed)
	}
	for _, tc := range []struct {
		pool   string
		v4, v6 uint64
	}{
		// 4 − network − broadcast; a /127 keeps both
		{"cidr", 2, 2}, {"range", 2, 0}, {"p2p", 2, 0},
		// 192.0.2.252/30: .252 network, .255 broadcast (and buggy);
		// 198.18.0.0/24: .0 and .255 already buggy, 254 left
		{"buggy", 2 + 254, 0},
	} {
		var p *config.Pool
		for i := range ps {
			if ps[i].Name == tc.pool {
				p = &ps[i]
			}
		}
		if v4, v6 := Size(p); v4 != tc.v4 || v6 != tc.v6 {
			t.Errorf("Size(%s) = %d, %d; want %d, %d", tc.pool, v4, v6, tc.v4, tc.v6)
		}
	}
}

// Pools chosen by Service labels, with priority: among the auto-assign
// pools that serve a Service, the lowest priority first, then pools
// without one in file order; a Service naming a pool whose selector it
// does not match is refused with ServiceNotSelected; a label change does
// not move an address already given.
func TestPoolPriorityAndServiceSelector(t *testing.T) {
	a := New(pools(t, `
[[pools]]
name = "general"
addresses = ["198.51.100.0-198.51.100.3"]

[[pools]]
name = "web"
addresses = ["203.0.113.0-203.0.113.3"]
service-selector = "tier in (web, edge)"
priority = 10

[[pools]]
name = "first"
addresses = ["192.0.2.0-192.0.2.3"]
service-selector = "tier=edge"
priority = 5
`))
	web := svc("web")
	web.Labels = map[string]string{"tier": "web"}
	if res := mustAssign(t, a, web); res.Pool != "web" {
		t.Errorf("tier=web got pool %q, want web (priority 10 before the pool without one)", res.Pool)
	}
	edge := svc("edge")
	edge.Labels = map[string]string{"tier": "edge"}
	if res := mustAssign(t, a, edge); res.Pool != "first" {
		t.Errorf("tier=edge got pool %q, want first (priority 5)", res.Pool)
	}
	plain := svc("plain")
	if res := mustAssign(t, a, plain); res.Pool != "general" {
		t.Errorf("no labels got pool %q, want general (the only one serving it)", res.Pool)
	}
	named := svc("named")
	named.Pool = "web"
	_, err := a.Assign(named)
	wantReason(t, err, ReasonSelector)
	// The web Service loses its label: it keeps its address.
	kept := web
	res := mustAssign(t, a, web)
	kept.Labels, kept.Current = nil, res.Addrs
	if again := mustAssign(t, a, kept); fmt.Sprint(again.Addrs) != fmt.Sprint(res.Addrs) {
		t.Errorf("after a label change %v, want the address kept: %v", again.Addrs, res.Addrs)
	}
}
