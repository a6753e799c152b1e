package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vipspeaker/vipspeaker/routing"
)

// The guard's restart itself (restartForZebra) is tested in
// test/e2e/zebra against FRR: with an in-process GoBGP peer the race
// detector reports GoBGP's own races (StartBgp writes package globals that
// the other instance reads; a graceful-restart peer marks paths stale while
// ListPath reads them).

func TestZebraSocket(t *testing.T) {
	for _, tc := range []struct {
		url, want string
		ok        bool
	}{
		{"unix:/var/run/frr/n1/zserv.api", "/var/run/frr/n1/zserv.api", true},
		{"", "/var/run/frr/zserv.api", true},
		{"tcp:127.0.0.1:2600", "", false},
		{"unix:", "", false},
	} {
		got, ok := zebraSocket(tc.url)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("zebraSocket(%q) = %q, %v; want %q, %v", tc.url, got, ok, tc.want, tc.ok)
		}
	}
}

func TestAddZebraNextHop6(t *testing.T) {
	const base = `[global.config]
  as = 65001
  router-id = "198.18.1.2"
[global.apply-policy.config]
  export-policy-list = ["only-vips"]
  default-export-policy = "reject-route"
[[policy-definitions]]
  name = "only-vips"
  [[policy-definitions.statements]]
    name = "all"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"
`
	const zebra = `[zebra.config]
  enabled = true
  url = "unix:/var/run/frr/zserv.api"
  version = 6
  software-name = "frr8.4"
`
	nh := netip.MustParseAddr("2001:db8:18:1::2")
	for _, tc := range []struct {
		name string
		conf string
		nh6  netip.Addr
		want []string // global export policy list afterwards
	}{
		{"zebra, IPv6 next hop", base + zebra, nh, []string{zebraNextHop6Policy, "only-vips"}},
		{"zebra, next hop per session", base + zebra, netip.IPv6Unspecified(), []string{"only-vips"}},
		{"native feed", base, nh, []string{"only-vips"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, errs := parseConfig("gobgp.conf", []byte(tc.conf))
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			cfg.nh6 = tc.nh6
			addZebraNextHop6(cfg)
			addZebraNextHop6(cfg) // a config resolved twice (start retried) gets it once
			if diff := cmp.Diff(tc.want, cfg.set.Global.ApplyPolicy.Config.ExportPolicyList); diff != "" {
				t.Errorf("export policies (-want +got):\n%s", diff)
			}
			// what GoBGP is given must convert (and set the next hop)
			_, policies, err := apiPolicies(cfg.set)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range policies {
				if p.Name != zebraNextHop6Policy {
					continue
				}
				found = true
				if got := p.Statements[0].GetActions().GetNexthop().GetAddress(); got != nh.String() {
					t.Errorf("next hop set to %q, want %s", got, nh)
				}
				if a := p.Statements[0].GetActions().GetRouteAction(); a != api.RouteAction_ROUTE_ACTION_UNSPECIFIED {
					t.Errorf("route action %v: the configured policies must still decide", a)
				}
			}
			if found != (len(tc.want) == 2) {
				t.Errorf("policy %s defined: %v, want %v", zebraNextHop6Policy, found, len(tc.want) == 2)
			}
		})
	}
}

// GoBGP's log record of a failed read from zebra signals the guard, but
// only once the client had connected, and only for zebra.
func TestNoteZebraLog(t *testing.T) {
	s, err := New(Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(level slog.Level, msg, topic string) slog.Record {
		r := slog.NewRecord(time.Now(), level, msg, 0)
		r.AddAttrs(slog.String("Topic", topic), slog.String("Error", "EOF"))
		return r
	}
	signalled := func() bool {
		select {
		case <-s.zebraLost:
			return true
		default:
			return false
		}
	}
	_ = s.glog.Handler().Handle(context.Background(), rec(slog.LevelError, "failed to read header", "Zebra"))
	if signalled() {
		t.Error("signalled before the zebra client connected (a failed version negotiation)")
	}
	s.zebraUp.Store(true)
	_ = s.glog.Handler().Handle(context.Background(), rec(slog.LevelError, "failed to read header", "Peer"))
	_ = s.glog.Handler().Handle(context.Background(), rec(slog.LevelInfo, "success to connect to Zebra", "Zebra"))
	if signalled() {
		t.Error("signalled for a record that is not a failed read from zebra")
	}
	_ = s.glog.Handler().Handle(context.Background(), rec(slog.LevelError, "failed to read header", "Zebra"))
	if !signalled() {
		t.Error("a failed read from zebra was not signalled")
	}
	if s.zebraUp.Load() {
		t.Error("zebra still marked connected")
	}
}

// The native feed adds the VIPs' paths (and counts them) unless the
// running config is in zebra mode, where it adds and withdraws nothing.
func TestNativeFeedOffInZebraMode(t *testing.T) {
	s, src, _, _ := startServer(t, ourConfig{port: freePort(t, "127.0.0.1")}, prometheus.NewRegistry())
	rib := func() []string {
		var got []string
		for _, fam := range []bgppkt.Family{bgppkt.RF_IPv4_UC, bgppkt.RF_IPv6_UC} {
			_ = s.running.Load().ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: fam},
				func(n bgppkt.NLRI, _ []*apiutil.Path) { got = append(got, n.String()) })
		}
		slices.Sort(got)
		return got
	}
	src.push(routing.Event{Kind: routing.Added, VIP: vip("203.0.113.10")}, routing.Event{Kind: routing.Added, VIP: vip("2001:db8:100::10")})
	eventually(t, 5*time.Second, "native paths", func() error {
		if got := rib(); !slices.Equal(got, []string{"2001:db8:100::10/128", "203.0.113.10/32"}) {
			return fmt.Errorf("RIB %v", got)
		}
		return nil
	})
	if got := testutil.ToFloat64(s.nativeUpdates); got != 2 {
		t.Errorf("native updates = %v, want 2", got)
	}

	// the same speaker, now configured for zebra
	s.opMu.Lock()
	z := *s.cur
	z.set = new(oc.BgpConfigSet)
	*z.set = *s.cur.set
	z.set.Zebra.Config.Enabled = true
	s.cur = &z
	s.opMu.Unlock()
	src.push(routing.Event{Kind: routing.Added, VIP: vip("203.0.113.11")}, routing.Event{Kind: routing.Removed, VIP: vip("203.0.113.10")})
	eventually(t, 5*time.Second, "events handled", func() error {
		if n := s.announcedCount(); n != 2 {
			return fmt.Errorf("%d VIPs known, want 2", n)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	if got := rib(); !slices.Equal(got, []string{"2001:db8:100::10/128", "203.0.113.10/32"}) {
		t.Errorf("in zebra mode the native feed changed the RIB: %v", got)
	}
	if got := testutil.ToFloat64(s.nativeUpdates); got != 2 {
		t.Errorf("native updates = %v in zebra mode, want still 2", got)
	}
}

// In zebra mode the speaker's only-VIPs policy comes last in the global
// export list (the user's policies decide first), once however often the
// config is resolved, and converts to a GoBGP policy that rejects locally
// originated paths outside the VIP sets, per family.
func TestAddZebraOnlyVIPs(t *testing.T) {
	const base = `[global.config]
  as = 65001
  router-id = "198.18.1.2"
`
	const zebra = `[zebra.config]
  enabled = true
  url = "unix:/var/run/frr/zserv.api"
  redistribute-route-type-list = ["connect"]
  version = 6
  software-name = "frr8.4"
`
	const own = `[global.apply-policy.config]
  export-policy-list = ["mine"]
[[policy-definitions]]
  name = "mine"
  [[policy-definitions.statements]]
    name = "lan"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"
`
	for _, tc := range []struct {
		name string
		conf string
		want []string
	}{
		{"zebra, no export policy", base + zebra, []string{zebraOnlyVIPsPolicy}},
		{"zebra, a policy of the user's own", base + zebra + own, []string{"mine", zebraOnlyVIPsPolicy}},
		{"native feed", base + own, []string{"mine"}},
		{"native feed, no export policy", base, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, errs := parseConfig("gobgp.conf", []byte(tc.conf))
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			addZebraOnlyVIPs(cfg)
			addZebraOnlyVIPs(cfg)
			if diff := cmp.Diff(tc.want, cfg.set.Global.ApplyPolicy.Config.ExportPolicyList); diff != "" {
				t.Errorf("export policies (-want +got):\n%s", diff)
			}
			if err := policyEngineCheck(cfg.set); err != nil {
				t.Fatalf("GoBGP's policy engine refuses the config: %v", err)
			}
			sets, policies, err := apiPolicies(cfg.set)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range policies {
				if p.Name != zebraOnlyVIPsPolicy {
					continue
				}
				for _, st := range p.Statements {
					c := st.GetConditions()
					got = append(got, fmt.Sprintf("%v %s %v %v → %v", c.GetAfiSafiIn(), c.GetPrefixSet().GetName(), c.GetPrefixSet().GetType(),
						c.GetRouteType(), st.GetActions().GetRouteAction()))
				}
			}
			var want []string
			if slices.Contains(tc.want, zebraOnlyVIPsPolicy) {
				want = []string{
					fmt.Sprintf("%v %s %v %v → %v", []*api.Family{{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}}, zebraVIPs4Set, api.MatchSet_TYPE_INVERT, api.Conditions_ROUTE_TYPE_LOCAL, api.RouteAction_ROUTE_ACTION_REJECT),
					fmt.Sprintf("%v %s %v %v → %v", []*api.Family{{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}}, zebraVIPs6Set, api.MatchSet_TYPE_INVERT, api.Conditions_ROUTE_TYPE_LOCAL, api.RouteAction_ROUTE_ACTION_REJECT),
				}
				n := 0
				for _, d := range sets {
					if d.Name == zebraVIPs4Set || d.Name == zebraVIPs6Set {
						n++
						if len(d.Prefixes) != 1 || d.Prefixes[0].IpPrefix != zebraSentinel[d.Name].String() {
							t.Errorf("set %s = %v, want only its sentinel %s", d.Name, d.Prefixes, zebraSentinel[d.Name])
						}
					}
				}
				if n != 2 {
					t.Errorf("%d VIP sets defined, want 2", n)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("statements of %s (-want +got):\n%s", zebraOnlyVIPsPolicy, diff)
			}
		})
	}
}
