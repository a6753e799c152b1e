//go:build linux && democluster && e2ereal

// Built only with -tags "e2ereal democluster" (make demo-cluster; it uses
// the scenarios' helpers): the real-node lab
// left running for a person to look at, kept out of make test by the
// build, not by a skip.

package realnodes_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab/realnodes"
)

// TestDemoCluster is `make demo-cluster`: three real kubelet nodes, the
// agent installed with kubectl apply -k as users do, an httpecho
// Deployment behind a BGP Service and one behind a layer-2 Service, a
// client behind the router and one on the segment reaching them, and a
// rolling restart of the DaemonSet under load. Then it waits for Ctrl-C
// (DEMO_HOLD=0: it does not wait) and removes everything.
func TestDemoCluster(t *testing.T) {
	show := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	step := func(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }
	run := func(what string, out string, err error) {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		show("    $ %s\n%s", what, indent(out))
	}
	step("Starting three real nodes (kubelet, containerd, kube-proxy) with a control plane, an FRR router and two clients; then `kubectl apply -k deploy/kustomize`")
	cl := cluster(t)
	kubectl := func(args ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := cl.Kubectl(ctx, args...)
		run("kubectl "+strings.Join(args, " "), out, err)
	}
	show("    nodes Ready after %v", cl.Ready.Round(100*time.Millisecond))
	kubectl("get", "nodes", "-o", "wide")
	kubectl("get", "pods", "-n", realnodes.AgentNamespace, "-o", "wide")

	step("A Deployment of httpecho behind a LoadBalancer Service in the BGP pool")
	bgp := echoBGP(t, cl, realnodes.EchoOptions{Namespace: "web", Name: "echo", Replicas: 3, Pool: "bgp"})
	waitNextHops(t, cl, bgp, len(cl.Nodes))
	kubectl("get", "svc,pods", "-n", "web", "-o", "wide")
	out, err := cl.Router.Run(context.Background(), "ip", "route", "show", bgp)
	run("router: ip route show "+bgp+"   (one next hop per node, learned over BGP)", out, err)
	for range 3 {
		name, err := realnodes.Get(cl.Client, "http://"+bgp+"/", timeout)
		run("client (behind the router): curl http://"+bgp+"/", name, err)
	}

	step("One behind a layer-2 Service: its VIP on the nodes' segment, one node answers ARP for it")
	l2 := firstAnswer(t, cl, realnodes.EchoOptions{Namespace: "l2", Name: "echo", Replicas: 3, Pool: "l2"}, cl.LAN, "the layer-2 VIP", "from the segment")
	owner := layer2Owner(t, cl, l2)
	name, err := realnodes.Get(cl.LAN, "http://"+l2+"/", timeout)
	run("lan (on the segment): curl http://"+l2+"/", name, err)
	show("    the ARP reply for %s comes from %s", l2, owner.Name)

	step("kubectl rollout restart daemonset/%s under %d requests/s to the BGP VIP", realnodes.AgentDaemonSet, rate)
	r := underLoad(t, cl.Client, "http://"+bgp+"/", func() {
		kubectl("rollout", "restart", "daemonset/"+realnodes.AgentDaemonSet, "-n", realnodes.AgentNamespace)
	}, speakersReady(cl, realnodes.VIPSpeaker, bgp))
	show("    %v", r)

	ns := func(h interface{ NetnsName() string }) string { return h.NetnsName() }
	step("The cluster stays up until you press Ctrl-C. Try, as root:")
	show(`    ip netns exec %[1]s %[2]s --kubeconfig %[3]s get pods -A -o wide
    ip netns exec %[4]s curl -s http://%[5]s/
    ip netns exec %[6]s curl -s http://%[7]s/
    ip netns exec %[8]s vtysh -N %[8]s -c 'show bgp ipv4 unicast'
    logs and node folders: %[9]s`, ns(cl.APIHost), cl.Bins().Kubectl, cl.Kubeconfig, ns(cl.Client), bgp, ns(cl.LAN), l2, ns(cl.Router), cl.Dir())
	if os.Getenv("DEMO_HOLD") != "0" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		<-ctx.Done()
		step("Removing the cluster")
	}
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("      " + line + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}
