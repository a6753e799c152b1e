package kube

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// Only a configuration with a namespace-selector makes the allocator read
// Namespaces (an agent without the right must not depend on it): none is
// listed while no pool has one; after a reload that adds one, the
// Namespaces are watched and a Service of a labelled namespace gets the
// selected pool. (Fake clientset: the wiring; test/e2e/kube
// TestNamespaceSelector runs it against a real kube-apiserver.)
func TestNamespacesReadOnlyForSelector(t *testing.T) {
	cs, _, _ := startFake(t, node("n1", true), lbService("web"))
	ctx := context.Background()
	waitPool := func(ns, name, want string) {
		t.Helper()
		eventually(t, ns+"/"+name+" allocated from "+want, func() error {
			s, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if got := s.Annotations[AnnotationAllocatedFrom]; len(Ingress(s)) != 1 || got != want {
				return fmt.Errorf("ingress %v from %q", Ingress(s), got)
			}
			return nil
		})
	}
	waitPool("demo", "web", "public")
	if n := namespaceReads(cs); n != 0 {
		t.Fatalf("%d list/watch of namespaces without a namespace-selector", n)
	}

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"team": "a"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: DefaultNamespace, Name: DefaultConfigMapName},
		Data: map[string]string{"vipspeaker.toml": fakeTOML + `
[[pools]]
name = "team"
addresses = ["192.0.2.0-192.0.2.3"]
namespace-selector = "team=a"
priority = 1
`, "gobgp.conf": "x"}}
	if _, err := cs.CoreV1().ConfigMaps(DefaultNamespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := lbService("api")
	svc.Namespace = "team-a"
	if _, err := cs.CoreV1().Services("team-a").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPool("team-a", "api", "team")
	waitPool("demo", "web", "public")
	if namespaceReads(cs) == 0 {
		t.Error("namespaces never listed with a namespace-selector in force")
	}
}

func namespaceReads(cs *fake.Clientset) int {
	n := 0
	for _, a := range cs.Actions() {
		if a.GetResource().Resource == "namespaces" && (a.GetVerb() == "list" || a.GetVerb() == "watch") {
			n++
		}
	}
	return n
}
