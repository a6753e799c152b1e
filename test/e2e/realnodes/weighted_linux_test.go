package realnodes_test

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/realnodes"
)

// weightedTOML is the lab's BGP pool, weighted by ready endpoints.
const weightedTOML = labInterface + `
[[pools]]
name = "bgp"
addresses = ["203.0.113.0/28"]
mode = "bgp"
auto-assign = true
  [pools.advertise]
  weighted-by-endpoints = true
`

// weightedManifest is one externalTrafficPolicy Local Service in front of
// httpecho Pods of three Deployments, w1..w3, each pinned to its node
// (n1..n3) with replicas[i] Pods.
func weightedManifest(ns string, replicas [3]int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", ns)
	for i, r := range replicas {
		fmt.Fprintf(&b, `---
apiVersion: apps/v1
kind: Deployment
metadata: {name: w%[1]d, namespace: %[2]s}
spec:
  replicas: %[3]d
  selector: {matchLabels: {app: weighted, node: n%[1]d}}
  template:
    metadata: {labels: {app: weighted, node: n%[1]d}}
    spec:
      nodeSelector: {kubernetes.io/hostname: n%[1]d}
      terminationGracePeriodSeconds: 5
      containers:
        - name: httpecho
          image: %[4]s
          imagePullPolicy: Never
          env:
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
          ports: [{name: http, containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 1
            failureThreshold: 1
`, i+1, ns, r, realnodes.EchoImage)
	}
	fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: weighted, namespace: %s}
spec:
  type: LoadBalancer
  loadBalancerClass: %s
  externalTrafficPolicy: Local
  selector: {app: weighted}
  ports: [{name: http, port: 80, targetPort: http}]
`, ns, realnodes.LBClass)
	return b.String()
}

// routerWeights is the router's kernel route to vip: the weight of each
// node's next hop, by node name.
func routerWeights(c *realnodes.Cluster, vip string) (map[string]int, error) {
	r, ok, err := c.Router.KernelRoute(vip + "/32")
	if err != nil || !ok {
		return nil, fmt.Errorf("router: no route to %s (%v)", vip, err)
	}
	out := map[string]int{}
	for i, gw := range r.Gateways {
		for _, n := range c.Nodes {
			if gw == netip.MustParseAddr(n.Addr) && i < len(r.Weights) {
				out[n.Name] = r.Weights[i]
			}
		}
	}
	return out, nil
}

// proportional reports whether got (by node) is in the proportion of want
// within tol (relative, per node).
func proportional(got map[string]int, want map[string]int, tol float64) error {
	var gs, ws float64
	for n, w := range want {
		gs += float64(got[n])
		ws += float64(w)
	}
	if len(got) != len(want) || gs == 0 {
		return fmt.Errorf("%v, want nodes in the proportion %v", got, want)
	}
	for n, w := range want {
		share, wantShare := float64(got[n])/gs, float64(w)/ws
		if math.Abs(share-wantShare) > tol*wantShare {
			return fmt.Errorf("%v: %s has %.3f of the total, want %.3f ± %.0f %% (proportion %v)", got, n, share, wantShare, tol*100, want)
		}
	}
	return nil
}

// Weighted ECMP by ready endpoints (metallb#1): an externalTrafficPolicy
// Local Service of a weighted-by-endpoints pool, with 1, 2 and 3 ready
// Pods on n1, n2 and n3. Each node's path carries a link-bandwidth
// extended community for its own Pods; FRR installs the VIP in the
// router's kernel with next-hop weights 1:2:3, and the client's requests
// through the router (hashing on ports) reach the nodes in that
// proportion. Scaling w1 to 3 Pods moves the weights to 3:2:3.
func TestWeightedByEndpoints(t *testing.T) {
	c := clusterWith(t, nil, kustomize(weightedTOML))
	// The router spreads connections by their ports (layer-4 hash), as
	// routers in front of a Service do; the lab's default hashes on
	// addresses only, one client → one next hop.
	if err := c.Router.Sysctl("net.ipv4.fib_multipath_hash_policy", "1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.ImportEcho(); err != nil {
		t.Fatal(err)
	}
	const ns = "ucmp"
	if err := c.Apply(ctx, weightedManifest(ns, [3]int{1, 2, 3})); err != nil {
		t.Fatal(err)
	}
	vip, err := c.WaitLoadBalancerIP(ns, "weighted", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	weights := func(want map[string]int) {
		t.Helper()
		lab.Eventually(t, 2*time.Minute, 200*time.Millisecond, func() error {
			got, err := routerWeights(c, vip)
			if err != nil {
				return err
			}
			return proportional(got, want, 0.1)
		})
	}
	weights(map[string]int{"n1": 1, "n2": 2, "n3": 3})
	got, _ := routerWeights(c, vip)
	t.Logf("router's kernel route to %s: next-hop weights %v for 1, 2, 3 ready Pods", vip, got)

	// Requests through the router: each on a new connection (new source
	// port), answered by a Pod on the node the router chose.
	podNode := map[string]string{}
	on, err := c.PodsOn(ctx, ns, "weighted")
	if err != nil {
		t.Fatal(err)
	}
	for node, pods := range on {
		for _, p := range pods {
			podNode[p] = node
		}
	}
	const n = 1200
	byNode := map[string]int{}
	for range n {
		pod, err := realnodes.Get(c.Client, "http://"+vip+"/", timeout)
		if err != nil {
			t.Fatal(err)
		}
		byNode[podNode[pod]]++
	}
	t.Logf("figure: %d requests through the router to a Local Service with 1, 2, 3 ready Pods on n1, n2, n3: %v", n, byNode)
	if err := proportional(byNode, map[string]int{"n1": 1, "n2": 2, "n3": 3}, 0.2); err != nil {
		t.Errorf("requests by node: %v", err)
	}

	if _, err := c.Kubectl(ctx, "scale", "deployment/w1", "-n", ns, "--replicas=3"); err != nil {
		t.Fatal(err)
	}
	weights(map[string]int{"n1": 3, "n2": 2, "n3": 3})
	got, _ = routerWeights(c, vip)
	t.Logf("after scaling w1 to 3: next-hop weights %v", got)
}
