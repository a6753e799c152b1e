package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// The status command's flags and its answer when no agent runs (the report
// itself is tested in package status).
func TestStatusNoAgent(t *testing.T) {
	run := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := dispatch(append([]string{"status", "--run-dir", t.TempDir()}, args...), &out, &errb)
		return out.String() + errb.String(), code
	}
	out, code := run()
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(out, "no agent answers on") || !strings.Contains(out, "vipspeaker.sock") {
		t.Errorf("output does not say no agent answers: %q", out)
	}
	if out, code := run("-o", "yaml"); code != 2 || !regexp.MustCompile(`want table or json`).MatchString(out) {
		t.Errorf("-o yaml: exit %d, %q", code, out)
	}
	// --cluster asks the API server (test/e2e/kube TestKubeAPIState); a
	// kubeconfig that is not there is an error naming it.
	if out, code := run("--cluster", "--kubeconfig", "/nonexistent/kubeconfig"); code != 1 ||
		!strings.Contains(out, "vipspeaker status --cluster:") || !strings.Contains(out, "/nonexistent/kubeconfig") {
		t.Errorf("--cluster with a missing kubeconfig: exit %d, %q", code, out)
	}
}
