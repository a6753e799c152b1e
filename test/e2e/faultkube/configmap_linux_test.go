package faultkube_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

const reloadOK = "vipspeaker_config_last_reload_successful"

// garbageFor is how long each broken ConfigMap stays in place at least.
const garbageFor = 8 * time.Second

// repairedTOML is baseTOML plus a pool the garbage could not have had.
const repairedTOML = baseTOML + `
[[pools]]
name = "repaired"
addresses = ["198.51.100.64/28"]
auto-assign = false
`

// medPolicy is appended to baseGoBGP by the gobgp.conf repair: every VIP
// leaves with MED 77, a change FRR shows on the route.
const medPolicy = `
[global.apply-policy.config]
  export-policy-list = ["med"]
  default-export-policy = "accept-route"

[[policy-definitions]]
  name = "med"
  [[policy-definitions.statements]]
    name = "all"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"
    [policy-definitions.statements.actions.bgp-actions]
      set-med = "77"
`

// garbage returns text with its line at index line (1-based) replaced by
// an unterminated table header, and that line number.
func garbage(text string, line int) string {
	lines := strings.Split(text, "\n")
	lines[line-1] = "[[pools"
	return strings.Join(lines, "\n")
}

// TestConfigMapGarbageThenRepaired replaces, one at a time, vipspeaker.toml
// and gobgp.conf in the ConfigMap vipspeaker-config by invalid TOML. Each
// time: the last good config stays in force (the VIP route never leaves the
// router's kernel — polled every 20 ms — no BGP session is reset, FRR's
// connection counters and uptimes unchanged, and a new Service still gets an
// address from the old pools), every agent reports the problem with the
// file and line in an InvalidConfig Event on the ConfigMap, and
// vipspeaker_config_last_reload_successful is 0 on its /metrics. Then
// the repair: the gauge is back to 1 and its change takes effect — a new
// pool hands out addresses, a new export policy puts MED 77 on the routes
// FRR holds — again without a session reset.
func TestConfigMapGarbageThenRepaired(t *testing.T) {
	e := setup(t)
	e.createService(t, "keep")
	vip := e.waitIngress(t, "keep", 60*time.Second)
	e.waitRouted(t, vip, true, 60*time.Second)
	for _, n := range nodeNames {
		e.waitMetric(t, n, reloadOK, 1, 30*time.Second)
	}
	before := e.sessions(t)
	for a, s := range before {
		if s.State != "Established" {
			t.Fatalf("session %s is %s before the fault", a, s.State)
		}
	}
	w := e.watchRoutes(vip)
	defer w.Stop()

	steps := []struct {
		name, toml, gobgp string
		file              string
		line              int
		// after the repair: what must have changed
		check func(t *testing.T)
	}{
		{
			name: "vipspeaker.toml", file: "vipspeaker.toml", line: 9,
			toml: garbage(baseTOML, 9), gobgp: baseGoBGP,
			check: func(t *testing.T) {
				e.setConfigMap(t, repairedTOML, baseGoBGP)
				for _, n := range nodeNames {
					e.waitMetric(t, n, reloadOK, 1, 30*time.Second)
				}
				e.createService(t, "from-repaired", withAnn(kube.AnnotationPool, "repaired"))
				v := e.waitIngress(t, "from-repaired", 60*time.Second)
				if !netip.MustParsePrefix("198.51.100.64/28").Contains(v) {
					t.Errorf("from-repaired got %s, outside the new pool", v)
				}
				e.waitRouted(t, v, true, 60*time.Second)
			},
		},
		{
			name: "gobgp.conf", file: "gobgp.conf", line: 5,
			toml: repairedTOML, gobgp: garbage(baseGoBGP, 5),
			check: func(t *testing.T) {
				e.setConfigMap(t, repairedTOML, baseGoBGP+medPolicy)
				for _, n := range nodeNames {
					e.waitMetric(t, n, reloadOK, 1, 30*time.Second)
				}
				lab.Eventually(t, 60*time.Second, 200*time.Millisecond, func() error {
					meds, err := e.meds(vip)
					if err != nil {
						return err
					}
					for _, n := range nodeNames {
						if meds[nodeAddrs[n]] != 77 {
							return fmt.Errorf("FRR's paths for %s carry MEDs %v, want 77 from every node", vip, meds)
						}
					}
					return nil
				})
			},
		},
	}
	for i, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			broken := time.Now()
			e.setConfigMap(t, st.toml, st.gobgp)
			where := fmt.Sprintf("%s:%d", st.file, st.line)
			for _, n := range nodeNames {
				msg := e.waitEvent(t, kube.DefaultNamespace, kube.DefaultConfigMapName, "InvalidConfig", 60*time.Second, "node "+n+" ", where)
				t.Logf("Event on the ConfigMap: %s", msg)
				e.waitMetric(t, n, reloadOK, 0, 30*time.Second)
			}
			// The last good config is in force: the old pool still serves.
			name := fmt.Sprintf("during-%d", i)
			e.createService(t, name)
			v := e.waitIngress(t, name, 60*time.Second)
			if !netip.MustParsePrefix("203.0.113.0/28").Contains(v) {
				t.Errorf("%s got %s, outside pool public", name, v)
			}
			e.waitRouted(t, v, true, 60*time.Second)
			// Leave the garbage in place a while: nothing decays later.
			time.Sleep(time.Until(broken.Add(garbageFor)))
			e.checkAgentsAlive(t)
			e.checkSessions(t, before)
			st.check(t)
			e.checkSessions(t, before)
		})
		if !ok {
			break
		}
	}
	polls, gaps := w.Stop()
	t.Logf("router kernel polled %d times over %s", polls, time.Since(w.start).Round(time.Second))
	if polls < int(garbageFor/(20*time.Millisecond)) {
		t.Errorf("only %d polls of the router's kernel: the watch did not run", polls)
	}
	for _, g := range gaps {
		t.Errorf("route gap: %s", g)
	}
	e.checkSessions(t, before)
	e.checkAgentsAlive(t)
}

// checkSessions fails when a BGP session was reset since before: FRR's
// connection counters changed, or its uptime did not grow with the clock
// (2 s of slack for the rounding and the time vtysh takes).
func (e *env) checkSessions(t *testing.T, before map[string]frrSession) {
	t.Helper()
	for a, now := range e.sessions(t) {
		b := before[a]
		if now.State != "Established" || now.Established != b.Established || now.Dropped != b.Dropped ||
			now.Up < b.Up+now.At.Sub(b.At)-2*time.Second {
			t.Errorf("BGP session %s was reset: before %+v, now %+v", a, b, now)
		}
	}
}

// meds returns, per next hop, the MED of FRR's paths for vip.
func (e *env) meds(vip netip.Addr) (map[string]int, error) {
	var doc struct {
		Paths []struct {
			Metric   int `json:"metric"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"paths"`
	}
	out, err := e.frr.Vtysh(fmt.Sprintf("show bgp ipv4 unicast %s/32 json", vip))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("FRR's paths for %s: %w", vip, err)
	}
	m := map[string]int{}
	for _, p := range doc.Paths {
		for _, nh := range p.Nexthops {
			m[nh.IP] = p.Metric
		}
	}
	return m, nil
}
