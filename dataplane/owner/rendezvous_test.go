package owner

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

func vipN(i int) netip.Addr {
	if i < 256 {
		return netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
	}
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:100::%x", i))
}

func TestOwnerDoesNotDependOnOrder(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4"}
	for i := range 200 {
		a := vipN(i)
		want, _ := Owner(a, nodes)
		rev := slices.Clone(nodes)
		slices.Reverse(rev)
		if got, _ := Owner(a, rev); got != want {
			t.Fatalf("owner of %s: %s in one order, %s in another", a, want, got)
		}
	}
	if _, ok := Owner(vipN(1), nil); ok {
		t.Error("a VIP with no candidates got an owner")
	}
}

// Removing a node moves only the VIPs it owned; adding one moves only VIPs
// to it.
func TestOwnerMinimalDisruption(t *testing.T) {
	all := []string{"n1", "n2", "n3", "n4", "n5"}
	var vips []VIP
	for i := range 1000 {
		vips = append(vips, VIP{Addr: vipN(i)})
	}
	before := Assign(vips, all)
	after := Assign(vips, slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == "n3" }))
	moved := 0
	for a, o := range before {
		if o != "n3" && after[a] != o {
			t.Fatalf("%s moved from %s to %s though only n3 left", a, o, after[a])
		}
		if o == "n3" {
			moved++
			if after[a] == "n3" || after[a] == "" {
				t.Fatalf("%s still owned by %q after n3 left", a, after[a])
			}
		}
	}
	// Spread: each of 5 nodes holds between 14% and 26% of 1000 VIPs.
	count := map[string]int{}
	for _, o := range before {
		count[o]++
	}
	for _, n := range all {
		if c := count[n]; c < 140 || c > 260 {
			t.Errorf("%s owns %d of 1000 VIPs; the hash is badly spread: %v", n, c, count)
		}
	}
	if moved == 0 {
		t.Error("n3 owned nothing; the test proves nothing")
	}
}

func TestAssignRespectsEligibility(t *testing.T) {
	healthy := []string{"n1", "n2", "n3"}
	a := netip.MustParseAddr("203.0.113.10")
	got := Assign([]VIP{
		{Addr: a, Eligible: []string{"n2", "n9"}}, // n9 not healthy
		{Addr: netip.MustParseAddr("203.0.113.11"), Eligible: []string{}},
		{Addr: netip.MustParseAddr("203.0.113.12"), Eligible: []string{"n9"}},
	}, healthy)
	if len(got) != 1 || got[a] != "n2" {
		t.Errorf("Assign = %v, want only %s -> n2", got, a)
	}
	if o := Owned("n2", []VIP{{Addr: a, Eligible: []string{"n2"}}}, healthy); !slices.Equal(o, []netip.Addr{a}) {
		t.Errorf("Owned(n2) = %v", o)
	}
}
