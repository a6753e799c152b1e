package kube

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vipspeaker/vipspeaker/routing"
)

// These tests run the Controller against client-go's fake clientset: they
// check the wiring (informers, election, status and annotation writes,
// Events, the apply callback). The e2e suite in test/e2e/kube runs the same
// against a real kube-apiserver.

type applied struct {
	mu   sync.Mutex
	last []routing.VIP
	n    int
}

func (a *applied) set(v []routing.VIP) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.last, a.n = v, a.n+1
}

func (a *applied) get() ([]routing.VIP, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last, a.n
}

func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

const fakeTOML = `
[[pools]]
name = "public"
addresses = ["203.0.113.0-203.0.113.3"] # a range: every address as written, .0 included
`

func startFake(t *testing.T, objs ...any) (*fake.Clientset, *applied, func() []string) {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: DefaultNamespace, Name: DefaultConfigMapName},
		Data: map[string]string{"vipspeaker.toml": fakeTOML, "gobgp.conf": "x"}}
	var ro []any
	ro = append(ro, cm)
	ro = append(ro, objs...)
	cs := fake.NewClientset()
	for _, o := range ro {
		switch o := o.(type) {
		case *corev1.ConfigMap:
			cs.Tracker().Add(o)
		case *corev1.Service:
			cs.Tracker().Add(o)
		case *corev1.Node:
			cs.Tracker().Add(o)
		}
	}
	var cfgMu sync.Mutex
	var configs []string
	c, err := New(Options{NodeName: "n1", client: cs, LeaseDuration: 2 * time.Second,
		OnConfig: func(v, g []byte) error {
			cfgMu.Lock()
			defer cfgMu.Unlock()
			configs = append(configs, string(g))
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	a := &applied{}
	go func() { done <- c.Run(ctx, a.set) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return cs, a, func() []string {
		cfgMu.Lock()
		defer cfgMu.Unlock()
		return slices.Clone(configs)
	}
}

func TestControllerAllocatesAndAnnounces(t *testing.T) {
	svc := lbService("web")
	svc.Annotations = map[string]string{}
	old := lbService("old", status("203.0.113.2"), ann(AnnotationAllocatedFrom, "public"))
	cs, a, configs := startFake(t, node("n1", true), svc, old)
	ctx := context.Background()

	eventually(t, "web allocated", func() error {
		s, err := cs.CoreV1().Services("demo").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := fmt.Sprint(Ingress(s)); got != "[203.0.113.0]" || s.Annotations[AnnotationAllocatedFrom] != "public" {
			return fmt.Errorf("ingress %s, allocated-from %q", got, s.Annotations[AnnotationAllocatedFrom])
		}
		return nil
	})
	eventually(t, "VIPs applied", func() error {
		v, _ := a.get()
		if vipsString(v) != "203.0.113.0 demo/web bgp public [] [];203.0.113.2 demo/old bgp public [] [];" {
			return fmt.Errorf("applied %s", vipsString(v))
		}
		return nil
	})
	if fmt.Sprint(configs()) != "[x]" {
		t.Errorf("OnConfig got %q", configs())
	}
	// The existing Service kept its address; Events were recorded.
	s, _ := cs.CoreV1().Services("demo").Get(ctx, "old", metav1.GetOptions{})
	if got := fmt.Sprint(Ingress(s)); got != "[203.0.113.2]" {
		t.Errorf("old moved to %s", got)
	}
	eventually(t, "events", func() error {
		evs, err := cs.CoreV1().Events("demo").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		reasons := map[string]int{}
		for _, e := range evs.Items {
			reasons[e.InvolvedObject.Name+"/"+e.Reason]++
		}
		if reasons["web/AddressAllocated"] != 1 || reasons["web/Announcing"] != 1 || reasons["old/AddressAllocated"] != 0 {
			return fmt.Errorf("events %v", reasons)
		}
		return nil
	})

	// Deleting frees the address for the next Service.
	if err := cs.CoreV1().Services("demo").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "VIP withdrawn", func() error {
		v, _ := a.get()
		if len(v) != 1 || v[0].Addr != netip.MustParseAddr("203.0.113.2") {
			return fmt.Errorf("applied %s", vipsString(v))
		}
		return nil
	})
}

func TestControllerBadConfigKeepsLastGood(t *testing.T) {
	cs, _, configs := startFake(t, node("n1", true))
	ctx := context.Background()
	eventually(t, "first config", func() error {
		if len(configs()) != 1 {
			return fmt.Errorf("configs %q", configs())
		}
		return nil
	})
	cm, _ := cs.CoreV1().ConfigMaps(DefaultNamespace).Get(ctx, DefaultConfigMapName, metav1.GetOptions{})
	cm.Data["vipspeaker.toml"] = "[[pools]]\nname = \"x\"\naddresses = [\"300.1.1.1\"]\n"
	cm.Data["gobgp.conf"] = "y"
	if _, err := cs.CoreV1().ConfigMaps(DefaultNamespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "InvalidConfig event", func() error {
		evs, _ := cs.CoreV1().Events(DefaultNamespace).List(ctx, metav1.ListOptions{})
		for _, e := range evs.Items {
			if e.Reason == "InvalidConfig" {
				return nil
			}
		}
		return fmt.Errorf("%d events, none InvalidConfig", len(evs.Items))
	})
	if len(configs()) != 1 {
		t.Errorf("OnConfig called for a refused ConfigMap: %q", configs())
	}
	svc := lbService("web")
	if _, err := cs.CoreV1().Services("demo").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web allocated from the last good pools", func() error {
		s, _ := cs.CoreV1().Services("demo").Get(ctx, "web", metav1.GetOptions{})
		if got := fmt.Sprint(Ingress(s)); got != "[203.0.113.0]" {
			return fmt.Errorf("ingress %s", got)
		}
		return nil
	})
}
