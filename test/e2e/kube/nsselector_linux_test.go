package kube_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
)

// nsSelectorTOML: pool "team" serves the namespaces labelled team=a, before
// the general pool (priority).
var nsSelectorTOML = testTOML + `
[[pools]]
name = "team"
addresses = ["192.0.2.0/28"]
namespace-selector = "team=a"
priority = 1
`

// Pools chosen by namespace labels (namespace-selector), with the
// allocator as shipped (`vipspeaker allocate`, its ServiceAccount's rights
// from deploy/kustomize): a Service in a namespace labelled team=a gets an
// address of the selected pool; one in an unlabelled namespace that asks
// for the pool gets an AllocationFailed Event (NamespaceNotAllowed);
// labelling its namespace gives it an address (the Namespace's change
// requeues its Services); removing the label keeps the address given.
func TestNamespaceSelector(t *testing.T) {
	bin := lab.Vipspeaker(t)
	c := kubeapi.NewCluster(t, kubeapi.ClusterOptions{BridgeAddrs: []string{routerAddr + "/24"}, APIAddr: apiAddr,
		Deploy: true, TOML: nsSelectorTOML, Namespace: ns})
	e := &env{Cluster: c, bin: bin, cs: c.Client}
	ctx := context.Background()
	team := netip.MustParsePrefix("192.0.2.0/28")
	for name, l := range map[string]map[string]string{"team-a": {"team": "a"}, "plain": nil} {
		if _, err := e.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.startAllocator(t, "allocator")

	create := func(namespace, name string, opts ...svcOpt) {
		t.Helper()
		if _, err := e.cs.CoreV1().Services(namespace).Create(ctx, kubeapi.LoadBalancer(name, namespace, opts...), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ingress := func(namespace, name string) ([]netip.Addr, string, error) {
		s, err := e.cs.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, "", err
		}
		return kube.Ingress(s), s.Annotations[kube.AnnotationAllocatedFrom], nil
	}
	waitTeamAddr := func(namespace, name string) netip.Addr {
		t.Helper()
		var got []netip.Addr
		lab.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
			var pool string
			var err error
			if got, pool, err = ingress(namespace, name); err != nil {
				return err
			}
			if len(got) != 1 || !team.Contains(got[0]) || pool != "team" {
				return fmt.Errorf("%s/%s has %v from pool %q, want one address of pool team", namespace, name, got, pool)
			}
			return nil
		})
		return got[0]
	}
	waitRefused := func(namespace, name string) {
		t.Helper()
		lab.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
			evs, err := e.API.Events(namespace, name, "AllocationFailed")
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(evs, func(ev corev1.Event) bool { return strings.Contains(ev.Message, "NamespaceNotAllowed") }) {
				return fmt.Errorf("no AllocationFailed NamespaceNotAllowed event on %s/%s (%d AllocationFailed)", namespace, name, len(evs))
			}
			return nil
		})
	}
	label := func(namespace, patch string) {
		t.Helper()
		if _, err := e.cs.CoreV1().Namespaces().Patch(ctx, namespace, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	askTeam := withAnn(kube.AnnotationPool, "team")

	start := time.Now()
	create("team-a", "web-a")
	web := waitTeamAddr("team-a", "web-a")
	create("plain", "asks", askTeam)
	waitRefused("plain", "asks")
	if got, _, _ := ingress("plain", "asks"); len(got) != 0 {
		t.Errorf("plain/asks got %v although its namespace is not selected", got)
	}
	label("plain", `{"metadata":{"labels":{"team":"a"}}}`)
	given := waitTeamAddr("plain", "asks")
	if given == web {
		t.Errorf("plain/asks got %s, which team-a/web-a holds", given)
	}
	label("plain", `{"metadata":{"labels":{"team":null}}}`)
	// A new Service asking for the pool is refused: the allocator has seen
	// the label go; the one given an address keeps it.
	create("plain", "late", askTeam)
	waitRefused("plain", "late")
	if got, pool, err := ingress("plain", "asks"); err != nil || len(got) != 1 || got[0] != given || pool != "team" {
		t.Errorf("after the label went, plain/asks has %v from %q (%v), want %s kept", got, pool, err, given)
	}
	t.Logf("selected, refused, relabelled, kept in %v", time.Since(start).Round(time.Millisecond))
}
