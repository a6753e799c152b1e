package kube

import (
	"context"
	"fmt"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Clients are the three API groups the agent talks to. client-go's
// Clientset and its informer factory reach every group of the API and put
// their code, tens of MB of the binary, into every agent's memory; these
// and informers built from them (newInformer) hold only what is used. A
// fake Clientset satisfies the interface in tests.
type Clients interface {
	CoreV1() corev1client.CoreV1Interface
	DiscoveryV1() discoveryv1client.DiscoveryV1Interface
	CoordinationV1() coordinationv1client.CoordinationV1Interface
}

type clients struct {
	core  *corev1client.CoreV1Client
	disc  *discoveryv1client.DiscoveryV1Client
	coord *coordinationv1client.CoordinationV1Client
}

func (c *clients) CoreV1() corev1client.CoreV1Interface { return c.core }

func (c *clients) DiscoveryV1() discoveryv1client.DiscoveryV1Interface { return c.disc }

func (c *clients) CoordinationV1() coordinationv1client.CoordinationV1Interface { return c.coord }

// newClients builds the three clients on one HTTP client (one connection
// pool, one rate limiter's worth of settings from rc).
func newClients(rc *rest.Config) (Clients, error) {
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	var c clients
	if c.core, err = corev1client.NewForConfigAndClient(rc, hc); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if c.disc, err = discoveryv1client.NewForConfigAndClient(rc, hc); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if c.coord, err = coordinationv1client.NewForConfigAndClient(rc, hc); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &c, nil
}

// listWatcher is a typed client's List and Watch for one resource.
type listWatcher[L runtime.Object] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// newInformer is what client-go's generated informers do for one
// resource: lw lists and watches (with fieldSelector, if any), objects
// pass through slim before they are cached, and namespaced listers work
// (the namespace index). client is the Clients lw came from (a fake one
// says it cannot stream lists, as client-go asks).
func newInformer[L runtime.Object](client any, lw listWatcher[L], example runtime.Object, fieldSelector string) cache.SharedIndexInformer {
	tweak := func(o *metav1.ListOptions) {
		if fieldSelector != "" {
			o.FieldSelector = fieldSelector
		}
	}
	inf := cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return lw.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return lw.Watch(ctx, o)
		},
	}, client), example, cache.SharedIndexInformerOptions{
		Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
	})
	_ = inf.SetTransform(slim) // only fails once the informer runs
	return inf
}

// runInformers runs infs until ctx ends; the returned wait blocks until
// they have stopped.
func runInformers(ctx context.Context, infs ...cache.SharedIndexInformer) (wait func()) {
	var wg sync.WaitGroup
	for _, inf := range infs {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	return wg.Wait
}
