//go:build tools

// Package kwok is a separate module that only exists to build KWOK
// (sigs.k8s.io/kwok, Kubernetes WithOut Kubelet), the node and Pod
// simulator the fleet lab (test/e2e/fleet) runs beside the real
// kube-apiserver, kube-controller-manager and kube-scheduler, so that
// neither the agent's go.mod nor test/apiserver's carries its
// dependencies.
package kwok

import _ "sigs.k8s.io/kwok/cmd/kwok"
