package kube

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/vipspeaker/vipspeaker/config"
)

// nsWatch follows the Namespaces' labels for the pools' namespace-selector
// during one allocator term. It is started only when a pool has such a
// selector, so an allocator without one neither watches Namespaces nor
// needs the right to, and it is not part of the caches Run waits for.
type nsWatch struct {
	lister corelisters.NamespaceLister
	synced cache.InformerSynced
}

// nsSyncWait bounds how long a new allocator term waits for the Namespaces
// before it rebuilds; Services that need their namespace's labels are
// retried until they are known.
const nsSyncWait = 10 * time.Second

// usesNamespaceSelector reports whether some pool has a namespace-selector.
func usesNamespaceSelector(cfg *config.Config) bool {
	return cfg != nil && slices.ContainsFunc(cfg.Pools, func(p config.Pool) bool { return p.NamespaceSelector != "" })
}

// awaitNamespaces starts the Namespace watch of the term when the
// configuration needs it and waits a little for its cache, so the rebuild
// decides with the labels.
func (c *Controller) awaitNamespaces(ctx context.Context, st *allocState) {
	if !usesNamespaceSelector(c.cfg.Load()) {
		return
	}
	st.mu.Lock()
	w := c.namespaceWatch(ctx, st)
	st.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, nsSyncWait)
	defer cancel()
	if !cache.WaitForCacheSync(wctx.Done(), w.synced) && ctx.Err() == nil {
		c.log.Warn("namespaces not listed yet: Services that need a namespace-selector's answer wait (may the allocator list and watch namespaces?)")
	}
}

// namespaceWatch returns the term's Namespace watch, starting it on first
// use; st.mu is held. A Namespace added or relabelled requeues its Services
// (the controller has no periodic resync).
func (c *Controller) namespaceWatch(ctx context.Context, st *allocState) *nsWatch {
	if st.ns != nil {
		return st.ns
	}
	inf := newInformer(c.cs, c.cs.CoreV1().Namespaces(), &corev1.Namespace{}, "")
	requeue := func(obj any) {
		n, ok := obj.(*corev1.Namespace)
		if !ok {
			return
		}
		svcs, _ := c.services.Services(n.Name).List(everything)
		for _, s := range svcs {
			c.queue.Add(ServiceKey(s))
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: requeue,
		UpdateFunc: func(o, n any) {
			on, _ := o.(*corev1.Namespace)
			nn, _ := n.(*corev1.Namespace)
			if on == nil || nn == nil || !maps.Equal(on.Labels, nn.Labels) {
				requeue(n)
			}
		},
	}); err != nil {
		c.log.Error("namespace watch", "error", err)
	}
	go inf.RunWithContext(ctx)
	st.ns = &nsWatch{lister: corelisters.NewNamespaceLister(inf.GetIndexer()), synced: inf.HasSynced}
	return st.ns
}

// namespaceLabels returns the labels of namespace ns when a pool has a
// namespace-selector (nil otherwise, or when the Namespace is gone); an
// error while they are not known yet. st.mu is held.
func (c *Controller) namespaceLabels(ctx context.Context, st *allocState, cfg *config.Config, ns string) (map[string]string, error) {
	if !usesNamespaceSelector(cfg) {
		return nil, nil
	}
	w := c.namespaceWatch(ctx, st)
	if !w.synced() {
		return nil, fmt.Errorf("the labels of namespace %q are not known yet (pools with a namespace-selector need list and watch on namespaces)", ns)
	}
	n, err := w.lister.Get(ns)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return n.Labels, nil
}
