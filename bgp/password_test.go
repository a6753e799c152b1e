package bgp

import (
	"os"
	"strings"
	"testing"
)

// In cluster mode the references are replaced by the values, quoted for
// TOML, with every line where it was; standalone mode refuses them.
func TestResolvePasswordRefs(t *testing.T) {
	conf := "[[neighbors]]\n  [neighbors.config]\n  neighbor-address = \"198.18.0.1\"\n  peer-as = 65000\n  auth-password = 'secret:bgp-auth/password'\n"
	got, errs := ResolvePasswordRefs("g.conf", []byte(conf), func(name, key string) (string, error) {
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
	errs = Validate("g.conf", []byte(full))
	if len(errs) > 0 {
		t.Errorf("Validate refuses a reference: %v", errs)
	}
	_, errs = ResolvePasswordRefs("g.conf", []byte(full), func(string, string) (string, error) {
		return "", os.ErrNotExist
	})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "g.conf:8: auth-password: secret:bgp-auth/password: file does not exist") {
		t.Errorf("errors %v, want one at line 8 naming the reference", errs)
	}
}
