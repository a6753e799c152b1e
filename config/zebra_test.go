package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const zebraOn = `[global.config]
  as = 65001

[zebra.config]
  enabled = true
  url = "unix:/var/run/frr/zserv.api"
  version = 6
  software-name = "frr8.4"
`

func TestImportToKernelWithZebraRefused(t *testing.T) {
	const importOn = "[interface]\nname = \"kube-lb0\"\n\n[import-to-kernel]\nenabled = true\n"
	for _, tc := range []struct {
		name       string
		toml       string
		gobgp      string // "" : no gobgp.conf
		wantRefuse bool
	}{
		{"import and zebra", importOn, zebraOn, true},
		{"import, zebra off", importOn, strings.Replace(zebraOn, "enabled = true", "enabled = false", 1), false},
		{"import, gobgp.conf without zebra", importOn, "[global.config]\n  as = 65001\n", false},
		{"import, no gobgp.conf", importOn, "", false},
		{"zebra, import off", "[import-to-kernel]\nenabled = false\n", zebraOn, false},
		{"zebra, no import section", "", zebraOn, false},
		{"import, gobgp.conf broken", importOn, "[zebra.config\nenabled = true", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, FileName), []byte(tc.toml), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.gobgp != "" {
				if err := os.WriteFile(filepath.Join(dir, GoBGPFileName), []byte(tc.gobgp), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c, errs := LoadDir(dir)
			if !tc.wantRefuse {
				if len(errs) > 0 || c == nil {
					t.Fatalf("LoadDir = %v, %v; want a config", c, errs)
				}
				return
			}
			if c != nil || len(errs) != 1 {
				t.Fatalf("LoadDir = %v, %v; want nil and one error", c, errs)
			}
			msg := errs[0].Error()
			for _, w := range []string{
				filepath.Join(dir, FileName) + ":5: import-to-kernel.enabled:",
				"[import-to-kernel] enabled = true",
				"[zebra.config] enabled = true in " + filepath.Join(dir, GoBGPFileName),
			} {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

// The same check on the two keys of a ConfigMap, where the files are not
// in a directory.
func TestCheckWithGoBGP(t *testing.T) {
	data := []byte("[import-to-kernel]\nenabled = true\ntable = 100\n")
	c, errs := Parse("cm/vipspeaker.toml", data)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	errs = CheckWithGoBGP("cm/vipspeaker.toml", data, c, "cm/gobgp.conf", []byte(zebraOn))
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "cm/vipspeaker.toml:2: import-to-kernel.enabled: ") {
		t.Fatalf("CheckWithGoBGP = %v; want one error at cm/vipspeaker.toml:2", errs)
	}
	if errs := CheckWithGoBGP("cm/vipspeaker.toml", data, c, "cm/gobgp.conf", nil); len(errs) != 0 {
		t.Errorf("without gobgp.conf: %v", errs)
	}
}
