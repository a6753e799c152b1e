package bgp

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustParse(t *testing.T, conf string) *parsedConfig {
	t.Helper()
	cfg, errs := parseConfig("gobgp.conf", []byte(conf))
	if len(errs) > 0 {
		t.Fatalf("parse: %v", errs)
	}
	return cfg
}

const twoPeers = `[global.config]
  as = 65001
  router-id = "198.18.0.2"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "198.18.0.1"
    peer-as = 65000

[[neighbors]]
  [neighbors.config]
    neighbor-address = "198.18.0.5"
    peer-as = 65000

[[defined-sets.prefix-sets]]
  prefix-set-name = "vips"
  [[defined-sets.prefix-sets.prefix-list]]
    ip-prefix = "203.0.113.0/24"
    masklength-range = "32..32"

[[policy-definitions]]
  name = "export"
  [[policy-definitions.statements]]
    [policy-definitions.statements.conditions.match-prefix-set]
      prefix-set = "vips"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"
    [policy-definitions.statements.actions.bgp-actions]
      set-med = "10"
`

type planSummary struct {
	Restart, Policies, GlobalPolicy bool
	Add, Del                        []string
	Update                          []string // addr[:reset][:policy]
}

func summarize(p plan) planSummary {
	s := planSummary{Restart: p.restart, Policies: p.policies, GlobalPolicy: p.globalPolicy}
	for _, n := range p.add {
		s.Add = append(s.Add, n.State.NeighborAddress.String())
	}
	for _, n := range p.del {
		s.Del = append(s.Del, n.State.NeighborAddress.String())
	}
	for _, u := range p.update {
		e := u.n.State.NeighborAddress.String()
		if u.reset {
			e += ":reset"
		}
		if u.policy {
			e += ":policy"
		}
		s.Update = append(s.Update, e)
	}
	return s
}

func TestDiffConfig(t *testing.T) {
	old := mustParse(t, twoPeers)
	for _, tc := range []struct {
		name string
		edit func(string) string
		want planSummary
	}{
		{"unchanged", func(s string) string { return s }, planSummary{}},
		{"policy attribute changed", func(s string) string {
			return strings.Replace(s, `set-med = "10"`, `set-med = "20"`, 1)
		}, planSummary{Policies: true}},
		{"global export policy assigned", func(s string) string {
			return s + "[global.apply-policy.config]\n  export-policy-list = [\"export\"]\n"
		}, planSummary{GlobalPolicy: true}},
		{"neighbor removed", func(s string) string {
			return strings.Replace(s, "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"198.18.0.5\"\n    peer-as = 65000\n", "", 1)
		}, planSummary{Del: []string{"198.18.0.5"}}},
		{"neighbor added", func(s string) string {
			return s + "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"198.18.0.9\"\n    peer-as = 65009\n"
		}, planSummary{Add: []string{"198.18.0.9"}}},
		{"two neighbors changed at once", func(s string) string {
			return strings.ReplaceAll(s, "peer-as = 65000", "peer-as = 65000\n    admin-down = true")
		}, planSummary{Update: []string{"198.18.0.1:reset", "198.18.0.5:reset"}}},
		{"description only: nothing to do", func(s string) string {
			return strings.ReplaceAll(s, "peer-as = 65000", "peer-as = 65000\n    description = \"tor\"")
		}, planSummary{}},
		{"session parameter: peer-as", func(s string) string {
			return strings.Replace(s, "peer-as = 65000", "peer-as = 65100", 1)
		}, planSummary{Update: []string{"198.18.0.1:reset"}}},
		{"bfd timers only", func(s string) string {
			return strings.Replace(s, "    peer-as = 65000\n\n[[neighbors]]", "    peer-as = 65000\n  [neighbors.bfd.config]\n    enabled = true\n\n[[neighbors]]", 1)
		}, planSummary{Update: []string{"198.18.0.1"}}},
		{"ebgp-multihop", func(s string) string {
			return strings.Replace(s, "    peer-as = 65000\n\n[[neighbors]]", "    peer-as = 65000\n  [neighbors.ebgp-multihop.config]\n    enabled = true\n\n[[neighbors]]", 1)
		}, planSummary{Update: []string{"198.18.0.1:reset"}}},
		{"global AS", func(s string) string {
			return strings.Replace(s, "as = 65001", "as = 65002", 1)
		}, planSummary{Restart: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := diffConfig(old.set, mustParse(t, tc.edit(twoPeers)).set)
			if diff := cmp.Diff(tc.want, summarize(p)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}
