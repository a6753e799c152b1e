package bgp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const base = `[global.config]
  as = 65001
  router-id = "198.18.0.2"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "198.18.0.1"
    peer-as = 65000
`

func TestValidateAcceptsGoodConfig(t *testing.T) {
	data, err := os.ReadFile("testdata/good.conf")
	if err != nil {
		t.Fatal(err)
	}
	if errs := Validate("gobgp.conf", data); len(errs) != 0 {
		t.Fatalf("good config rejected: %v", errs)
	}
	cfg, errs := parseConfig("gobgp.conf", data)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if got := len(cfg.set.Neighbors); got != 2 {
		t.Fatalf("neighbors = %d, want 2", got)
	}
	n := cfg.set.Neighbors[0]
	if !n.Bfd.Config.Enabled || n.Bfd.Config.DesiredMinimumTxInterval != 100000 {
		t.Errorf("BFD config not passed through: %+v", n.Bfd.Config)
	}
	if !n.GracefulRestart.Config.Enabled || n.GracefulRestart.Config.RestartTime != 30 {
		t.Errorf("graceful restart not passed through: %+v", n.GracefulRestart.Config)
	}
}

func TestValidateEmptyRouterIDAllowed(t *testing.T) {
	conf := strings.Replace(base, `  router-id = "198.18.0.2"`+"\n", "", 1)
	if errs := Validate("gobgp.conf", []byte(conf)); len(errs) != 0 {
		t.Fatalf("absent router-id rejected: %v", errs)
	}
	// Written out as empty, as INTERFACE.md documents it.
	for _, empty := range []string{`  router-id = ""`, `  router-id = ''  # the node's own`} {
		conf := strings.Replace(base, `  router-id = "198.18.0.2"`, empty, 1)
		if errs := Validate("gobgp.conf", []byte(conf)); len(errs) != 0 {
			t.Errorf("%s rejected: %v", empty, errs)
		}
		// Line numbers of later problems are unchanged.
		bad := strings.Replace(conf, "peer-as = 65000", "peer-as = 0", 1)
		errs := Validate("gobgp.conf", []byte(bad))
		if len(errs) == 0 || !strings.HasPrefix(errs[0].Error(), "gobgp.conf:8:") {
			t.Errorf("with %s, a later error is reported as %v, want gobgp.conf:8", empty, errs)
		}
	}
}

// Each bad config must be rejected with the file, the line of the culprit and
// a reason a user can act on.
func TestValidateRejectsWithFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		conf string
		want string // "gobgp.conf:LINE: ...substring"
	}{
		{"toml syntax", base + "[[neighbors]\n", "gobgp.conf:9: invalid TOML"},
		{"toml bad value", base + "  [neighbors.timers.config]\n    hold-time = 9s\n", "gobgp.conf:10: invalid TOML"},
		{"unknown key", base + "    peer-ass = 65000\n", `gobgp.conf:9: unknown key "peer-ass" in [neighbors.0.config]`},
		{"unknown section", base + "[globl.config]\n  as = 1\n", `gobgp.conf:9: unknown key "globl" in top level`},
		{"AS 0 global", strings.Replace(base, "as = 65001", "as = 0", 1), "gobgp.conf:2: global.config.as: AS 0"},
		{"AS missing global", strings.Replace(base, "  as = 65001\n", "", 1), "gobgp.conf:1: global.config.as: AS 0"},
		{"peer AS 0", strings.Replace(base, "peer-as = 65000", "peer-as = 0", 1), "gobgp.conf:8: neighbor 198.18.0.1: peer-as is missing or 0"},
		{"invalid neighbor address", strings.Replace(base, `"198.18.0.1"`, `"198.18.0.300"`, 1), "gobgp.conf:7: "},
		{"invalid router-id", strings.Replace(base, `"198.18.0.2"`, `"2001:db8::1"`, 1), "gobgp.conf:3: global.config.router-id"},
		{"missing neighbor address", base + "[[neighbors]]\n  [neighbors.config]\n    peer-as = 65000\n", "gobgp.conf:9: neighbor 2: neighbor-address is missing"},
		{"duplicate neighbor", base + "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"198.18.0.1\"\n    peer-as = 65002\n", "gobgp.conf:11: neighbor 198.18.0.1 is defined twice (first at line 7)"},
		{"undefined export policy", base + "[global.apply-policy.config]\n  export-policy-list = [\"nope\"]\n", `gobgp.conf:10: policy "nope" is not defined`},
		{"undefined neighbor import policy", base + "  [neighbors.apply-policy.config]\n    import-policy-list = [\"nope\"]\n", `gobgp.conf:10: policy "nope" is not defined`},
		{"neighbor policy without route server", base + "  [neighbors.apply-policy.config]\n    export-policy-list = [\"p\"]\n[[policy-definitions]]\n  name = \"p\"\n", `gobgp.conf:9: neighbor 198.18.0.1: apply-policy on a neighbor only takes effect for route-server clients`},
		{"undefined peer group", base + "    peer-group = \"tor\"\n", `gobgp.conf:9: peer-group "tor" is not defined`},
		{"undefined prefix set", base + `[[policy-definitions]]
  name = "p"
  [[policy-definitions.statements]]
    [policy-definitions.statements.conditions.match-prefix-set]
      prefix-set = "missing"
`, `gobgp.conf:13: prefix-set "missing" is not defined`},
		{"undefined community set", base + `[[policy-definitions]]
  name = "p"
  [[policy-definitions.statements]]
    [policy-definitions.statements.conditions.bgp-conditions.match-community-set]
      community-set = "missing"
`, `gobgp.conf:13: community-set "missing" is not defined`},
		{"bad prefix in set", base + `[[defined-sets.prefix-sets]]
  prefix-set-name = "vips"
  [[defined-sets.prefix-sets.prefix-list]]
    ip-prefix = "203.0.113.0/33"
`, "gobgp.conf:12: "},
		{"bad default policy", base + "[global.apply-policy.config]\n  default-export-policy = \"accept\"\n", `gobgp.conf:10: default-export-policy "accept"`},
		{"bad med", base + `[[policy-definitions]]
  name = "p"
  [[policy-definitions.statements]]
    [policy-definitions.statements.actions.bgp-actions]
      set-med = "lots"
`, `gobgp.conf:9: policy p statement : set-med "lots"`},
		{"bad community in set", base + `[[defined-sets.bgp-defined-sets.community-sets]]
  community-set-name = "c"
  community-list = ["([a-"]
`, "gobgp.conf:9: policy: "},
		{"unsupported family", base + "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"l2vpn-evpn\"\n", `gobgp.conf:11: neighbor 198.18.0.1: afi-safi "l2vpn-evpn" is not supported`},
		{"bfd with multihop", base + "  [neighbors.ebgp-multihop.config]\n    enabled = true\n  [neighbors.bfd.config]\n    enabled = true\n", "gobgp.conf:12: neighbor 198.18.0.1: BFD is single-hop only"},
		{"password file missing", base + "    auth-password = \"/nonexistent/secret\"\n", "gobgp.conf:9: neighbor 198.18.0.1: auth-password: read password file"},
		{"rpki unsupported", base + "[[rpki-servers]]\n  [rpki-servers.config]\n    address = \"198.18.0.9\"\n", "gobgp.conf:9: rpki-servers is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := Validate("gobgp.conf", []byte(tc.conf))
			if len(errs) == 0 {
				t.Fatalf("accepted, want an error containing %q", tc.want)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
				if strings.Contains(e.Error(), tc.want) {
					return
				}
			}
			t.Fatalf("errors:\n  %s\nwant one containing %q", strings.Join(got, "\n  "), tc.want)
		})
	}
}

func TestPasswordFromFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "password")
	if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, errs := parseConfig("gobgp.conf", []byte(base+"    auth-password = \""+f+"\"\n"))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if got := cfg.set.Neighbors[0].Config.AuthPassword; got != "s3cret" {
		t.Fatalf("password = %q, want the file's content without the newline", got)
	}
	cfg, errs = parseConfig("gobgp.conf", []byte(base+"    auth-password = \"plain\"\n"))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if got := cfg.set.Neighbors[0].Config.AuthPassword; got != "plain" {
		t.Fatalf("password = %q, want plain", got)
	}
}

func TestMD5Probe(t *testing.T) {
	// The lab kernel has TCP_MD5SIG; the probe must say so (a false
	// negative would refuse every password).
	if err := md5Supported(); err != nil {
		if _, statErr := os.Stat("/proc/sys/net/ipv4/tcp_md5sig_keys"); statErr == nil {
			t.Fatalf("probe says no TCP_MD5SIG, but the kernel has it: %v", err)
		}
		t.Logf("kernel without TCP_MD5SIG: %v", err)
	}
}

func TestGracefulRestartDeferralDefault(t *testing.T) {
	gr := base + "  [neighbors.graceful-restart.config]\n    enabled = true\n"
	cfg := mustParse(t, gr)
	if got := cfg.set.Neighbors[0].GracefulRestart.Config.DeferralTime; got != defaultDeferral {
		t.Errorf("deferral-time = %d, want our default %d when the file leaves it out", got, defaultDeferral)
	}
	cfg = mustParse(t, gr+"    deferral-time = 120\n")
	if got := cfg.set.Neighbors[0].GracefulRestart.Config.DeferralTime; got != 120 {
		t.Errorf("deferral-time = %d, want the file's 120", got)
	}
}
