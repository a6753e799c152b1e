package nodestate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vipspeaker/vipspeaker/config"
)

// annotations the cluster view reads (package kube's names; kube imports
// this package).
const (
	annotationAllocatedFrom = "vipspeaker.io/allocated-from"
	annotationMode          = "vipspeaker.io/mode"
)

// ClusterReport is what `vipspeaker status --cluster` shows; -o json
// prints it. Field names are part of the user contract.
type ClusterReport struct {
	Services []ServiceState `json:"services"`
	Nodes    []NodeState    `json:"nodes"`
}

// ServiceState is one Service vipspeaker handles.
type ServiceState struct {
	Service   string   `json:"service"`
	Addresses []string `json:"addresses"`
	Pool      string   `json:"pool,omitempty"`
	Mode      string   `json:"mode,omitempty"`
	// Announced, Reason and Message are the vipspeaker.io/Announced
	// condition ("Unknown" before the allocator set it).
	Announced string   `json:"announced"`
	Reason    string   `json:"reason,omitempty"`
	Message   string   `json:"message,omitempty"`
	Nodes     []Holder `json:"nodes"`
}

// NodeState is one VIPSpeakerNode.
type NodeState struct {
	Node   string `json:"node"`
	Status Status `json:"status"`
}

// Cluster reads the VIPSpeakerNode objects in namespace and the Services
// that carry vipspeaker's condition or allocated-from annotation.
func Cluster(ctx context.Context, cs CoreClient, dyn dynamic.Interface, namespace string) (ClusterReport, error) {
	r := ClusterReport{Services: []ServiceState{}, Nodes: []NodeState{}}
	l, err := dyn.Resource(GVR).Namespace(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return r, fmt.Errorf("list %s in %s: %w", Resource, namespace, err)
	}
	var objs []Object
	for i := range l.Items {
		o, err := FromUnstructured(&l.Items[i])
		if err != nil {
			return r, err
		}
		objs = append(objs, o)
	}
	ix := NewIndex(objs)
	for _, o := range ix.Objects() {
		r.Nodes = append(r.Nodes, NodeState{Node: o.Node, Status: o.Status})
	}
	svcs, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return r, fmt.Errorf("list services: %w", err)
	}
	modes := poolModes(ctx, cs, namespace)
	for i := range svcs.Items {
		if s, ok := serviceState(&svcs.Items[i], ix); ok {
			if s.Mode == "" {
				s.Mode = modes[s.Pool]
			}
			r.Services = append(r.Services, s)
		}
	}
	slices.SortFunc(r.Services, func(a, b ServiceState) int { return strings.Compare(a.Service, b.Service) })
	return r, nil
}

// poolModes are the pools' modes from the ConfigMap vipspeaker-config,
// for Services no node announces (nil when it cannot be read).
func poolModes(ctx context.Context, cs CoreClient, namespace string) map[string]string {
	cm, err := cs.CoreV1().ConfigMaps(namespace).Get(ctx, "vipspeaker-config", metav1.GetOptions{})
	if err != nil {
		return nil
	}
	cfg, errs := config.Parse(config.FileName, []byte(cm.Data[config.FileName]))
	if len(errs) > 0 {
		return nil
	}
	out := map[string]string{}
	for _, p := range cfg.Pools {
		out[p.Name] = string(p.Mode)
	}
	return out
}

func serviceState(svc *corev1.Service, ix *Index) (ServiceState, bool) {
	cond := apimeta.FindStatusCondition(svc.Status.Conditions, ConditionType)
	pool, ours := svc.Annotations[annotationAllocatedFrom]
	if cond == nil && !ours {
		return ServiceState{}, false
	}
	s := ServiceState{Service: svc.Namespace + "/" + svc.Name, Addresses: []string{}, Pool: pool,
		Mode: svc.Annotations[annotationMode], Announced: "Unknown", Nodes: []Holder{}}
	if cond != nil {
		s.Announced, s.Reason, s.Message = string(cond.Status), cond.Reason, cond.Message
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IP == "" {
			continue
		}
		s.Addresses = append(s.Addresses, in.IP)
		for _, h := range ix.Holders(in.IP) {
			if !slices.Contains(s.Nodes, h) {
				s.Nodes = append(s.Nodes, h)
			}
		}
		for _, o := range ix.Objects() {
			for _, v := range o.Status.VIPs {
				if v.Address == in.IP && s.Mode == "" {
					s.Mode = v.Mode
				}
			}
		}
	}
	return s, true
}

// PrintCluster writes the report as two tables.
func PrintCluster(w io.Writer, r ClusterReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	p("Services (%d)\n", len(r.Services))
	p("SERVICE\tADDRESSES\tPOOL\tMODE\tANNOUNCED\tREASON\tNODES\n")
	for _, s := range r.Services {
		var nodes []string
		for _, h := range s.Nodes {
			n := h.Node
			if h.Role == RoleOwner {
				n += " (owner)"
			}
			nodes = append(nodes, n)
		}
		p("%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Service, dash(strings.Join(s.Addresses, ",")), dash(s.Pool), dash(s.Mode),
			s.Announced, dash(s.Reason), dash(strings.Join(nodes, ",")))
	}
	p("\nNodes (%d)\n", len(r.Nodes))
	p("NODE\tPEER\tAS\tSTATE\tSINCE\tVIPS\tPOOLS\tUPDATED\n")
	for _, n := range r.Nodes {
		st := n.Status
		vips, pools, upd := fmt.Sprint(st.VIPCount), dash(strings.Join(st.Pools, ",")), stamp(st.Updated)
		if len(st.Sessions) == 0 {
			p("%s\t-\t-\t-\t-\t%s\t%s\t%s\n", n.Node, vips, pools, upd)
		}
		for i, s := range st.Sessions {
			node := n.Node
			if i > 0 {
				node, vips, pools, upd = "", "", "", ""
			}
			p("%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", node, s.Peer, s.PeerAS, s.State, stamp(s.Since), vips, pools, upd)
		}
	}
	return tw.Flush()
}

func stamp(t metav1.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// StatusCluster is `vipspeaker status --cluster`: the report read with
// kubeconfig (empty: the in-cluster config, then $KUBECONFIG and
// ~/.kube/config), written to w as tables or, with output "json", as
// JSON.
func StatusCluster(ctx context.Context, kubeconfig, namespace, output string, w io.Writer) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	core, err := corev1client.NewForConfig(rc)
	if err != nil {
		return err
	}
	cs := coreOnly{core}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	r, err := Cluster(ctx, cs, dyn, namespace)
	if err != nil {
		return err
	}
	if output == "json" {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(r)
	}
	return PrintCluster(w, r)
}
