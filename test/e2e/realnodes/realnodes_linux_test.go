// Package realnodes_test runs vipspeaker as users run it: deploy/kustomize
// applied with kubectl onto a cluster of real kubelet nodes
// (test/lab/realnodes), an httpecho Deployment with a readiness probe
// behind a LoadBalancer Service, and clients outside the cluster sending a
// steady stream of HTTP requests through the VIP. Nothing here writes a
// Node, Pod or EndpointSlice: the kubelets, the scheduler and the
// controller-manager do.
//
// TestInstallBGPRollingRestart runs in `make test`. The other scenarios run
// in `make e2e-real` (built with -tags e2ereal), one cluster for all.
package realnodes_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/realnodes"
)

// labInterface starts every vipspeaker.toml of these tests: only Services
// of vipspeaker's class, and the VIP interface (no dummy link type in this
// kernel: ifb stands in, LAB.md).
const labInterface = `
default-class = false

[interface]
name = "kube-lb0"
kind = "ifb"
`

// labTOML is the lab's vipspeaker.toml: a BGP pool (reached through the
// router) and a layer-2 pool on the nodes' segment.
const labTOML = labInterface + `
[[pools]]
name = "bgp"
addresses = ["203.0.113.0/28"]
mode = "bgp"
auto-assign = true

[[pools]]
name = "l2"
addresses = ["198.18.10.200-198.18.10.215"]
mode = "layer2"
auto-assign = false
  [pools.layer2]
  interfaces = ["eth0"]
`

// The client's stream: 50 requests per second, each on a new connection,
// 1 s timeout.
const (
	rate    = 50
	timeout = time.Second
)

// cluster starts three real nodes and installs the agent with kubectl
// apply -k, as a user does.
func cluster(t *testing.T) *realnodes.Cluster { return clusterWith(t, nil, kustomize(labTOML)) }

// kustomize installs the agent with kubectl apply -k, toml as its
// vipspeaker.toml.
func kustomize(toml string) func(context.Context, *realnodes.Cluster) (time.Duration, error) {
	return func(ctx context.Context, c *realnodes.Cluster) (time.Duration, error) {
		return c.InstallAgent(ctx, toml, realnodes.GoBGPConf())
	}
}

// clusterWith starts three real nodes, runs prep on them (labels, say;
// may be nil) and installs the agent with install. The host must be left
// as it was found, and a failed test logs the agents' Pods.
func clusterWith(t *testing.T, prep func(*realnodes.Cluster), install func(context.Context, *realnodes.Cluster) (time.Duration, error)) *realnodes.Cluster {
	t.Helper()
	return clusterOpts(t, realnodes.Options{}, prep, install)
}

// clusterOpts is clusterWith on a cluster started with opts.
func clusterOpts(t *testing.T, opts realnodes.Options, prep func(*realnodes.Cluster), install func(context.Context, *realnodes.Cluster) (time.Duration, error)) *realnodes.Cluster {
	t.Helper()
	before, err := realnodes.HostSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the cluster and the lab are gone.
	t.Cleanup(func() {
		after, err := realnodes.HostSnapshot()
		if err != nil {
			t.Error(err)
		} else if gone, added := lineDiff(before, after); len(gone)+len(added) > 0 {
			t.Errorf("the cluster did not leave the host as it found it:\nonly before: %q\nonly after: %q", gone, added)
		}
	})
	c := realnodes.Start(t, opts)
	if prep != nil {
		prep(c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	took, err := install(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("figure: install → agent Pods Ready on %d nodes: %v", len(c.Nodes), took.Round(10*time.Millisecond))
	metrics(t, map[string]float64{"install_ready_ms": ms(took)})
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.PodReport(realnodes.AgentNamespace))
		}
	})
	return c
}

// echoBGP deploys three httpecho replicas behind a BGP Service and waits
// for the first answer through the VIP from the client behind the router.
func echoBGP(t *testing.T, c *realnodes.Cluster, o realnodes.EchoOptions) string {
	t.Helper()
	ip := firstAnswer(t, c, o, c.Client, "the BGP VIP", "from behind the router")
	if err := c.WaitDeploymentReady(o.Namespace, o.Name, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	return ip
}

// firstAnswer deploys o's httpecho behind a LoadBalancer Service and waits
// for the first HTTP answer through its VIP from client, logging the time
// from create to that answer. It returns the VIP.
func firstAnswer(t *testing.T, c *realnodes.Cluster, o realnodes.EchoOptions, client *lab.Host, what, where string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	if err := c.DeployEcho(ctx, o); err != nil {
		t.Fatal(err)
	}
	ip, err := c.WaitLoadBalancerIP(o.Namespace, o.Name, time.Minute)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.PodReport(o.Namespace))
	}
	url := "http://" + ip + "/"
	var name string
	if err := lab.Poll(2*time.Minute, 100*time.Millisecond, func() error {
		var err error
		name, err = realnodes.Get(client, url, timeout)
		return err
	}); err != nil {
		t.Fatalf("no answer through %s %s: %v\n%s", url, where, err, c.PodReport(o.Namespace))
	}
	took := time.Since(start)
	t.Logf("figure: Service created → first HTTP answer through %s %s %s: %v (Pod %s)", what, ip, where, took.Round(10*time.Millisecond), name)
	metrics(t, map[string]float64{"first_answer_ms": ms(took)})
	return ip
}

// waitNextHops waits until the router's kernel routes vip/32 to want next
// hops (FRR installs the ECMP route; its BGP table lists one path per
// peer, so the kernel is where "via three nodes" shows).
func waitNextHops(t *testing.T, c *realnodes.Cluster, vip string, want int) {
	t.Helper()
	lab.Eventually(t, 2*time.Minute, 200*time.Millisecond, func() error {
		gws, err := c.Router.Gateways(vip + "/32")
		if err != nil {
			return err
		}
		if len(gws) != want {
			return fmt.Errorf("router's kernel: %s via %v, want %d next hops", vip, gws, want)
		}
		return nil
	})
}

// A user installs vipspeaker with `kubectl apply -k deploy/kustomize` (plus
// the lab's ConfigMap) on three real nodes, creates a LoadBalancer Service
// in front of a Deployment, and reaches it from behind the router; then
// `kubectl rollout restart` of the DaemonSet under a steady 50 requests/s
// loses no request (graceful restart keeps the routes at the router while
// each agent restarts). Then the split of rights as shipped: the
// allocator runs as its Deployment's Pods, a speaker Pod's token is
// refused a change to a Service, and with the allocator replica holding
// the Lease killed (kill -9), then its Pod deleted, a new Service still
// gets an address and the others keep theirs.
func TestInstallBGPRollingRestart(t *testing.T) {
	c := cluster(t)
	o := realnodes.EchoOptions{Namespace: "web", Name: "echo", Replicas: 3, Pool: "bgp"}
	vip := echoBGP(t, c, o)
	waitNextHops(t, c, vip, len(c.Nodes))

	load := realnodes.StartLoad(c.Client, "http://"+vip+"/", rate, timeout)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Some load before the restart, so a broken path shows up at once.
	lab.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		if r := load.Result(); r.OK < 2*rate {
			return fmt.Errorf("load: %v", r)
		}
		return nil
	})
	start := time.Now()
	if _, err := c.Kubectl(ctx, "rollout", "restart", "daemonset/"+realnodes.AgentDaemonSet, "-n", realnodes.AgentNamespace); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, "rollout", "status", "daemonset/"+realnodes.AgentDaemonSet, "-n", realnodes.AgentNamespace, "--timeout=4m"); err != nil {
		t.Fatalf("%v\n%s", err, c.PodReport(realnodes.AgentNamespace))
	}
	took := time.Since(start)
	// Every node announces again, and the stream runs on a little.
	waitNextHops(t, c, vip, len(c.Nodes))
	okAfter := load.Result().OK + 2*rate
	lab.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		if r := load.Result(); r.OK < okAfter {
			return fmt.Errorf("load: %v", r)
		}
		return nil
	})
	r := load.Stop()
	t.Logf("figure: rollout restart of the DaemonSet (%v) under %d req/s (BGP): %v", took.Round(10*time.Millisecond), rate, r)
	metrics(t, loadMetrics(r, map[string]float64{"rollout_ms": ms(took)}))
	if r.Failed != 0 {
		t.Fatalf("rollout restart under load: %d of %d requests failed (first: %s; last: %s)", r.Failed, r.Sent, r.FirstErr, r.LastErr)
	}
	if len(r.Backends) != o.Replicas {
		t.Errorf("answers came from %v, want all %d replicas", r.Backends, o.Replicas)
	}

	// Least privilege as shipped: the allocator runs as its own
	// Deployment's Pods, a speaker's token cannot change a Service, and
	// with the Lease holder killed, then its Pod deleted, Services still
	// get addresses.
	leastPrivilege(t, c)
	allocatorLeaseHolderGone(t, c)
}

// lineDiff returns the lines only in a and those only in b.
func lineDiff(a, b string) (onlyA, onlyB []string) {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	for l, n := range count {
		switch {
		case n > 0:
			onlyA = append(onlyA, l)
		case n < 0:
			onlyB = append(onlyB, l)
		}
	}
	return onlyA, onlyB
}
