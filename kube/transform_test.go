package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The informers' transform drops what the agent never reads and keeps
// what decide, the allocator and the layer2 membership read.
func TestSlim(t *testing.T) {
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: "x", Labels: map[string]string{"a": "b"},
			Annotations:   map[string]string{lastApplied: "{…}", AnnotationPool: "p"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}
	}
	svc := &corev1.Service{ObjectMeta: meta(), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := slim(svc); err != nil {
		t.Fatal(err)
	}
	if svc.ManagedFields != nil || svc.Annotations[lastApplied] != "" || svc.Annotations[AnnotationPool] != "p" || len(svc.Spec.Ports) != 1 {
		t.Errorf("Service after slim: %+v", svc)
	}
	yes := true
	node := &corev1.Node{ObjectMeta: meta(), Spec: corev1.NodeSpec{Unschedulable: true, PodCIDR: "10.0.0.0/24"},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Message: "kubelet is posting ready status"}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.11"}},
			Images:     []corev1.ContainerImage{{Names: []string{"big"}, SizeBytes: 1 << 30}},
		}}
	if _, err := slim(node); err != nil {
		t.Fatal(err)
	}
	if node.Status.Images != nil || node.Spec.PodCIDR != "" || node.Status.Conditions[0].Message != "" || node.ManagedFields != nil {
		t.Errorf("Node kept what the agent never reads: %+v", node)
	}
	if !NodeEligible(&corev1.Node{Status: node.Status, ObjectMeta: node.ObjectMeta}) || !node.Spec.Unschedulable ||
		node.Labels["a"] != "b" || len(node.Status.Addresses) != 1 {
		t.Errorf("Node lost what the agent reads: %+v", node)
	}
	nodeName := "n1"
	eps := &discoveryv1.EndpointSlice{ObjectMeta: meta(), Ports: []discoveryv1.EndpointPort{{}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.5"}, NodeName: &nodeName,
			Conditions: discoveryv1.EndpointConditions{Ready: &yes}, TargetRef: &corev1.ObjectReference{Name: "pod"}}}}
	if _, err := slim(eps); err != nil {
		t.Fatal(err)
	}
	if eps.Ports != nil || eps.Endpoints[0].TargetRef != nil {
		t.Errorf("EndpointSlice kept ports or target refs: %+v", eps)
	}
	if got := ServingEndpointNodes([]*discoveryv1.EndpointSlice{eps}); got["n1"] != 1 {
		t.Errorf("ready endpoint nodes after slim: %v", got)
	}
	// Other types (a DeletedFinalStateUnknown, say) pass unchanged.
	if o, err := slim("x"); o != "x" || err != nil {
		t.Errorf("slim(other) = %v, %v", o, err)
	}
}
