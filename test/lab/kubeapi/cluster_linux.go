package kubeapi

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// Cluster is the lab's Kubernetes topology: one flat segment, bridge br0
// on the bridge host (the router), holding the API server's host "api"
// and the nodes, with a real kube-apiserver on the api host. Agents and
// the router's BGP daemon are the suite's to start.
type Cluster struct {
	Lab    *lab.Lab
	Bridge *lab.Host // the host holding br0 (the router, usually)
	API    *Server
	Client kubernetes.Interface // admin
	Nodes  map[string]*lab.Host
	// Hosts are the other hosts on the segment: "api" and
	// ClusterOptions.Hosts.
	Hosts map[string]*lab.Host
	// Kubeconfig is the agents' kubeconfig (AgentToken: the speakers'
	// ServiceAccount the manifests bind; with ClusterOptions.AllInOne it
	// may allocate too).
	Kubeconfig string
	// AllocatorKubeconfig is the allocator's (AllocatorToken: the
	// ServiceAccount of the allocator Deployment), for `vipspeaker
	// allocate`.
	AllocatorKubeconfig string
}

// ClusterOptions describe a Cluster. Addresses carry their prefix length.
type ClusterOptions struct {
	// Bridge names the host holding br0 (default "router"); BridgeAddrs
	// are its addresses on br0.
	Bridge      string
	BridgeAddrs []string
	// APIAddr is the API server's address on the segment (no length, /24).
	APIAddr string
	// Nodes in order, and each one's eth0 addresses; the first address is
	// its InternalIP.
	Nodes     []string
	NodeAddrs func(node string) []string
	// NodeLabels, when set, label the Node objects (and give them a
	// Hostname address).
	NodeLabels func(node string) map[string]string
	// Hosts are more hosts on the segment (a client), created before the
	// nodes, with their addresses.
	Hosts map[string][]string
	// Deploy applies deploy/kustomize as a user does (the DaemonSet and
	// the allocator Deployment as a dry run) and sets the ConfigMap to
	// TOML and GoBGP.
	Deploy      bool
	TOML, GoBGP string
	// AllInOne (with Deploy) also applies deploy/kustomize-all-in-one's
	// bindings, for agents that allocate themselves (run
	// --allocate=true, the default) with Kubeconfig.
	AllInOne bool
	// Namespace is created for the tests' Services ("" for none).
	Namespace string
	// Kwok registers the Nodes for KWOK (CreateKwokNode: no conditions,
	// StartKwok's controller makes them Ready) instead of Ready by hand.
	Kwok bool
}

// NewCluster builds the segment, starts the API server, applies what the
// options say, creates the Node objects (Ready, or for KWOK) and the
// agents' kubeconfig. It fails the test on error.
func NewCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	l := lab.New(t)
	name := o.Bridge
	if name == "" {
		name = "router"
	}
	c := &Cluster{Lab: l, Bridge: l.MustHost(name), Nodes: map[string]*lab.Host{}, Hosts: map[string]*lab.Host{}}
	l.MustBridge(c.Bridge, "br0", o.BridgeAddrs)
	hosts := map[string][]string{"api": {o.APIAddr + "/24"}}
	maps.Copy(hosts, o.Hosts)
	for _, h := range slices.Sorted(maps.Keys(hosts)) {
		c.Hosts[h] = l.MustHost(h)
		l.MustLinkToBridge(c.Hosts[h], "eth0", hosts[h], c.Bridge, "br0")
	}
	for _, n := range o.Nodes {
		c.Nodes[n] = l.MustHost(n)
		l.MustLinkToBridge(c.Nodes[n], "eth0", o.NodeAddrs(n), c.Bridge, "br0")
	}
	c.API = Start(t, c.Hosts["api"], o.APIAddr, Options{})
	c.Client = c.API.Client()
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if o.Deploy {
		check(c.API.ApplyDeploy())
		check(c.API.SetAgentConfig(o.TOML, o.GoBGP))
		if o.AllInOne {
			check(c.API.ApplyAllInOne())
		}
	}
	if o.Namespace != "" {
		check(c.API.CreateNamespace(o.Namespace))
	}
	for _, n := range o.Nodes {
		if o.Kwok {
			check(c.API.CreateKwokNode(n, strings.SplitN(o.NodeAddrs(n)[0], "/", 2)[0]))
			continue
		}
		var labels map[string]string
		if o.NodeLabels != nil {
			labels = o.NodeLabels(n)
		}
		check(c.API.CreateNode(n, strings.SplitN(o.NodeAddrs(n)[0], "/", 2)[0], labels))
	}
	var err error
	c.Kubeconfig, err = c.API.Kubeconfig(AgentToken)
	check(err)
	c.AllocatorKubeconfig, err = c.API.Kubeconfig(AllocatorToken)
	check(err)
	return c
}
