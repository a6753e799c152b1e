package kube_test

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/kube/nodestate"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
)

// TestKubeAPIState: the state users see with kubectl, as shipped (speakers
// with --allocate=false, one allocator replica). Each speaker's
// VIPSpeakerNode lists its BGP session with the router and the VIPs it
// announces; the allocator's vipspeaker.io/Announced condition on a
// Service names the announcing nodes, turns False with NoEndpoints when a
// Local Service's last endpoint goes and with NoBGPSession when the router
// shuts every session, and True again when they come back. Nothing is
// written while nothing changes. `vipspeaker status --cluster` prints the
// same from the API server.
func TestKubeAPIState(t *testing.T) {
	e := setupWith(t, setupOpts{speakersOnly: true})
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(e.API.Admin())
	if err != nil {
		t.Fatal(err)
	}
	nodes := []string{"n1", "n2", "n3"}

	e.createService(t, "web")
	web := e.waitIngress(t, "web", 1)[0].String()
	e.waitCondition(t, "web", metav1.ConditionTrue, nodestate.ReasonAnnounced, web+" announced by n1, n2, n3")
	for _, n := range nodes {
		e.waitNodeState(t, dyn, n, func(st nodestate.Status) error {
			if len(st.Sessions) != 1 || st.Sessions[0].Peer != routerAddr || !st.Sessions[0].Established() ||
				st.Sessions[0].PeerAS != 64500 || st.Sessions[0].Since.IsZero() {
				return fmt.Errorf("sessions %+v, want one established with %s (AS 64500)", st.Sessions, routerAddr)
			}
			want := nodestate.VIP{Address: web, Service: ns + "/web", Mode: "bgp", Pool: "public", Role: nodestate.RoleAnnouncing}
			if !slices.Contains(st.VIPs, want) {
				return fmt.Errorf("vips %+v, want %+v among them", st.VIPs, want)
			}
			if !slices.Contains(st.Pools, "public") {
				return fmt.Errorf("pools %v, want public among them", st.Pools)
			}
			return nil
		})
	}

	t.Run("NoWritesWhileNothingChanges", func(t *testing.T) {
		before := e.nodeVersions(t, dyn)
		svcBefore := e.service(t, "web").ResourceVersion
		time.Sleep(6 * time.Second) // three write gaps of a speaker; nothing changes meanwhile
		if after := e.nodeVersions(t, dyn); !maps.Equal(before, after) {
			t.Errorf("VIPSpeakerNode objects written while nothing changed: %v -> %v", before, after)
		}
		if rv := e.service(t, "web").ResourceVersion; rv != svcBefore {
			t.Errorf("Service web written while nothing changed (resourceVersion %s -> %s)", svcBefore, rv)
		}
	})

	t.Run("LocalEndpointsGoAndCome", func(t *testing.T) {
		e.createService(t, "local", func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		})
		vip := e.waitIngress(t, "local", 1)[0].String()
		e.waitCondition(t, "local", metav1.ConditionFalse, nodestate.ReasonNoEndpoints, "externalTrafficPolicy is Local")
		_, err := e.cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "local-1", Labels: map[string]string{discoveryv1.LabelServiceName: "local"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.244.2.5"}, NodeName: ptr("n2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		e.waitCondition(t, "local", metav1.ConditionTrue, nodestate.ReasonAnnounced, vip+" announced by n2")
		e.waitNodeState(t, dyn, "n1", func(st nodestate.Status) error {
			if slices.ContainsFunc(st.VIPs, func(v nodestate.VIP) bool { return v.Address == vip }) {
				return fmt.Errorf("n1 lists %s, which only n2 may announce", vip)
			}
			return nil
		})
		if err := e.cs.DiscoveryV1().EndpointSlices(ns).Delete(ctx, "local-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitCondition(t, "local", metav1.ConditionFalse, nodestate.ReasonNoEndpoints, vip+": externalTrafficPolicy is Local")
	})

	t.Run("PeerDownAndUp", func(t *testing.T) {
		shut := func(no string) {
			t.Helper()
			cmds := []string{"configure terminal", "router bgp 64500"}
			for _, n := range nodes {
				cmds = append(cmds, no+"neighbor "+nodeAddrs[n]+" shutdown")
			}
			if _, err := e.frr.Vtysh(cmds...); err != nil {
				t.Fatal(err)
			}
		}
		shut("")
		e.waitCondition(t, "web", metav1.ConditionFalse, nodestate.ReasonNoBGPSession, web+": no BGP session is established on n1, n2, n3")
		e.waitNodeState(t, dyn, "n1", func(st nodestate.Status) error {
			if len(st.VIPs) != 0 || len(st.Sessions) != 1 || st.Sessions[0].Established() {
				return fmt.Errorf("sessions %+v, vips %+v: want the session down and no VIP announced", st.Sessions, st.VIPs)
			}
			return nil
		})
		shut("no ")
		e.waitCondition(t, "web", metav1.ConditionTrue, nodestate.ReasonAnnounced, web+" announced by n1, n2, n3")
	})

	t.Run("StatusCluster", func(t *testing.T) {
		kc, err := e.API.Kubeconfig(kubeapi.AdminToken)
		if err != nil {
			t.Fatal(err)
		}
		var out string
		lab.Eventually(t, 20*time.Second, 200*time.Millisecond, func() error {
			out, err = e.Hosts["api"].Run(ctx, e.bin, "status", "--cluster", "--kubeconfig", kc)
			if err != nil {
				return err
			}
			for _, re := range []string{
				`(?m)^` + ns + `/web\s+` + strings.ReplaceAll(web, ".", `\.`) + `\s+public\s+bgp\s+True\s+Announced\s+n1,n2,n3$`,
				`(?m)^` + ns + `/local\s+\S+\s+public\s+bgp\s+False\s+NoEndpoints\s+-$`,
				`(?m)^n2\s+` + strings.ReplaceAll(routerAddr, ".", `\.`) + `\s+64500\s+established\s+\S+\s+\d+\s+public,tiny,bench,bulk,migrated\s`,
			} {
				if !regexp.MustCompile(re).MatchString(out) {
					return fmt.Errorf("status --cluster has no line matching %s:\n%s", re, out)
				}
			}
			return nil
		})
		t.Logf("vipspeaker status --cluster:\n%s", out)
	})
}

// waitCondition waits for the Service's vipspeaker.io/Announced condition
// to have status and reason and a message containing msg.
func (e *env) waitCondition(t testing.TB, name string, status metav1.ConditionStatus, reason, msg string) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		c := apimeta.FindStatusCondition(e.service(t, name).Status.Conditions, nodestate.ConditionType)
		if c == nil {
			return fmt.Errorf("service %s has no %s condition", name, nodestate.ConditionType)
		}
		if c.Status != status || c.Reason != reason || !strings.Contains(c.Message, msg) {
			return fmt.Errorf("service %s: %s=%s %s %q, want %s %s containing %q", name, c.Type, c.Status, c.Reason, c.Message, status, reason, msg)
		}
		return nil
	})
}

// waitConditionExactly is waitCondition for the whole message.
func (e *env) waitConditionExactly(t testing.TB, name string, status metav1.ConditionStatus, reason, msg string) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		c := apimeta.FindStatusCondition(e.service(t, name).Status.Conditions, nodestate.ConditionType)
		if c == nil || c.Status != status || c.Reason != reason || c.Message != msg {
			return fmt.Errorf("service %s: condition %+v, want %s %s %q", name, c, status, reason, msg)
		}
		return nil
	})
}

// waitNodeState waits until node's VIPSpeakerNode passes check.
func (e *env) waitNodeState(t testing.TB, dyn dynamic.Interface, node string, check func(nodestate.Status) error) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		u, err := dyn.Resource(nodestate.GVR).Namespace(kube.DefaultNamespace).Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		o, err := nodestate.FromUnstructured(u)
		if err != nil {
			return err
		}
		if err := check(o.Status); err != nil {
			return fmt.Errorf("%s %s: %w", nodestate.Kind, node, err)
		}
		if refs := u.GetOwnerReferences(); len(refs) != 1 || refs[0].Kind != "Node" || refs[0].Name != node {
			return fmt.Errorf("%s %s: owners %+v, want the Node", nodestate.Kind, node, refs)
		}
		return nil
	})
}

// nodeVersions are the VIPSpeakerNode objects' resourceVersions.
func (e *env) nodeVersions(t testing.TB, dyn dynamic.Interface) map[string]string {
	t.Helper()
	l, err := dyn.Resource(nodestate.GVR).Namespace(kube.DefaultNamespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, u := range l.Items {
		out[u.GetName()] = u.GetResourceVersion()
	}
	return out
}
