package kube

import (
	"context"
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
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
	if err := reg.Register(apiRequests); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return err
		}
	}
	return nil
}
