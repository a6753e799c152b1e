package kube

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/kube/allocator"
)

var everything = labels.Everything()

// runElection takes part in the allocator election until ctx ends.
func (c *Controller) runElection(ctx context.Context) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: c.opts.LeaseName, Namespace: c.opts.Namespace},
		Client:     c.cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: c.opts.NodeName},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   c.opts.LeaseDuration,
			RenewDeadline:   c.opts.RenewDeadline,
			RetryPeriod:     c.opts.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            c.opts.LeaseName,
			WatchDog:        c.watchdog,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					c.log.Info("allocator lease acquired", "lease", c.opts.Namespace+"/"+c.opts.LeaseName)
					c.metrics.leader.Set(1)
					c.allocate(lctx)
				},
				OnStoppedLeading: func() {
					c.metrics.leader.Set(0)
					c.log.Info("allocator lease released or lost")
				},
			},
		})
		if err != nil {
			c.log.Error("leader election", "error", err)
			return
		}
		le.Run(ctx)
	}
}

// allocState is the allocator's state for one term of leadership.
type allocState struct {
	mu      sync.Mutex // held while deciding, not while writing
	alloc   *allocator.Allocator
	gen     uint64
	failed  map[string]string // service -> last failure message
	invalid map[string]string // service -> last annotation errors
	ns      *nsWatch          // Namespaces' labels, once a pool needs them
}

// allocate runs the allocator while ctx (the leadership) lasts: it rebuilds
// the holdings from the Services' status, then serves the queue.
func (c *Controller) allocate(ctx context.Context) {
	st := &allocState{failed: map[string]string{}, invalid: map[string]string{}}
	c.syncPools(st)
	c.awaitNamespaces(ctx, st)
	// Rebuild: Services that carry addresses first, oldest first, so
	// nothing moves; then the others.
	svcs, _ := c.services.List(everything)
	slices.SortFunc(svcs, func(a, b *corev1.Service) int {
		ha, hb := len(a.Status.LoadBalancer.Ingress) > 0, len(b.Status.LoadBalancer.Ingress) > 0
		if ha != hb {
			if ha {
				return -1
			}
			return 1
		}
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), strings.Compare(ServiceKey(a), ServiceKey(b)))
	})
	for _, s := range svcs {
		if ctx.Err() != nil {
			return
		}
		if len(s.Status.LoadBalancer.Ingress) == 0 {
			// Everything held is known now: the rest only needs new
			// addresses, which the workers write in parallel (the
			// queue keeps the order).
			c.queue.Add(ServiceKey(s))
			continue
		}
		if err := c.process(ctx, st, ServiceKey(s)); err != nil {
			c.queue.AddRateLimited(ServiceKey(s))
		}
	}
	c.log.Info("allocator rebuilt from the services", "services", len(svcs))
	go c.runConditions(ctx)
	stop := context.AfterFunc(ctx, func() { c.queue.Add("") }) // wake Get
	defer stop()
	// Decisions are taken one at a time under st.mu; the API writes of
	// different Services proceed in parallel (the queue never hands one
	// key to two workers).
	var wg sync.WaitGroup
	for range allocWorkers {
		wg.Go(func() { c.work(ctx, st) })
	}
	wg.Wait()
}

// allocWorkers is how many Services' status writes may be in flight.
const allocWorkers = 8

func (c *Controller) work(ctx context.Context, st *allocState) {
	for {
		key, quit := c.queue.Get()
		if quit {
			return
		}
		if ctx.Err() != nil {
			c.queue.Done(key)
			// Kept for the next term; "" wakes the next worker.
			c.queue.Add(key)
			return
		}
		if key == "" {
			c.queue.Forget(key)
			c.queue.Done(key)
			continue
		}
		if err := c.process(ctx, st, key); err != nil {
			c.log.Warn("service not updated; retrying", "service", key, "error", err)
			c.queue.AddRateLimited(key)
		} else {
			c.queue.Forget(key)
		}
		c.queue.Done(key)
	}
}

func (c *Controller) syncPools(st *allocState) {
	gen := c.cfgGen.Load()
	if st.alloc != nil && gen == st.gen {
		return
	}
	cfg := c.cfg.Load()
	var pools []config.Pool
	if cfg != nil {
		pools = cfg.Pools
	}
	if st.alloc == nil {
		st.alloc = allocator.New(pools)
	} else {
		st.alloc.SetPools(pools)
	}
	st.gen = gen
	c.metrics.poolSize.Reset()
	for i := range pools {
		v4, v6 := allocator.Size(&pools[i])
		c.metrics.poolSize.WithLabelValues(pools[i].Name, "ipv4").Set(float64(v4))
		c.metrics.poolSize.WithLabelValues(pools[i].Name, "ipv6").Set(float64(v6))
	}
}

func (c *Controller) updateInUse(st *allocState) {
	c.metrics.poolInUse.Reset()
	for _, p := range st.alloc.Pools() {
		v4, v6 := st.alloc.InUse(p.Name)
		c.metrics.poolInUse.WithLabelValues(p.Name, "ipv4").Set(float64(v4))
		c.metrics.poolInUse.WithLabelValues(p.Name, "ipv6").Set(float64(v6))
	}
}

// released requeues the Services that failed, as an address may be free.
func (c *Controller) released(st *allocState) {
	c.metrics.allocations.WithLabelValues("released").Inc()
	for k := range st.failed {
		c.queue.Add(k)
	}
}

// process brings one Service's allocation up to date. An error means
// "retry later".
func (c *Controller) process(ctx context.Context, st *allocState, key string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	c.syncPools(st)
	defer c.updateInUse(st)
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		delete(st.failed, key)
		delete(st.invalid, key)
		if st.alloc.Release(key) {
			c.log.Info("service deleted: addresses released", "service", key)
			c.released(st)
		}
		return nil
	}
	if err != nil {
		return err
	}
	cfg := c.cfg.Load()
	current := Ingress(svc)
	if cfg == nil {
		return nil
	}
	if !Handles(svc, cfg.DefaultClass) {
		delete(st.failed, key)
		delete(st.invalid, key)
		held := st.alloc.Release(key)
		if _, ours := svc.Annotations[AnnotationAllocatedFrom]; ours {
			// It stopped being ours (type or class changed): take back
			// what we wrote.
			st.mu.Unlock()
			err := c.writeStatus(ctx, svc, nil, "")
			st.mu.Lock()
			if err != nil {
				return err
			}
			c.log.Info("service is no longer a vipspeaker LoadBalancer: addresses released", "service", key, "addresses", addrString(current))
		}
		if held {
			c.released(st)
		}
		return nil
	}
	spec := ReadService(svc)
	req := spec.Request
	req.Current = current
	if len(spec.Errors) > 0 {
		msgs := make([]string, 0, len(spec.Errors))
		for _, e := range spec.Errors {
			msgs = append(msgs, e.Error())
		}
		msg := strings.Join(msgs, "; ")
		if st.invalid[key] != msg {
			st.invalid[key] = msg
			c.recorder.Event(svc, corev1.EventTypeWarning, "InvalidAnnotation", msg)
			c.log.Warn("service has invalid annotations: its addresses are left as they are", "service", key, "error", msg)
		}
		st.alloc.Keep(req)
		return nil
	}
	delete(st.invalid, key)
	before, _ := st.alloc.Holding(key)
	if before != nil {
		// While leading, the allocator knows best: the cache may not show
		// our last status write yet.
		req.Current = before
	}
	if req.NamespaceLabels, err = c.namespaceLabels(ctx, st, cfg, svc.Namespace); err != nil {
		// Hold what it carries meanwhile, so nobody else is given it.
		st.alloc.Keep(req)
		return err
	}
	res, err := st.alloc.Assign(req)
	if err != nil {
		msg := err.Error()
		var ae *allocator.Error
		reason := allocator.ReasonInvalidInput
		if errors.As(err, &ae) {
			reason = ae.Reason
		}
		if st.failed[key] != msg {
			st.failed[key] = msg
			c.recorder.Eventf(svc, corev1.EventTypeWarning, "AllocationFailed", "%s: %s", reason, msg)
			c.metrics.allocations.WithLabelValues("failed").Inc()
			c.log.Warn("no address for service", "service", key, "reason", string(reason), "error", msg)
		}
		if before == nil {
			req.Current = current
			st.alloc.Keep(req)
		}
		return nil
	}
	delete(st.failed, key)
	if !slices.Equal(res.Addrs, current) || svc.Annotations[AnnotationAllocatedFrom] != res.Pool {
		st.mu.Unlock()
		err := c.writeStatus(ctx, svc, res.Addrs, res.Pool)
		st.mu.Lock()
		if err != nil {
			// Undo, so a retry starts from what the Service carries.
			st.alloc.Release(key)
			if before != nil {
				req.Current = before
			} else {
				req.Current = current
			}
			st.alloc.Keep(req)
			return err
		}
	}
	if !slices.Equal(res.Addrs, before) {
		c.metrics.allocations.WithLabelValues("allocated").Inc()
		if !slices.Equal(res.Addrs, current) {
			c.recorder.Eventf(svc, corev1.EventTypeNormal, "AddressAllocated", "assigned %s from pool %s", addrString(res.Addrs), res.Pool)
			c.log.Info("address allocated", "service", key, "vip", addrString(res.Addrs), "pool", res.Pool)
		}
		for _, a := range before {
			if !slices.Contains(res.Addrs, a) && st.alloc.Holders(a) == nil {
				c.released(st)
				break
			}
		}
	}
	return nil
}

func addrString(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// writeStatus sets status.loadBalancer.ingress to addrs and the
// allocated-from annotation to pool (both removed when addrs is empty). The
// status goes first: it is what the speakers announce from, so a new
// Service's address is on its way after one API write; the speakers take
// the pool from the address until the annotation follows (the same pool:
// pools do not overlap), so nothing is announced twice.
func (c *Controller) writeStatus(ctx context.Context, svc *corev1.Service, addrs []netip.Addr, pool string) error {
	vip := corev1.LoadBalancerIPModeVIP
	var ingress []corev1.LoadBalancerIngress
	for _, a := range addrs {
		ingress = append(ingress, corev1.LoadBalancerIngress{IP: a.String(), IPMode: &vip})
	}
	if !slices.Equal(Ingress(svc), addrs) {
		p, err := json.Marshal(map[string]any{"status": map[string]any{"loadBalancer": map[string]any{"ingress": ingress}}})
		if err != nil {
			return err
		}
		if _, err := c.cs.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, p, metav1.PatchOptions{FieldManager: "vipspeaker"}, "status"); err != nil {
			return fmt.Errorf("update status of service %s/%s: %w", svc.Namespace, svc.Name, err)
		}
	}
	return c.writeAllocatedFrom(ctx, svc, pool)
}

// writeAllocatedFrom sets the allocated-from annotation to pool, or removes
// it when pool is empty; nothing is written when it already is so.
func (c *Controller) writeAllocatedFrom(ctx context.Context, svc *corev1.Service, pool string) error {
	old, ok := svc.Annotations[AnnotationAllocatedFrom]
	if (pool == "" && !ok) || (pool != "" && ok && old == pool) {
		return nil
	}
	var v any = pool
	if pool == "" {
		v = nil
	}
	p, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{AnnotationAllocatedFrom: v}}})
	if err != nil {
		return err
	}
	if _, err := c.cs.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, p, metav1.PatchOptions{FieldManager: "vipspeaker"}); err != nil {
		return fmt.Errorf("annotate service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}
