package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The recovery count survives the re-execution through the environment.
func TestZebraReconnectsEnv(t *testing.T) {
	env := withEnv([]string{"PATH=/bin", zebraReconnectsEnv + "=2", "HOME=/root"}, zebraReconnectsEnv, "3")
	if diff := cmp.Diff([]string{"PATH=/bin", "HOME=/root", zebraReconnectsEnv + "=3"}, env); diff != "" {
		t.Errorf("withEnv (-want +got):\n%s", diff)
	}
	for in, want := range map[string]uint64{"": 0, "3": 3, " 7\n": 7, "x": 0, "-1": 0} {
		if got := zebraReconnects(in); got != want {
			t.Errorf("zebraReconnects(%q) = %d, want %d", in, got, want)
		}
	}
}
