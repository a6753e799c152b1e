package standalone

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vipspeaker/vipspeaker/routing"
)

func svc(name, addrs string, extra ...string) string {
	s := "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\n  annotations:\n    vipspeaker.io/addresses: \"" + addrs + "\"\n"
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s + "spec: {type: LoadBalancer}\n"
}

// TestKeepLastGood walks one Source through edits; a broken edit never
// removes a VIP that was good.
func TestKeepLastGood(t *testing.T) {
	dir := t.TempDir()
	s := newSource(t, dir)
	step := func(name string, files map[string]string, remove []string, want []routing.VIP, wantErrs int) {
		t.Helper()
		writeFiles(t, dir, files)
		for _, r := range remove {
			if err := os.Remove(filepath.Join(dir, r)); err != nil {
				t.Fatal(err)
			}
		}
		got, errs := s.Load()
		if diff := cmp.Diff(want, got, addrCmp); diff != "" {
			t.Errorf("%s: VIPs (-want +got):\n%s", name, diff)
		}
		if len(errs) != wantErrs {
			t.Errorf("%s: %d errors, want %d: %v", name, len(errs), wantErrs, errStrings(errs))
		}
	}
	a10 := vip("203.0.113.10", "default/a", "")
	b11 := vip("203.0.113.11", "default/b", "", "65000:1")
	c12 := vip("203.0.113.12", "default/c", "")

	step("start", map[string]string{
		"ab.yaml": svc("a", "203.0.113.10") + "---\n" + svc("b", "203.0.113.11", `vipspeaker.io/communities: "65000:1"`),
		"c.yaml":  svc("c", "203.0.113.12"),
	}, nil, []routing.VIP{a10, b11, c12}, 0)

	// A syntax error in ab.yaml (b's document) while a changes address:
	// a's change applies, b stays.
	step("syntax error", map[string]string{
		"ab.yaml": svc("a", "203.0.113.20") + "---\n" + "apiVersion: v1\nkind: Service\nmetadata:\n  name: b\n annotations: [\n",
	}, nil, []routing.VIP{b11, c12, vip("203.0.113.20", "default/a", "")}, 1)

	// The whole file unparsable: everything it held at its last clean read
	// (a at .10, b) stays.
	step("garbage", map[string]string{"ab.yaml": "{{{{ not yaml"}, nil, []routing.VIP{a10, b11, c12}, 1)

	// Fixed, and b removed on purpose: b goes.
	step("fixed", map[string]string{"ab.yaml": svc("a", "203.0.113.10")}, nil, []routing.VIP{a10, c12}, 0)

	// c's annotation becomes invalid: c keeps its last good VIP.
	step("bad address", map[string]string{"c.yaml": svc("c", "203.0.113.13, 203.0.113.999")}, nil, []routing.VIP{a10, c12}, 1)
	step("bad community", map[string]string{"c.yaml": svc("c", "203.0.113.12", `vipspeaker.io/communities: "65000:1:2"`)}, nil, []routing.VIP{a10, c12}, 1)
	step("bad mode", map[string]string{"c.yaml": svc("c", "203.0.113.12", `vipspeaker.io/mode: anycast`)}, nil, []routing.VIP{a10, c12}, 1)

	// Fixed with a new address: it applies.
	step("c fixed", map[string]string{"c.yaml": svc("c", "203.0.113.13")}, nil,
		[]routing.VIP{a10, vip("203.0.113.13", "default/c", "")}, 0)

	// Deleting a file removes its Services.
	step("delete", nil, []string{"c.yaml"}, []routing.VIP{a10}, 0)

	// A new Service that is invalid from the start has no last good state:
	// its valid addresses apply.
	step("new partly bad", map[string]string{"d.yaml": svc("d", "203.0.113.14,::")}, nil,
		[]routing.VIP{a10, vip("203.0.113.14", "default/d", "")}, 1)

	// The directory vanishing is "no information": the last result stays.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	got, errs := s.Load()
	if diff := cmp.Diff([]routing.VIP{a10, vip("203.0.113.14", "default/d", "")}, got, addrCmp); diff != "" {
		t.Errorf("directory gone: VIPs (-want +got):\n%s", diff)
	}
	if len(errs) != 1 || !strings.HasSuffix(errs[0].Error(), ": "+ErrNoDir.Error()) {
		t.Errorf("directory gone: errors %v, want one %q", errStrings(errs), ErrNoDir)
	}
}

// TestExampleServices keeps deploy/examples/services what the demo expects.
func TestExampleServices(t *testing.T) {
	dir := filepath.Join("..", "..", "deploy", "examples", "services")
	got, errs := newSource(t, dir).Load()
	if len(errs) > 0 {
		t.Fatalf("example services: %v", errStrings(errs))
	}
	want := []routing.VIP{
		vip("203.0.113.10", "default/web", "", "65000:100", "65535:65281", "65000:1:2"),
		vip("203.0.113.11", "infra/dns", routing.ModeBGP),
		vip("2001:db8:100::10", "infra/dns", routing.ModeBGP),
	}
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("example VIPs (-want +got):\n%s", diff)
	}
}
