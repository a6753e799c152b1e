package realnodes_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/e2e/ops"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/realnodes"
)

// helmValues is the lab's configuration as chart values: the pools of
// labTOML and the lab's gobgp.conf.
func helmValues() string {
	var b strings.Builder
	b.WriteString(`interface:
  name: kube-lb0
  kind: ifb
pools:
  - name: bgp
    addresses: ["203.0.113.0/28"]
    mode: bgp
    autoAssign: true
  - name: l2
    addresses: ["198.18.10.200-198.18.10.215"]
    mode: layer2
    autoAssign: false
    layer2:
      interfaces: ["eth0"]
gobgpConf: |
`)
	for _, l := range strings.Split(strings.TrimRight(realnodes.GoBGPConf(), "\n"), "\n") {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	return b.String()
}

// A user installs vipspeaker with the chart's own command (`helm install
// vipspeaker deploy/helm/vipspeaker --namespace vipspeaker-system
// --create-namespace -f values.yaml`, deploy/helm/vipspeaker/README.md) on
// three real nodes and reaches a Service behind the router through all
// three. (The command the README gave before, without --create-namespace
// and with the chart making the namespace, failed here: Helm records the
// release in the namespace before it creates anything.)
func TestHelmInstallBGP(t *testing.T) {
	helm, err := ops.Helm()
	if err != nil {
		t.Fatal(err)
	}
	chart, err := ops.ChartDir()
	if err != nil {
		t.Fatal(err)
	}
	c := clusterWith(t, nil, func(ctx context.Context, c *realnodes.Cluster) (time.Duration, error) {
		return c.InstallAgentHelm(ctx, helm, chart, helmValues())
	})
	o := realnodes.EchoOptions{Namespace: "web", Name: "echo", Replicas: 3, Pool: "bgp"}
	vip := echoBGP(t, c, o)
	waitNextHops(t, c, vip, len(c.Nodes))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.Kubectl(ctx, "get", "daemonset,deployment", "-n", realnodes.AgentNamespace, "-l", "app.kubernetes.io/managed-by=Helm", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"daemonset.apps/" + realnodes.AgentDaemonSet, "deployment.apps/" + realnodes.AllocatorDeployment} {
		if !strings.Contains(out, want) {
			t.Errorf("%s not installed by Helm; Helm's objects: %q", want, out)
		}
	}
	// The state in the API, with kubectl alone: the chart's CRD is
	// installed, every node reports, the Service is Announced by all.
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lab.Eventually(t, time.Minute, 500*time.Millisecond, func() error {
		cond, err := c.Kubectl(ctx, "get", "service", "-n", o.Namespace, o.Name, "-o",
			`jsonpath={.status.conditions[?(@.type=="vipspeaker.io/Announced")].reason}: {.status.conditions[?(@.type=="vipspeaker.io/Announced")].message}`)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(cond, "Announced: "+vip+" announced by ") {
			return fmt.Errorf("condition vipspeaker.io/Announced: %q", cond)
		}
		for _, n := range c.Nodes {
			if !strings.Contains(cond, n.Name) {
				return fmt.Errorf("condition vipspeaker.io/Announced does not name node %s: %q", n.Name, cond)
			}
		}
		nodes, err := c.Kubectl(ctx, "get", "vipspeakernodes", "-n", realnodes.AgentNamespace, "-o", "name")
		if err != nil {
			return err
		}
		if got := strings.Count(nodes, "vipspeakernode.vipspeaker.io/"); got != len(c.Nodes) {
			return fmt.Errorf("%d VIPSpeakerNode objects, want %d: %q", got, len(c.Nodes), nodes)
		}
		return nil
	})
	// A Node deleted takes its VIPSpeakerNode with it (the garbage
	// collector of kube-controller-manager, by the owner reference); its
	// speaker, still running, does not write it again.
	gone := c.Nodes[len(c.Nodes)-1].Name
	if _, err := c.Kubectl(ctx, "delete", "node", gone); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 2*time.Minute, time.Second, func() error {
		out, err := c.Kubectl(ctx, "get", "vipspeakernodes", "-n", realnodes.AgentNamespace, "-o", "name")
		if err != nil {
			return err
		}
		names := strings.Fields(out)
		if slices.Contains(names, "vipspeakernode.vipspeaker.io/"+gone) || len(names) != len(c.Nodes)-1 {
			return fmt.Errorf("Node %s deleted: VIPSpeakerNode objects %v, want the %d others", gone, names, len(c.Nodes)-1)
		}
		return nil
	})
}
