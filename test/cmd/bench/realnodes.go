package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vipspeaker/vipspeaker/test/bench/report"
)

// realnodes: the real-node scenarios of test/e2e/realnodes (built with
// -tags e2ereal) for vipspeaker (TestE2EReal: deploy/kustomize applied
// with kubectl) and for MetalLB v0.15.2 (TestE2ERealMetalLB: its
// metallb-native.yaml applied with kubectl, images built from the module
// proxy by test/metallb), one after the other in this run, each on a
// fresh cluster of three kubelet nodes with the same FRR router, the same
// pools and the same clients. Every row is vipspeaker's figure with
// MetalLB's as the baseline (ratio = vipspeaker / MetalLB); the scenarios
// log their numbers as "metrics: key=value" lines.
const (
	realnodesPkg     = "./test/e2e/realnodes"
	realnodesTimeout = 75 * time.Minute
	// The clients' stream (test/e2e/realnodes: rate, timeout).
	realnodesLoad = "50 req/s, each on a new connection with a 1 s timeout"
)

// failLines is how many of a failed test's last output lines the details
// keep.
const failLines = 15

// realnodesTest is what the bench knows of a test it runs: the system it
// installs, and the prefix of its subtests' scenario names.
type realnodesTest struct{ sys, prefix string }

// realnodesTests are the tests the section runs: the scenarios, and the
// dual-stack cluster (its subtests "bgp", "layer2" become the scenarios
// "dual-stack-bgp", "dual-stack-layer2").
var realnodesTests = map[string]realnodesTest{
	"TestE2EReal":          {"vipspeaker", ""},
	"TestE2ERealMetalLB":   {"metallb", ""},
	"TestDualStack":        {"vipspeaker", "dual-stack-"},
	"TestDualStackMetalLB": {"metallb", "dual-stack-"},
}

func benchRealNodes(r *report.Report) error {
	ctx, cancel := context.WithTimeout(context.Background(), realnodesTimeout+time.Minute)
	defer cancel()
	args := []string{"test", "-tags", "e2ereal", "-json", "-count", "1", "-timeout", realnodesTimeout.String(),
		"-run", "^(" + strings.Join(slices.Sorted(maps.Keys(realnodesTests)), "|") + ")$", realnodesPkg}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	r.Printf("`go %s` (%.0f s):", strings.Join(args, " "), time.Since(start).Seconds())
	r.Printf("")
	res, details := parseScenarios(out)
	r.Printf("```")
	for _, l := range details {
		r.Printf("%s", l)
	}
	if err != nil {
		r.Printf("go test: %v %s", err, strings.TrimSpace(stderr.String()))
	}
	r.Printf("```")
	r.Printf("")
	realnodesFigures(r, res)
	for name, rt := range realnodesTests {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(res)), func(k string) bool { return strings.HasPrefix(k, rt.sys+"/"+rt.prefix) }) {
			return fmt.Errorf("%s: no figures from %s (go test: %v)", realnodesPkg, name, err)
		}
	}
	return nil
}

// parseScenarios reads `go test -json` output: every "metrics:" line of a
// test of realnodesTests becomes the metrics of "<system>/<prefix><subtest>"
// (the test's own lines: "<system>/<prefix>install"); the details are the "figure:"
// lines, each subtest's result, and the last lines a failed test wrote.
func parseScenarios(out []byte) (benchResults, []string) {
	res := benchResults{}
	var details []string
	logs := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e struct{ Action, Test, Output string }
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Test == "" {
			continue
		}
		top, sub, _ := strings.Cut(e.Test, "/")
		rt, ok := realnodesTests[top]
		if !ok {
			continue
		}
		if sub == "" {
			sub = "install"
		}
		key := rt.sys + "/" + rt.prefix + sub
		switch e.Action {
		case "output":
			logs[e.Test] = append(logs[e.Test], strings.TrimRight(e.Output, "\n"))
			if _, m, ok := strings.Cut(e.Output, "metrics: "); ok {
				for _, kv := range strings.Fields(m) {
					k, v, _ := strings.Cut(kv, "=")
					if f, err := strconv.ParseFloat(v, 64); err == nil {
						if res[key] == nil {
							res[key] = map[string]float64{}
						}
						res[key][k] = f
					}
				}
			}
			if _, f, ok := strings.Cut(e.Output, "figure: "); ok {
				details = append(details, fmt.Sprintf("%s: %s", key, strings.TrimSpace(f)))
			}
		case "pass", "fail", "skip":
			details = append(details, fmt.Sprintf("%s %s", strings.ToUpper(e.Action), e.Test))
			if l := logs[e.Test]; e.Action == "fail" {
				details = append(details, l[max(0, len(l)-failLines):]...)
			}
		}
	}
	return res, details
}

// realnodesFigures adds the rows: for each scenario, what the clients saw
// (failed requests, the longest time between two answers) and the
// scenario's own time.
func realnodesFigures(r *report.Report, res benchResults) {
	vs := func(scenario string, metallbScenario ...string) sideBySide {
		theirs := scenario
		if len(metallbScenario) > 0 {
			theirs = metallbScenario[0]
		}
		return sideBySide{r: r, res: res, ours: "vipspeaker/" + scenario, theirs: "metallb/" + theirs}
	}
	bgpLoad := "BGP VIP of 3 httpecho replicas, client behind the router at " + realnodesLoad
	vs("install").info("install as each project documents it (vipspeaker: kubectl apply -k deploy/kustomize; MetalLB: kubectl apply -f metallb-native.yaml) → speaker DaemonSet and allocator/controller Deployment Ready on 3 nodes", "s", "install_ready_ms", 1e-3)
	vs("bgp-create").value("BGP: Deployment (3 httpecho replicas) and LoadBalancer Service applied → first HTTP answer through the VIP from behind the router", "ms", "first_answer_ms")
	vs("bgp-rollout-restart").count("kubectl rollout restart of the speaker DaemonSet, "+bgpLoad+": failed requests", "failed", true)
	vs("bgp-rollout-restart").info("kubectl rollout restart of the speaker DaemonSet, "+bgpLoad+": longest time between two answers", "ms", "gap_ms", 1)
	vs("allocator-lease-holder-killed", "controller-killed").value("the Pod that assigns addresses killed with kill -9 of its process (vipspeaker: the allocator replica holding the Lease, of 2; MetalLB: its controller, 1 replica as shipped) → a LoadBalancer Service created next has an address", "ms", "killed_new_service_address_ms")
	vs("speaker-pod-deleted").count("kubectl delete of the speaker Pod on n1, "+bgpLoad+": failed requests", "failed", true)
	vs("speaker-pod-deleted").info("kubectl delete of the speaker Pod on n1, "+bgpLoad+": longest time between two answers", "ms", "gap_ms", 1)
	vs("layer2-create").value("layer 2: Deployment (3 httpecho replicas) and LoadBalancer Service in the L2 pool applied → first HTTP answer through the VIP from the nodes' segment", "ms", "first_answer_ms")
	vs("layer2-create").count("layer 2: MACs answering 20+ ARP requests for the VIP from the segment (1: only the owner)", "arp_answering_macs", false)
	l2Load := "layer-2 VIP of 3 httpecho replicas, client on the segment at " + realnodesLoad
	vs("layer2-rollout-restart").count("kubectl rollout restart of the speaker DaemonSet, "+l2Load+": failed requests", "failed", true)
	vs("layer2-rollout-restart").info("kubectl rollout restart of the speaker DaemonSet, "+l2Load+": longest time between two answers", "ms", "gap_ms", 1)
	vs("layer2-owner-pod-deleted").count("kubectl delete of the speaker Pod on the node answering ARP for the VIP, "+l2Load+": failed requests", "failed", true)
	vs("layer2-owner-pod-deleted").info("kubectl delete of the speaker Pod on the node answering ARP for the VIP, "+l2Load+": longest time between two answers", "ms", "gap_ms", 1)
	vs("drain").count("kubectl drain n3 (evicts its httpecho Pod), "+bgpLoad+": failed requests", "failed", true)
	vs("drain").info("kubectl drain n3, "+bgpLoad+": longest time between two answers", "ms", "gap_ms", 1)
	vs("node-frozen").count("node n2 frozen (kubelet, containerd, speaker, Pods: SIGSTOP), "+bgpLoad+": failed requests from the freeze until n2 is NotReady (the node-lifecycle controller takes its Pod out of the endpoints), the router no longer routes via n2, and 2 s more of answers", "failed", false)
	vs("node-frozen").info("node n2 frozen, "+bgpLoad+": longest time between two answers (BGP hold time 9 s on both; the requests the router sends via n2, or a node's kube-proxy to n2's Pod, fail while the others answer, so the failed requests above are the measure)", "ms", "gap_ms", 1)
	vs("etp-local-moves").count("externalTrafficPolicy Local, 1 replica: its node cordoned and the Pod deleted, client behind the router at "+realnodesLoad+": failed requests", "failed", false)
	vs("etp-local-moves").value("externalTrafficPolicy Local, 1 replica moved to another node → the router routes the VIP only via the new node", "ms", "route_followed_ms")
	vs("etp-local-moves").info("externalTrafficPolicy Local, 1 replica moved: longest time between two answers", "ms", "gap_ms", 1)

	// Dual-stack nodes (TestDualStack, TestDualStackMetalLB): MetalLB's
	// native speaker refuses IPv6 prefixes, so the BGP rows have no
	// baseline but say why.
	noBGP6 := "MetalLB v0.15.2: none (its native BGP speaker refuses IPv6 prefixes; its FRR mode needs an FRR container this lab does not build)"
	for _, f := range [][2]string{{"IPv4", "first_answer_v4_ms"}, {"IPv6", "first_answer_v6_ms"}} {
		fam, metric := f[0], f[1]
		r.Add(report.Figure{Name: "dual-stack nodes, BGP: Deployment (3 httpecho replicas) and a RequireDualStack LoadBalancer Service applied → first HTTP answer through its " + fam + " VIP from behind the router (IPv6 over the IPv4 sessions)",
			Unit: "ms", Value: res.get("vipspeaker/dual-stack-bgp", metric), Baseline: &report.Baseline{Name: noBGP6}})
		vs("dual-stack-layer2").value("dual-stack nodes, layer 2: Deployment (3 httpecho replicas) and a RequireDualStack LoadBalancer Service in the L2 pool applied → first HTTP answer through its "+fam+" VIP from the segment", "ms", metric)
	}
	vs("dual-stack-layer2").count("dual-stack nodes, layer 2: MACs answering ndisc6's Neighbor Solicitations for the IPv6 VIP from the segment client's global address, 3 tries of 0.5 s (1: only the owner; 0: none answered)", "ndp_answering_macs", false)
}

// info is a figure with MetalLB's beside it and the ratio, held to no
// target (a time that does not depend on the load balancer's speed alone,
// or a gap of a few tens of ms when nothing failed); scale converts the
// metric to unit.
func (s sideBySide) info(name, unit, metric string, scale float64) {
	get := func(bench string) *float64 {
		if v := s.res.get(bench, metric); v != nil {
			return report.F(*v * scale)
		}
		return nil
	}
	s.r.Add(report.Figure{Name: name, Unit: unit, Value: get(s.ours),
		Baseline: &report.Baseline{Name: "MetalLB v0.15.2", Value: get(s.theirs)}})
}
