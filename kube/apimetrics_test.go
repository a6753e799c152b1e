package kube

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Every request client-go makes is counted by method and code on the
// agent's registry (a real REST client against an HTTP server that answers
// 404, as an API server does for a missing ConfigMap).
func TestAPIRequestsCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	newMetrics(reg)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`))
	}))
	defer srv.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	before := testutil.ToFloat64(apiRequests.WithLabelValues("GET", "404"))
	for range 3 {
		if _, err := cs.CoreV1().ConfigMaps("x").Get(context.Background(), "y", metav1.GetOptions{}); err == nil {
			t.Fatal("a 404 came back as a ConfigMap")
		}
	}
	if got := testutil.ToFloat64(apiRequests.WithLabelValues("GET", "404")) - before; got != 3 {
		t.Errorf("vipspeaker_kube_api_requests_total{method=GET,code=404} rose by %v, want 3", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "vipspeaker_kube_api_requests_total"
	}
	if !found {
		t.Error("the agent's registry does not export vipspeaker_kube_api_requests_total")
	}
	// A second agent's registry in the same process exports it too.
	if err := registerAPIMetrics(prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
}
