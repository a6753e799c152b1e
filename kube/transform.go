package kube

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// lastApplied is kubectl apply's copy of the whole object, often the
// largest annotation on a Service and never read here.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// slim is the informers' transform: it drops, before an object enters the
// cache, what the agent never reads, so every agent's cache of every
// Service, Node and EndpointSlice of the cluster costs less. Kept: labels,
// annotations the agent reads (all but kubectl's last-applied copy), specs
// and status of Services; a Node's labels, unschedulable, conditions and
// addresses; an EndpointSlice's endpoints with their node, addresses and
// conditions. Anything else passes unchanged.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		slimMeta(&o.ObjectMeta)
	case *corev1.Node:
		slimMeta(&o.ObjectMeta)
		o.Status.Images = nil
		o.Status.VolumesInUse = nil
		o.Status.VolumesAttached = nil
		o.Status.Capacity, o.Status.Allocatable = nil, nil
		o.Status.NodeInfo = corev1.NodeSystemInfo{}
		o.Spec.PodCIDRs, o.Spec.PodCIDR, o.Spec.ProviderID = nil, "", ""
		for i := range o.Status.Conditions {
			o.Status.Conditions[i].Message = ""
		}
	case *discoveryv1.EndpointSlice:
		slimMeta(&o.ObjectMeta)
		o.Ports = nil
		for i := range o.Endpoints {
			e := &o.Endpoints[i]
			e.TargetRef, e.Hints, e.Zone, e.DeprecatedTopology, e.Hostname = nil, nil, nil, nil, nil
		}
	case *corev1.ConfigMap:
		o.ManagedFields = nil
	case *corev1.Namespace:
		// Only the labels are read (pools' namespace-selector).
		o.ManagedFields, o.Annotations = nil, nil
	}
	return obj, nil
}

func slimMeta(m *metav1.ObjectMeta) {
	m.ManagedFields = nil
	delete(m.Annotations, lastApplied)
}
