package owner

import (
	"net/netip"
	"testing"
)

// TestElectFollowsChecks: a checked VIP goes to a node whose check passes;
// when none passes it stays with the node that answers for it; with
// neither, some node owns it. An unchecked VIP ignores the checks.
func TestElectFollowsChecks(t *testing.T) {
	vip := netip.MustParseAddr("203.0.113.10")
	nodes := []string{"n1", "n2", "n3"}
	owner := func(checks map[string]Check, checked bool) string {
		owners, _ := Elect([]VIP{{Addr: vip, Checked: checked}}, nodes, nil, checks)
		return owners[vip]
	}
	free := owner(nil, false)
	for _, n := range nodes {
		checks := map[string]Check{n: {Passing: true}}
		if got := owner(checks, true); got != n {
			t.Errorf("only %s passes: owner %q", n, got)
		}
		if got := owner(checks, false); got != free {
			t.Errorf("unchecked VIP moved with the checks: %q, want %q", got, free)
		}
		// nobody passes: the holder keeps it, whoever the hash prefers
		holds := map[string]Check{n: {Holds: []netip.Addr{vip}}}
		if got := owner(holds, true); got != n {
			t.Errorf("nobody passes, %s holds: owner %q", n, got)
		}
		// a passing node wins over the holder
		other := nodes[(i(n)+1)%3]
		holds[other] = Check{Passing: true}
		if got := owner(holds, true); got != other {
			t.Errorf("%s holds, %s passes: owner %q", n, other, got)
		}
	}
	if got := owner(map[string]Check{}, true); got != free {
		t.Errorf("nobody passes or holds: owner %q, want the hash's %q", got, free)
	}
}

func i(n string) int { return int(n[1] - '1') }
