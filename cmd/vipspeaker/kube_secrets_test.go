package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vipspeaker/vipspeaker/bgp"
)

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

// In cluster mode the references are replaced by the values, quoted for
// TOML, with every line where it was; standalone mode refuses them.
func TestResolvePasswordRefs(t *testing.T) {
	conf := "[[neighbors]]\n  [neighbors.config]\n  neighbor-address = \"198.18.0.1\"\n  peer-as = 65000\n  auth-password = 'secret:bgp-auth/password'\n"
	got, errs := bgp.ResolvePasswordRefs("g.conf", []byte(conf), func(name, key string) (string, error) {
		if name != "bgp-auth" || key != "password" {
			t.Errorf("asked for %s/%s", name, key)
		}
		return `pa"ss\word`, nil
	})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := strings.Replace(conf, "'secret:bgp-auth/password'", `"pa\"ss\\word"`, 1)
	if string(got) != want {
		t.Errorf("resolved:\n%s\nwant:\n%s", got, want)
	}
	full := "[global.config]\n  as = 65001\n  router-id = \"198.18.0.9\"\n" + conf
	errs = bgp.Validate("g.conf", []byte(full))
	if len(errs) > 0 {
		t.Errorf("Validate refuses a reference: %v", errs)
	}
	_, errs = bgp.ResolvePasswordRefs("g.conf", []byte(full), func(string, string) (string, error) {
		return "", os.ErrNotExist
	})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "g.conf:8: auth-password: secret:bgp-auth/password: file does not exist") {
		t.Errorf("errors %v, want one at line 8 naming the reference", errs)
	}
}
