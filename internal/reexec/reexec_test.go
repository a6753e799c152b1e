package reexec

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The count survives the re-execution through the environment.
func TestCountThroughTheEnvironment(t *testing.T) {
	const key = "VIPSPEAKER_ZEBRA_RECONNECTS"
	env := WithCount([]string{"PATH=/bin", key + "=2", "HOME=/root"}, key, 3)
	if diff := cmp.Diff([]string{"PATH=/bin", "HOME=/root", key + "=3"}, env); diff != "" {
		t.Errorf("WithCount (-want +got):\n%s", diff)
	}
	for in, want := range map[string]uint64{"": 0, "3": 3, " 7\n": 7, "x": 0, "-1": 0} {
		if got := Count(in); got != want {
			t.Errorf("Count(%q) = %d, want %d", in, got, want)
		}
	}
}
