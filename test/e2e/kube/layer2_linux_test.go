package kube_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/kube/nodestate"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
)

// The layer2 cluster: a LAN bridge on the client, the API server, two
// nodes and a rogue station on it.
const (
	l2Client = "198.18.20.1"
	l2API    = "198.18.20.100"
	l2Rogue  = "198.18.20.50"
)

var l2Nodes = map[string]string{"n1": "198.18.20.11", "n2": "198.18.20.12"}

// No [membership] join: the speakers find each other through the Nodes'
// InternalIPs. The membership key comes from a Secret.
var l2TOML = lab.AgentTOML{DefaultClass: "false",
	Pools: []lab.Pool{{Name: "flat", Addresses: []string{"203.0.113.64/28"}, Layer2Interfaces: []string{"eth0"}}},
	Extra: "[layer2]\ngratuitous-count = 2\ngratuitous-interval = \"100ms\"\nfast-path = \"off\"\n\n" +
		"[membership]\nsecret-file = \"secret:memberlist/key\"\n",
}.String()

type l2env struct {
	e      *env
	client *lab.Host
	rogue  *lab.Host
	macs   map[string]string // node -> eth0 MAC
}

func setupLayer2(t *testing.T) *l2env {
	t.Helper()
	nstest.RequireRoot(t)
	for _, tool := range []string{"arping", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			nstest.Skip(t, "%s is not installed (Debian package arping / iputils-ping)", tool)
		}
	}
	bin := lab.Vipspeaker(t)
	// The Secret is created before any agent starts.
	c := kubeapi.NewCluster(t, kubeapi.ClusterOptions{Bridge: "client", BridgeAddrs: []string{l2Client + "/24"}, APIAddr: l2API,
		Hosts: map[string][]string{"rogue": {l2Rogue + "/24"}},
		Nodes: []string{"n1", "n2"}, NodeAddrs: func(n string) []string { return []string{l2Nodes[n] + "/24"} },
		Deploy: true, TOML: l2TOML, Namespace: ns})
	// As shipped: speakers (--allocate=false) and one allocator replica.
	e := &env{Cluster: c, bin: bin, cs: c.Client, agents: map[string]*lab.Process{}, speakersOnly: true}
	le := &l2env{e: e, client: c.Bridge, rogue: c.Hosts["rogue"], macs: map[string]string{}}
	le.client.MustRun("ip", "route", "add", "203.0.113.64/28", "dev", "br0")
	for n, h := range c.Nodes {
		le.macs[n] = strings.TrimSpace(h.MustRun("cat", "/sys/class/net/eth0/address"))
	}
	e.setSecret(t, "memberlist", map[string]string{"key": "layer2-e2e-membership-secret-0123456789"})
	e.startAllocator(t, "allocator")
	for _, n := range []string{"n1", "n2"} {
		e.startAgent(t, n)
	}
	for _, n := range []string{"n1", "n2"} {
		e.waitAgentLog(t, n, "answering ARP/NDP on layer2 interface", "has no layer2 responder yet")
	}
	return le
}

// arping asks the LAN for addr from the client and returns the MACs that
// answered.
func (le *l2env) arping(addr string) []string {
	return lab.MACs(strings.Join(le.client.ARPing("br0", addr, 3, 200*time.Millisecond), " "))
}

// owner waits until exactly one node answers for addr, and returns it.
func (le *l2env) owner(t *testing.T, addr string) string {
	t.Helper()
	nodes := []string{"n1", "n2"}
	macs := []string{le.macs["n1"], le.macs["n2"]}
	return nodes[lab.WaitOwner(t, 20*time.Second, addr, macs, le.arping)]
}

// Two agents in layer2 mode with no [membership] join: they find each other
// through the Nodes' InternalIPs (and encrypt with the key of the Secret the
// ConfigMap names), so exactly one answers ARP for the VIP. A rogue station
// claiming the VIP gives one AddressConflict Event on the Service per
// episode. kill -9 of the owner's agent: the other node answers and the
// client's neighbour table holds its MAC.
func TestKubeLayer2(t *testing.T) {
	le := setupLayer2(t)
	e := le.e
	for n, p := range e.agents {
		other := l2Nodes["n1"]
		if n == "n1" {
			other = l2Nodes["n2"]
		}
		if !strings.Contains(p.Log(), "layer2 membership joins the other nodes (from the API server)") || !strings.Contains(p.Log(), other) {
			t.Errorf("agent %s does not join %s from the Nodes:\n%s", n, other, tailLog(p.Log(), 30))
		}
		if !strings.Contains(p.Log(), "encrypted=true") {
			t.Errorf("agent %s: membership not encrypted with the Secret's key:\n%s", n, tailLog(p.Log(), 30))
		}
	}
	e.createService(t, "flat-web")
	vip := e.waitIngress(t, "flat-web", 1)[0].String()
	owner := le.owner(t, vip)
	for range 3 {
		if got := le.arping(vip); len(got) != 1 || got[0] != le.macs[owner] {
			t.Fatalf("answers for %s: %v, want only %s's %s", vip, got, owner, le.macs[owner])
		}
	}
	// In the API: the owner's VIPSpeakerNode lists the VIP as owned, the
	// Service's condition names the owner.
	dyn, err := dynamic.NewForConfig(e.API.Admin())
	if err != nil {
		t.Fatal(err)
	}
	e.waitNodeState(t, dyn, owner, func(st nodestate.Status) error {
		want := nodestate.VIP{Address: vip, Service: ns + "/flat-web", Mode: "layer2", Pool: "flat", Role: nodestate.RoleOwner}
		if !slices.Contains(st.VIPs, want) {
			return fmt.Errorf("vips %+v, want %+v among them", st.VIPs, want)
		}
		return nil
	})
	e.waitConditionExactly(t, "flat-web", metav1.ConditionTrue, nodestate.ReasonAnnounced, vip+" owned by "+owner)

	t.Run("ConflictEvent", func(t *testing.T) {
		rogueMAC := strings.TrimSpace(le.rogue.MustRun("cat", "/sys/class/net/eth0/address"))
		claim := func() {
			// ARP requests with the VIP as sender: the rogue claims it.
			_, _ = le.rogue.Run(context.Background(), "arping", "-i", "eth0", "-S", vip, "-c", "2", "-W", "0.1", "-w", "2", l2Client)
		}
		claim()
		ev := e.waitEvent(t, "flat-web", "AddressConflict", rogueMAC)
		for _, want := range []string{vip, "eth0", "node " + owner} {
			if !strings.Contains(ev.Message, want) {
				t.Errorf("AddressConflict %q does not mention %q", ev.Message, want)
			}
		}
		if ev.Type != corev1.EventTypeWarning {
			t.Errorf("AddressConflict is of type %s, want Warning", ev.Type)
		}
		// The same episode, past the responder's 10 s log interval: no
		// second Event.
		for range 3 {
			time.Sleep(4 * time.Second)
			claim()
		}
		time.Sleep(2 * time.Second)
		evs, err := e.events("flat-web", "AddressConflict")
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Count != 1 {
			t.Errorf("%d AddressConflict Events (first count %d) for one episode, want one", len(evs), evs[0].Count)
		}
		if !strings.Contains(e.agents[owner].Log(), "address conflict reported") {
			t.Errorf("the owner did not log the conflict")
		}
	})

	t.Run("OwnerKilledOtherAnswers", func(t *testing.T) {
		other := "n1"
		if owner == "n1" {
			other = "n2"
		}
		if err := e.agents[owner].Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		lab.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
			got := le.arping(vip)
			if len(got) != 1 || got[0] != le.macs[other] {
				return fmt.Errorf("answers %v, want only %s's %s", got, other, le.macs[other])
			}
			return nil
		})
		t.Logf("%s answers %v after %s's agent was killed", other, time.Since(start).Round(time.Millisecond), owner)
		// The killed agent's report still says it owns the VIP; the later
		// report wins.
		e.waitConditionExactly(t, "flat-web", metav1.ConditionTrue, nodestate.ReasonAnnounced, vip+" owned by "+other)
		_, _ = le.client.Run(context.Background(), "ip", "neigh", "flush", "dev", "br0", "to", vip)
		lab.Eventually(t, 10*time.Second, 200*time.Millisecond, func() error { return le.client.Ping(vip) })
		if out := le.client.MustRun("ip", "neigh", "show", vip, "dev", "br0"); !strings.Contains(out, le.macs[other]) {
			t.Errorf("the client's neighbour table has %q for %s, want %s's %s", out, vip, other, le.macs[other])
		}
	})
}
