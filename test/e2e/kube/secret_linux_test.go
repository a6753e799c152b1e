package kube_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// setSecret creates or updates a Secret of vipspeaker-system.
func (e *env) setSecret(t testing.TB, name string, data map[string]string) {
	t.Helper()
	ctx := context.Background()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: kube.DefaultNamespace}, StringData: data}
	_, err := e.cs.CoreV1().Secrets(kube.DefaultNamespace).Create(ctx, sec, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		old, gerr := e.cs.CoreV1().Secrets(kube.DefaultNamespace).Get(ctx, name, metav1.GetOptions{})
		if gerr != nil {
			t.Fatal(gerr)
		}
		old.Data, old.StringData = nil, data
		_, err = e.cs.CoreV1().Secrets(kube.DefaultNamespace).Update(ctx, old, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("secret %s: %v", name, err)
	}
}

// setConfigMap replaces the ConfigMap's two keys.
func (e *env) setConfigMap(t testing.TB, toml, gobgp string) {
	t.Helper()
	if err := e.API.SetAgentConfig(toml, gobgp); err != nil {
		t.Fatal(err)
	}
}

// frrPassword sets (or with pw "" removes) FRR's MD5 password for every
// node; FRR resets the sessions.
func (e *env) frrPassword(t testing.TB, pw string) {
	t.Helper()
	cmds := []string{"configure terminal", "router bgp 64500"}
	for _, n := range []string{"n1", "n2", "n3"} {
		if pw == "" {
			cmds = append(cmds, "no neighbor "+nodeAddrs[n]+" password")
		} else {
			cmds = append(cmds, "neighbor "+nodeAddrs[n]+" password "+pw)
		}
	}
	if _, err := e.frr.Vtysh(cmds...); err != nil {
		t.Fatal(err)
	}
}

func (e *env) waitAllEstablished(t testing.TB, timeout time.Duration) {
	t.Helper()
	for _, n := range []string{"n1", "n2", "n3"} {
		if err := e.frr.WaitEstablished(nodeAddrs[n], timeout); err != nil {
			t.Fatalf("FRR and %s: %v", n, err)
		}
	}
}

// A BGP MD5 password read from a Secret the ConfigMap names
// (auth-password = "secret:bgp-auth/password"): FRR, which requires the
// password, brings the sessions up; a change to the Secret is applied (FRR
// changed first, so only the new password can bring them back); a
// ConfigMap naming a missing Secret is refused with an InvalidConfig Event
// on the ConfigMap naming the field and the Secret, and the sessions stay.
// No agent logs a password.
func (e *env) testSecretBGPPassword(t *testing.T) {
	const pw1, pw2 = "s3cret-one-7d1c", "s3cret-two-94ae"
	withRef := func(ref string) string {
		return strings.Replace(testGoBGP, "peer-as = 64500\n", fmt.Sprintf("peer-as = 64500\n    auth-password = %q\n", ref), 1)
	}
	e.setSecret(t, "bgp-auth", map[string]string{"password": pw1})
	e.frrPassword(t, pw1)
	e.setConfigMap(t, testTOML, withRef("secret:bgp-auth/password"))
	e.waitAllEstablished(t, 60*time.Second)
	e.createService(t, "md5-web")
	vip := e.waitIngress(t, "md5-web", 1)[0]
	e.waitRoute(t, vip, "n1", "n2", "n3")

	// The Secret changes: FRR first, so the sessions can only come back
	// with the new password.
	e.frrPassword(t, pw2)
	lab.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		st, err := e.frr.PeerState(nodeAddrs["n1"])
		if err != nil {
			return err
		}
		if st == "Established" {
			return fmt.Errorf("n1 still Established after FRR's password changed")
		}
		return nil
	})
	e.setSecret(t, "bgp-auth", map[string]string{"password": pw2})
	e.waitAllEstablished(t, 60*time.Second)
	e.waitRoute(t, vip, "n1", "n2", "n3")

	// A ConfigMap naming a Secret that does not exist is refused whole.
	e.setConfigMap(t, testTOML, withRef("secret:nope/password"))
	var ev corev1.Event
	lab.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		l, err := e.cs.CoreV1().Events(kube.DefaultNamespace).List(context.Background(), metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + kube.DefaultConfigMapName + ",reason=InvalidConfig"})
		if err != nil {
			return err
		}
		for _, x := range l.Items {
			if strings.Contains(x.Message, "secret:nope/password") {
				ev = x
				return nil
			}
		}
		return fmt.Errorf("no InvalidConfig Event naming the missing Secret (%d InvalidConfig Events)", len(l.Items))
	})
	for _, want := range []string{"auth-password", "vipspeaker-system/nope", "not found", "gobgp.conf"} {
		if !strings.Contains(ev.Message, want) {
			t.Errorf("InvalidConfig Event %q does not mention %q", ev.Message, want)
		}
	}
	time.Sleep(2 * time.Second)
	for _, n := range []string{"n1", "n2", "n3"} {
		if st, err := e.frr.PeerState(nodeAddrs[n]); err != nil || st != "Established" {
			t.Errorf("after the refused ConfigMap, FRR and %s: %s %v (the last good config should stay)", n, st, err)
		}
	}
	if hops, _ := e.nextHops(netip.PrefixFrom(vip, 32).String()); len(hops) != 3 {
		t.Errorf("after the refused ConfigMap, FRR has %v for %s", hops, vip)
	}
	for n, p := range e.agents {
		for _, pw := range []string{pw1, pw2} {
			if strings.Contains(p.Log(), pw) {
				t.Errorf("agent %s logged a password", n)
			}
		}
	}
}
