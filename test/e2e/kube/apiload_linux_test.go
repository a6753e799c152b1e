package kube_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/kube/nodestate"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// apiCounts is what one agent's /metrics says about its API traffic.
type apiCounts struct {
	// writes are POST, PATCH and DELETE requests: what the agent writes
	// about Services and nodes. PUT is left out: the allocator's Lease
	// renewals (every 1.3 s with --lease-duration 4s) are its only PUTs.
	writes        float64
	serviceEvents float64 // vipspeaker_kube_watch_events_total{resource="services"}
}

func (e *env) apiCounts(t testing.TB) map[string]apiCounts {
	t.Helper()
	out := map[string]apiCounts{}
	for _, n := range []string{"n1", "n2", "n3"} {
		m, err := e.Nodes[n].Metrics()
		if err != nil {
			t.Fatal(err)
		}
		var c apiCounts
		for _, method := range []string{"POST", "PATCH", "DELETE"} {
			c.writes += lab.MetricSum(m, "vipspeaker_kube_api_requests_total", map[string]string{"method": method})
		}
		c.serviceEvents = lab.MetricSum(m, "vipspeaker_kube_watch_events_total", map[string]string{"resource": "services"})
		out[n] = c
	}
	return out
}

// quiet waits until no agent's API counters move for 3 s and returns them.
func (e *env) quiet(t testing.TB) map[string]apiCounts {
	t.Helper()
	last, since := e.apiCounts(t), time.Now()
	lab.Eventually(t, 60*time.Second, 500*time.Millisecond, func() error {
		now := e.apiCounts(t)
		if !maps.Equal(now, last) {
			last, since = now, time.Now()
		}
		if time.Since(since) < 3*time.Second {
			return fmt.Errorf("API counters moved %s ago", time.Since(since).Round(time.Millisecond))
		}
		return nil
	})
	return last
}

// TestAPILoadOfOneService: one Service created, allocated, announced by
// three nodes and marked Announced costs a bounded number of API writes,
// read from the agents' own counters (vipspeaker_kube_api_requests_total,
// vipspeaker_kube_watch_events_total): the allocator writes the status,
// the allocated-from annotation, its AddressAllocated Event and the
// condition; each speaker its Announcing Event and its VIPSpeakerNode
// (once: its writes are debounced), so a node more costs two writes, not
// more per Service. Each agent sees the Service through a bounded number
// of watch events (its creation and those writes), and once all is done
// nothing more is written.
func TestAPILoadOfOneService(t *testing.T) {
	e := setup(t)
	before := e.quiet(t)
	e.createService(t, "counted")
	vip := e.waitIngress(t, "counted", 1)[0]
	e.waitRoute(t, vip, "n1", "n2", "n3")
	e.waitCondition(t, "counted", metav1.ConditionTrue, nodestate.ReasonAnnounced, vip.String())
	after := e.quiet(t)

	lease, err := e.cs.CoordinationV1().Leases(kube.DefaultNamespace).Get(context.Background(), kube.DefaultLeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leader := *lease.Spec.HolderIdentity
	total := 0.0
	for n, a := range after {
		w, ev := a.writes-before[n].writes, a.serviceEvents-before[n].serviceEvents
		total += w
		t.Logf("%s (allocator: %v): %.0f API writes, %.0f Service watch events", n, n == leader, w, ev)
		// A speaker: its Announcing Event and its VIPSpeakerNode; the
		// allocator, a speaker too: status, annotation, AddressAllocated
		// and the condition, which may pass through a False reason
		// while the nodes' reports arrive before it is True (one run
		// here: 8 writes in all).
		limit := 2.0
		if n == leader {
			limit += 6
		}
		if w > limit {
			t.Errorf("%s wrote %.0f times to the API server for one Service, want at most %.0f", n, w, limit)
		}
		// Added, status, annotation, the condition's writes.
		if ev < 1 || ev > 6 {
			t.Errorf("%s got %.0f watch events for one Service, want 1 to 6", n, ev)
		}
	}
	t.Logf("one Service: %.0f API writes in all", total)
}
