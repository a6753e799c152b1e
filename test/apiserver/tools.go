//go:build tools

// Package apiserver is a separate module that only exists to build the
// Kubernetes components the e2e tests run (kube-apiserver for the API-only
// suites; kubelet, kube-proxy, kube-controller-manager, kube-scheduler and
// kubectl for the real-node suites), so the agent's go.mod stays small.
package apiserver

import (
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-proxy/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
)
