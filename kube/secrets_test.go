package kube

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vipspeaker/vipspeaker/routing"
)

// OnConfig reads a Secret through SecretValue: a missing one refuses the
// ConfigMap; creating it, then changing it, runs OnConfig again with the
// value; a Secret of another namespace is never read.
func TestSecretValueFollowsTheSecret(t *testing.T) {
	cs := fake.NewClientset()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: DefaultNamespace, Name: DefaultConfigMapName},
		Data: map[string]string{"vipspeaker.toml": fakeTOML, "gobgp.conf": "x"}}
	if err := cs.Tracker().Add(cm); err != nil {
		t.Fatal(err)
	}
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "auth"}, Data: map[string][]byte{"password": []byte("not-this")}}
	if err := cs.Tracker().Add(other); err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		seen     []string
		rejected []string
	)
	var c *Controller
	c, err := New(Options{NodeName: "n1", client: cs, NoAllocator: true,
		OnConfig: func(_, _ []byte) error {
			v, err := c.SecretValue(context.Background(), "auth", "password")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				return err
			}
			seen = append(seen, string(v))
			return nil
		},
		OnConfigRejected: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			rejected = append(rejected, err.Error())
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, func([]routing.VIP) {}) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	}()
	state := func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("seen %q rejected %q", seen, rejected)
	}
	eventually(t, "refused for the missing Secret", func() error {
		if s := state(); !strings.Contains(s, "secret vipspeaker-system/auth not found") {
			return fmt.Errorf("%s", s)
		}
		return nil
	})
	// The fake clientset drops events sent before a watch starts (it has
	// no resource versions to resume from): let the Secret's watch start.
	time.Sleep(time.Second)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: DefaultNamespace, Name: "auth"}, Data: map[string][]byte{"password": []byte("one")}}
	if _, err := cs.CoreV1().Secrets(DefaultNamespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "applied once the Secret exists", func() error {
		if s := state(); !strings.Contains(s, `seen ["one"]`) {
			return fmt.Errorf("%s", s)
		}
		return nil
	})
	sec.Data["password"] = []byte("two")
	if _, err := cs.CoreV1().Secrets(DefaultNamespace).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "applied again after the change", func() error {
		if s := state(); !strings.Contains(s, `seen ["one" "two"]`) {
			return fmt.Errorf("%s", s)
		}
		return nil
	})
	if s := state(); strings.Contains(s, "not-this") {
		t.Errorf("a Secret of another namespace was read: %s", s)
	}
}
