package kube_test

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// aggPool aggregates a dual-stack pool to its /24 and its /64.
const aggPool = `
[[pools]]
name = "agg"
addresses = ["192.0.2.0/24", "2001:db8:aa::/64"]
auto-assign = false
  [pools.advertise]
  aggregation-length = 24
  aggregation-length-v6 = 64
`

var aggPrefixes = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:aa::/64")}

// A pool with aggregation-length = 24 and aggregation-length-v6 = 64, on
// three agents peering with FRR over IPv4 sessions that carry both
// families: a dual-stack Cluster Service and a dual-stack Local Service of
// the pool leave FRR holding, of the pool, exactly the /24 and the /64 from
// all three nodes (next hops: their IPv4 and IPv6 addresses) and the Local
// Service's /32 and /128 from the one node with a ready endpoint; the
// router's kernel routes them so. With the Cluster Service deleted, the
// /24 and the /64 leave and the host routes stay. No kubelet runs here:
// the test writes the Local Service's EndpointSlices, as the
// EndpointSlice controller would for a Pod on n2 (test/e2e/realnodes
// TestPoolAdvertisement shows the IPv4 half with real Pods).
func TestKubeAggregation(t *testing.T) {
	e := setupWith(t, setupOpts{v6: true, pools: aggPool})
	ctx := context.Background()
	dual := func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyRequireDualStack)
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
	local := func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
	e.createService(t, "agg-cluster", dual, withAnn(kube.AnnotationPool, "agg"))
	e.createService(t, "agg-local", dual, local, withAnn(kube.AnnotationPool, "agg"))
	for fam, addr := range map[discoveryv1.AddressType]string{discoveryv1.AddressTypeIPv4: "10.244.2.7", discoveryv1.AddressTypeIPv6: "fd00:244:2::7"} {
		_, err := e.cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{GenerateName: "agg-local-", Labels: map[string]string{discoveryv1.LabelServiceName: "agg-local"}},
			AddressType: fam,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}, NodeName: ptr("n2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"agg-cluster", "agg-local"} {
		for _, a := range e.waitIngress(t, name, 2) {
			if !aggPrefixes[0].Contains(a) && !aggPrefixes[1].Contains(a) {
				t.Fatalf("%s got %s, outside pool agg", name, a)
			}
		}
	}
	loc := e.waitIngress(t, "agg-local", 2)
	slices.SortFunc(loc, func(a, b netip.Addr) int { return a.BitLen() - b.BitLen() })
	all := []string{"n1", "n2", "n3"}
	want := map[string][]string{
		"192.0.2.0/24":         e.hops(all, false),
		"2001:db8:aa::/64":     e.hops(all, true),
		lab.HostPrefix(loc[0]): e.hops([]string{"n2"}, false),
		lab.HostPrefix(loc[1]): e.hops([]string{"n2"}, true),
	}
	e.waitPoolTable(t, want)
	for p, gws := range want {
		if err := e.router.WaitGateways(p, 30*time.Second, gws...); err != nil {
			t.Error(err)
		}
	}

	// The last Cluster Service of the pool gone: the aggregates leave with
	// it, the Local Service's host routes stay.
	e.deleteService(t, "agg-cluster")
	delete(want, "192.0.2.0/24")
	delete(want, "2001:db8:aa::/64")
	e.waitPoolTable(t, want)
}

// hops are the nodes' addresses of one family (IPv6: on the LAN), sorted.
func (e *env) hops(nodes []string, v6 bool) []string {
	var out []string
	for _, n := range nodes {
		if v6 {
			out = append(out, nodeAddr6(n))
		} else {
			out = append(out, nodeAddrs[n])
		}
	}
	slices.Sort(out)
	return out
}

// waitPoolTable waits until FRR's BGP tables hold, of the pool agg's
// prefixes, exactly want's keys, each with a valid path from exactly the
// next hops want names (global addresses; FRR also lists an IPv6 path's
// link-local next hop).
func (e *env) waitPoolTable(t testing.TB, want map[string][]string) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		got := map[string][]string{}
		for _, afi := range []string{"ipv4", "ipv6"} {
			rs, err := e.frr.BGPRoutes(afi)
			if err != nil {
				return err
			}
			for p, paths := range rs {
				if !aggPrefixes[0].Overlaps(p) && !aggPrefixes[1].Overlaps(p) {
					continue
				}
				hops := []string{}
				for _, path := range paths {
					for _, nh := range path.NextHops {
						if !nh.IsLinkLocalUnicast() {
							hops = append(hops, nh.String())
						}
					}
				}
				slices.Sort(hops)
				got[p.String()] = hops
			}
		}
		if !maps.EqualFunc(got, want, slices.Equal) {
			return fmt.Errorf("FRR holds of pool agg %v, want %v", got, want)
		}
		return nil
	})
}
