package kube

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// secretSyncTimeout bounds how long a configuration pass waits for a newly
// named Secret to be read from the API server.
const secretSyncTimeout = 10 * time.Second

// secretWatch follows one Secret of the controller's namespace (a
// field-selected informer: only that Secret is listed, watched and cached).
type secretWatch struct {
	inf    cache.SharedIndexInformer
	cancel context.CancelFunc
	// version identifies what the last configuration pass read (see
	// secretVersion).
	version string
}

// secrets is the set of Secrets the configuration names.
type secrets struct {
	mu      sync.Mutex
	runCtx  context.Context // nil before Run
	watches map[string]*secretWatch
	used    map[string]bool // names asked for during the current pass
	changed chan struct{}
}

// SecretValue returns the value of key in the Secret name of the
// controller's namespace (vipspeaker-system): the configuration's
// secret:NAME/KEY references. Call it from Options.OnConfig. From then on
// the Secret is watched (only that one, by a field selector) and a change to
// it runs the configuration again. Before Run it reads the Secret once
// directly. The value is never logged; errors name the Secret and the key.
func (c *Controller) SecretValue(ctx context.Context, name, key string) ([]byte, error) {
	s := &c.secrets
	ns := c.opts.Namespace
	s.mu.Lock()
	if s.used == nil {
		s.used = map[string]bool{}
	}
	s.used[name] = true
	runCtx := s.runCtx
	if runCtx == nil {
		s.mu.Unlock()
		gctx, cancel := context.WithTimeout(ctx, secretSyncTimeout)
		defer cancel()
		sec, err := c.cs.CoreV1().Secrets(ns).Get(gctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("secret %s/%s not found", ns, name)
		}
		if err != nil {
			return nil, fmt.Errorf("read secret %s/%s: %w", ns, name, err)
		}
		return secretKey(sec, key)
	}
	w := s.watches[name]
	if w == nil {
		w = c.watchSecret(runCtx, name)
		if s.watches == nil {
			s.watches = map[string]*secretWatch{}
		}
		s.watches[name] = w
	}
	s.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, secretSyncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(wctx.Done(), w.inf.HasSynced) {
		return nil, fmt.Errorf("secret %s/%s not read from the API server within %s", ns, name, secretSyncTimeout)
	}
	obj, ok, _ := w.inf.GetStore().GetByKey(ns + "/" + name)
	sec, _ := obj.(*corev1.Secret)
	s.mu.Lock()
	w.version = secretVersion(sec)
	s.mu.Unlock()
	if !ok || sec == nil {
		return nil, fmt.Errorf("secret %s/%s not found", ns, name)
	}
	return secretKey(sec, key)
}

func secretKey(sec *corev1.Secret, key string) ([]byte, error) {
	v, ok := sec.Data[key]
	if !ok {
		if sv, sok := sec.StringData[key]; sok {
			return []byte(sv), nil
		}
		return nil, fmt.Errorf("secret %s/%s has no key %q", sec.Namespace, sec.Name, key)
	}
	return v, nil
}

// watchSecret starts an informer for one Secret; s.mu is held.
func (c *Controller) watchSecret(ctx context.Context, name string) *secretWatch {
	wctx, cancel := context.WithCancel(ctx)
	core := c.cs.CoreV1()
	inf := newInformer(c.cs, core.Secrets(c.opts.Namespace), &corev1.Secret{}, "metadata.name="+name)
	changed := func() {
		select {
		case c.secrets.changed <- struct{}{}:
		default:
		}
	}
	_, _ = inf.AddEventHandler(counted("secrets", cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { changed() },
		UpdateFunc: func(o, n any) {
			was, _ := o.(*corev1.Secret)
			is, _ := n.(*corev1.Secret)
			if was != nil && is != nil && maps.EqualFunc(was.Data, is.Data, bytes.Equal) {
				return // metadata only
			}
			changed()
		},
		DeleteFunc: func(any) { changed() },
	}))
	wait := runInformers(wctx, inf)
	c.log.Debug("watching a Secret named by the configuration", "secret", c.opts.Namespace+"/"+name)
	return &secretWatch{inf: inf, cancel: func() { cancel(); wait() }}
}

// beginSecretPass starts a configuration pass: the Secrets it asks for are
// recorded.
func (c *Controller) beginSecretPass() {
	c.secrets.mu.Lock()
	c.secrets.used = map[string]bool{}
	c.secrets.mu.Unlock()
}

// endSecretPass stops watching the Secrets the pass did not ask for.
func (c *Controller) endSecretPass() {
	s := &c.secrets
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, w := range s.watches {
		if !s.used[name] {
			w.cancel()
			delete(s.watches, name)
			c.log.Debug("no longer watching a Secret", "secret", c.opts.Namespace+"/"+name)
		}
	}
}

// secretsMoved reports whether a watched Secret differs from what the last
// pass resolved.
func (c *Controller) secretsMoved() bool {
	s := &c.secrets
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, w := range s.watches {
		if !w.inf.HasSynced() {
			continue
		}
		var sec *corev1.Secret
		if obj, ok, _ := w.inf.GetStore().GetByKey(c.opts.Namespace + "/" + name); ok {
			sec, _ = obj.(*corev1.Secret)
		}
		if secretVersion(sec) != w.version {
			return true
		}
	}
	return false
}

// runSecrets re-runs the configuration when a Secret it named changes,
// until ctx ends.
func (c *Controller) runSecrets(ctx context.Context) {
	defer func() {
		s := &c.secrets
		s.mu.Lock()
		for name, w := range s.watches {
			w.cancel()
			delete(s.watches, name)
		}
		s.runCtx = nil
		s.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.secrets.changed:
		}
		// Let a burst of updates (several keys, kubectl apply) settle.
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		if !c.secretsMoved() {
			continue
		}
		cm, err := c.cms.ConfigMaps(c.opts.Namespace).Get(c.opts.ConfigMapName)
		if err != nil {
			continue
		}
		c.log.Info("a Secret named by the configuration changed: applying the ConfigMap again", "configmap", c.opts.Namespace+"/"+c.opts.ConfigMapName)
		c.reloadConfig(cm)
	}
}

// secretVersion identifies a Secret's content without holding it: "" when
// absent, else a hash of its keys and values.
func secretVersion(sec *corev1.Secret) string {
	if sec == nil {
		return ""
	}
	keys := slices.Sorted(maps.Keys(sec.Data))
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s%d:", len(k), k, len(sec.Data[k]))
		h.Write(sec.Data[k])
	}
	return "present:" + hex.EncodeToString(h.Sum(nil))
}
