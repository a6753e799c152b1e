package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/vipspeaker/vipspeaker/kube/nodestate"
	"github.com/vipspeaker/vipspeaker/routing"
)

// condDelay is how long a Service waits before its condition is computed:
// the speakers' objects change within a second or two of each other, and
// one write per Service should say what they all say.
const condDelay = 2 * time.Second

// conditions is the allocator's side of the VIPSpeakerNode objects: it
// sets each handled Service's vipspeaker.io/Announced condition from them.
type conditions struct {
	queue workqueue.TypedDelayingInterface[string]
	mu    sync.Mutex
	store cache.Store // nil while not leading
	ix    *nodestate.Index
	dirty bool
}

func (c *Controller) condAdd(key string) {
	if c.cond.queue != nil {
		c.cond.queue.AddAfter(key, condDelay)
	}
}

// runConditions follows the VIPSpeakerNode objects and writes the Service
// conditions while ctx (the allocator's leadership) lasts.
func (c *Controller) runConditions(ctx context.Context) {
	if c.dyn == nil || c.cond.queue == nil {
		return
	}
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.dyn, 0, c.opts.Namespace, nil)
	inf := f.ForResource(nodestate.GVR).Informer()
	changed := func(old, cur any) {
		c.cond.mu.Lock()
		c.cond.dirty = true
		c.cond.mu.Unlock()
		keys := affected(toObject(old), toObject(cur))
		if keys == nil {
			svcs, _ := c.services.List(everything)
			for _, s := range svcs {
				keys = append(keys, ServiceKey(s))
			}
		}
		for _, k := range keys {
			c.condAdd(k)
		}
	}
	if _, err := inf.AddEventHandler(counted("vipspeakernodes", cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { changed(nil, o) },
		UpdateFunc: changed,
		DeleteFunc: func(o any) { changed(o, nil) },
	})); err != nil {
		c.log.Error("watch "+nodestate.Kind, "error", err)
		return
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return
	}
	c.cond.mu.Lock()
	c.cond.store, c.cond.dirty = inf.GetStore(), true
	c.cond.mu.Unlock()
	defer func() {
		c.cond.mu.Lock()
		if c.cond.store == inf.GetStore() { // not the next term's
			c.cond.store = nil
		}
		c.cond.mu.Unlock()
	}()
	svcs, _ := c.services.List(everything)
	for _, s := range svcs {
		c.condAdd(ServiceKey(s))
	}
	stop := context.AfterFunc(ctx, func() { c.cond.queue.Add("") })
	defer stop()
	for {
		key, quit := c.cond.queue.Get()
		if quit {
			return
		}
		c.cond.queue.Done(key)
		if ctx.Err() != nil {
			if key != "" {
				c.cond.queue.Add(key) // for the next term
			}
			return
		}
		if key == "" {
			continue
		}
		if err := c.writeCondition(ctx, key); err != nil {
			c.log.Warn("service condition not written; retrying", "service", key, "error", err)
			c.cond.queue.AddAfter(key, 5*time.Second)
		}
	}
}

// index is the objects' index, rebuilt after a change.
func (c *Controller) index() *nodestate.Index {
	c.cond.mu.Lock()
	defer c.cond.mu.Unlock()
	if c.cond.store == nil {
		return nil
	}
	if c.cond.dirty || c.cond.ix == nil {
		var objs []nodestate.Object
		for _, o := range c.cond.store.List() {
			if x := toObject(o); x != nil {
				objs = append(objs, *x)
			}
		}
		c.cond.ix, c.cond.dirty = nodestate.NewIndex(objs), false
	}
	return c.cond.ix
}

func toObject(o any) *nodestate.Object {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	x, err := nodestate.FromUnstructured(u)
	if err != nil {
		return nil
	}
	return &x
}

// affected lists the Services whose VIPs changed between two versions of
// a node's object; nil means every Service (the node came or went, or its
// pools or sessions changed, which may change why a Service is not
// announced).
func affected(old, cur *nodestate.Object) []string {
	if old == nil || cur == nil || !slices.Equal(old.Status.Pools, cur.Status.Pools) ||
		!slices.EqualFunc(old.Status.Sessions, cur.Status.Sessions, func(a, b nodestate.Session) bool {
			return a.Peer == b.Peer && a.Established() == b.Established()
		}) {
		return nil
	}
	out := []string{}
	add := func(a, b []nodestate.VIP) {
		for _, v := range a {
			if !slices.Contains(b, v) {
				out = append(out, strings.Split(v.Service, ",")...)
			}
		}
	}
	add(old.Status.VIPs, cur.Status.VIPs)
	add(cur.Status.VIPs, old.Status.VIPs)
	return out
}

// writeCondition computes one Service's condition and writes it when it
// differs from what the Service carries.
func (c *Controller) writeCondition(ctx context.Context, key string) error {
	ix := c.index()
	cfg := c.cfg.Load()
	if ix == nil || cfg == nil {
		return nil
	}
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	have := apimeta.FindStatusCondition(svc.Status.Conditions, nodestate.ConditionType)
	if !Handles(svc, cfg.DefaultClass) {
		if have == nil {
			return nil
		}
		return c.patchCondition(ctx, svc, map[string]any{"type": nodestate.ConditionType, "$patch": "delete"})
	}
	addrs := Ingress(svc)
	spec := ReadService(svc)
	in := nodestate.Service{Mode: string(spec.Mode), Pool: svc.Annotations[AnnotationAllocatedFrom], Local: spec.Local,
		ReadyEndpoints: func() (int, error) { return c.countReadyEndpoints(ctx, svc) }}
	for _, a := range addrs {
		in.Addrs = append(in.Addrs, a.String())
	}
	if in.Pool == "" && len(addrs) > 0 {
		if p := cfg.PoolOf(addrs[0]); p != nil {
			in.Pool = p.Name
		}
	}
	if p := cfg.Pool(in.Pool); in.Mode == "" && p != nil {
		in.Mode = string(p.Mode)
	}
	if in.Mode == "" {
		in.Mode = string(routing.ModeBGP)
	}
	want, ok := ix.Condition(in)
	if !ok {
		return nil
	}
	if have != nil && have.Status == want.Status && have.Reason == want.Reason && have.Message == want.Message {
		return nil
	}
	want.LastTransitionTime = metav1.NewTime(time.Now().Truncate(time.Second))
	if have != nil && have.Status == want.Status {
		want.LastTransitionTime = have.LastTransitionTime
	}
	c.log.Debug("service condition", "service", key, "status", want.Status, "reason", want.Reason, "message", want.Message)
	return c.patchCondition(ctx, svc, want)
}

// patchCondition changes the condition alone (a strategic merge patch
// keyed by type keeps the other controllers' conditions).
func (c *Controller) patchCondition(ctx context.Context, svc *corev1.Service, cond any) error {
	p, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []any{cond}}})
	if err != nil {
		return err
	}
	if _, err := c.cs.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.StrategicMergePatchType, p,
		metav1.PatchOptions{FieldManager: "vipspeaker"}, "status"); err != nil {
		return fmt.Errorf("condition of service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

// countReadyEndpoints lists the Service's EndpointSlices (asked only when
// no node announces a Local Service; the allocator watches none) and counts
// the endpoints that serve it, as the speakers do (ServingEndpointNodes).
func (c *Controller) countReadyEndpoints(ctx context.Context, svc *corev1.Service) (int, error) {
	l, err := c.cs.DiscoveryV1().EndpointSlices(svc.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name})
	if err != nil {
		return 0, err
	}
	ss := make([]*discoveryv1.EndpointSlice, len(l.Items))
	for i := range l.Items {
		ss[i] = &l.Items[i]
	}
	n := 0
	for _, k := range ServingEndpointNodes(ss) {
		n += k
	}
	return n, nil
}
