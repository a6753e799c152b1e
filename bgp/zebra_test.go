package bgp

import (
	"testing"
)

// The guard's restart itself (restartForZebra) is tested in
// test/e2e/zebra against FRR: with an in-process GoBGP peer the race
// detector reports GoBGP's own races (StartBgp writes package globals that
// the other instance reads; a graceful-restart peer marks paths stale while
// ListPath reads them).

func TestZebraSocket(t *testing.T) {
	for _, tc := range []struct {
		url, want string
		ok        bool
	}{
		{"unix:/var/run/frr/n1/zserv.api", "/var/run/frr/n1/zserv.api", true},
		{"", "/var/run/frr/zserv.api", true},
		{"tcp:127.0.0.1:2600", "", false},
		{"unix:", "", false},
	} {
		got, ok := zebraSocket(tc.url)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("zebraSocket(%q) = %q, %v; want %q, %v", tc.url, got, ok, tc.want, tc.ok)
		}
	}
}
