package kube

import (
	"context"
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/cache"
	clientmetrics "k8s.io/client-go/tools/metrics"
)

// apiRequests counts the agent's requests to the API server, by method and
// response code, as client-go reports them (every request of every client
// in the process: informers' lists and watches, status and Event writes,
// the Lease). One counter for the process, since client-go takes one
// adapter; each registry (one per agent) exports it.
var (
	apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vipspeaker_kube_api_requests_total",
		Help: "Requests to the Kubernetes API server by HTTP method and response code (code <error> when none came back), from client-go.",
	}, []string{"method", "code"})
	apiOnce sync.Once
)

type requestResult struct{}

func (requestResult) Increment(_ context.Context, code, method, _ string) {
	apiRequests.WithLabelValues(method, code).Inc()
}

// registerAPIMetrics hooks client-go's request results into apiRequests
// (once per process) and exports it on reg.
func registerAPIMetrics(reg prometheus.Registerer) error {
	apiOnce.Do(func() {
		clientmetrics.Register(clientmetrics.RegisterOpts{RequestResult: requestResult{}})
	})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{apiRequests, watchEvents} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// watchEvents counts the objects the agent's informers deliver, by
// resource: the initial list's objects and every watch event after it.
var watchEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "vipspeaker_kube_watch_events_total",
	Help: "Objects delivered by the agent's informers (the initial list's and every watch event after it: added, updated, deleted), by resource.",
}, []string{"resource"})

// counted wraps h so that every event it gets counts in watchEvents under
// resource.
func counted(resource string, h cache.ResourceEventHandlerFuncs) cache.ResourceEventHandler {
	n := watchEvents.WithLabelValues(resource)
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			n.Inc()
			if h.AddFunc != nil {
				h.AddFunc(o)
			}
		},
		UpdateFunc: func(o, cur any) {
			n.Inc()
			if h.UpdateFunc != nil {
				h.UpdateFunc(o, cur)
			}
		},
		DeleteFunc: func(o any) {
			n.Inc()
			if h.DeleteFunc != nil {
				h.DeleteFunc(o)
			}
		},
	}
}
