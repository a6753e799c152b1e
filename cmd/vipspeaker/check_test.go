package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCheckExampleConfigIsValid(t *testing.T) {
	// unnumbered, pool-peers and control-plane-vip name interfaces, which need not exist where check runs
	for _, dir := range []string{"config", "unnumbered", "control-plane-vip", "control-plane-vip/bgp", "pool-peers"} {
		var out, errb bytes.Buffer
		if code := dispatch([]string{"check", "../../deploy/examples/" + dir}, &out, &errb); code != 0 {
			t.Fatalf("check of the shipped example %s exited %d:\n%s%s", dir, code, out.String(), errb.String())
		}
	}
}

const badConfigMap = `apiVersion: v1
kind: ConfigMap
metadata:
  name: vipspeaker-config
  namespace: vipspeaker-system
data:
  vipspeaker.toml: |
    [interface]
    name = "kube-lb0"
    [[pools]]
    name = "x"
    addresses = ["203.0.113.0/33"]
  gobgp.conf: |
    [global.config]
    as = 65001
    router-id = "198.18.0.9"
    [[neighbors]]
      [neighbors.config]
      neighbor-address = "198.18.0.1"
      peer-as = 65000
      bogus = 1
  extra: "x"
`

func TestCheckConfigMapPointsAtManifestLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cm.yaml")
	if err := os.WriteFile(path, []byte(badConfigMap), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := dispatch([]string{"check", path}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stdout:\n%s", code, out.String())
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		// "file:line: problem" — keep "line" and a word of the problem.
		rest := strings.TrimPrefix(l, path+":")
		if rest == l {
			t.Errorf("line %q does not start with the manifest's path", l)
			continue
		}
		lineNo, _, _ := strings.Cut(rest, ":")
		lines = append(lines, lineNo)
	}
	// Line 12 holds the bad CIDR, 21 the unknown key, 22 the unknown data key.
	if diff := cmp.Diff([]string{"12", "21", "22"}, lines); diff != "" {
		t.Errorf("reported lines (-want +got):\n%s\nfull output:\n%s", diff, out.String())
	}
	for _, want := range []string{"203.0.113.0/33", "bogus", "extra"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not mention %q:\n%s", want, out.String())
		}
	}
}

func TestCheckDirWithBadGoBGPConf(t *testing.T) {
	dir := t.TempDir()
	conf := "[global.config]\nas = 0\nrouter-id = \"198.18.0.9\"\n"
	if err := os.WriteFile(filepath.Join(dir, "gobgp.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := dispatch([]string{"check", dir}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1; output:\n%s", code, out.String())
	}
	if want := filepath.Join(dir, "gobgp.conf") + ":2:"; !strings.Contains(out.String(), want) {
		t.Errorf("output does not point at %q:\n%s", want, out.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := dispatch([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Errorf("stderr = %q", errb.String())
	}
}

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := dispatch([]string{"version"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"vipspeaker ", "go: go1.", "gobgp: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("version output lacks %q:\n%s", want, out.String())
		}
	}
}

// The gobgp.conf example in docs/zebra.md must stay valid.
func TestZebraDocExampleIsValid(t *testing.T) {
	doc, err := os.ReadFile("../../docs/zebra.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```toml\n")
	if !ok {
		t.Fatal("docs/zebra.md has no ```toml block")
	}
	conf, _, _ := strings.Cut(rest, "```")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gobgp.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := dispatch([]string{"check", dir}, &out, &errb); code != 0 {
		t.Errorf("the example in docs/zebra.md is refused:\n%s%s", out.String(), errb.String())
	}
}

// A ConfigMap asking for both the native import and zebra is refused at the
// line of [import-to-kernel] enabled, as `vipspeaker check DIR` does.
func TestCheckConfigMapImportWithZebraRefused(t *testing.T) {
	const cm = `apiVersion: v1
kind: ConfigMap
metadata:
  name: vipspeaker-config
  namespace: vipspeaker-system
data:
  gobgp.conf: |
    [global.config]
      as = 65001
    [zebra.config]
      enabled = true
      url = "unix:/var/run/frr/zserv.api"
      version = 6
      software-name = "frr8.4"
  vipspeaker.toml: |
    [import-to-kernel]
    enabled = true
`
	path := filepath.Join(t.TempDir(), "cm.yaml")
	if err := os.WriteFile(path, []byte(cm), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := dispatch([]string{"check", path}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1; stdout:\n%s", code, out.String())
	}
	if want := path + ":17: import-to-kernel.enabled"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
}

const secretConfigMap = `apiVersion: v1
kind: ConfigMap
metadata:
  name: vipspeaker-config
  namespace: vipspeaker-system
data:
  vipspeaker.toml: |
    [membership]
    secret-file = "secret:memberlist/key"
  gobgp.conf: |
    [global.config]
    as = 65001
    router-id = "198.18.0.9"
    [[neighbors]]
      [neighbors.config]
      neighbor-address = "198.18.0.1"
      peer-as = 65000
      auth-password = "secret:bgp-auth/password"
`

// check accepts secret:NAME/KEY references (it cannot read them offline and
// says so) and refuses a malformed one at its line.
func TestCheckAcceptsSecretReferences(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cm.yaml")
	if err := os.WriteFile(path, []byte(secretConfigMap), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := dispatch([]string{"check", path}, &out, &errb); code != 0 {
		t.Fatalf("exit %d, want 0:\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "2 secret:NAME/KEY reference(s) checked for their form only") {
		t.Errorf("check does not say the references were not read:\n%s", out.String())
	}

	bad := strings.Replace(secretConfigMap, "secret:bgp-auth/password", "secret:bgp-auth", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := dispatch([]string{"check", path}, &out, &errb); code != 1 {
		t.Fatalf("exit %d for a reference without a key, want 1:\n%s", code, out.String())
	}
	want := path + `:18: auth-password: "secret:bgp-auth": want secret:NAME/KEY`
	if !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
}

// A pool's peer that gobgp.conf does not define: `vipspeaker check` of a
// ConfigMap names the manifest line and the field.
func TestCheckConfigMapPoolPeerNotANeighbor(t *testing.T) {
	const cm = `apiVersion: v1
kind: ConfigMap
metadata:
  name: vipspeaker-config
  namespace: vipspeaker-system
data:
  vipspeaker.toml: |
    [[pools]]
    name = "a"
    addresses = ["203.0.113.0/25"]
      [pools.advertise]
      peers = ["198.18.0.1", "198.18.0.2"]
  gobgp.conf: |
    [global.config]
    as = 65001
    [[neighbors]]
      [neighbors.config]
      neighbor-address = "198.18.0.1"
      peer-as = 65000
`
	path := filepath.Join(t.TempDir(), "cm.yaml")
	if err := os.WriteFile(path, []byte(cm), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := dispatch([]string{"check", path}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1; output:\n%s%s", code, out.String(), errb.String())
	}
	want := path + ":12: pools[0].advertise.peers[1]: 198.18.0.2 is not a neighbor in "
	if !strings.HasPrefix(out.String(), want) || strings.Count(strings.TrimSpace(out.String()), "\n") != 0 {
		t.Errorf("output:\n%s\nwant one line starting %q", out.String(), want)
	}
}
