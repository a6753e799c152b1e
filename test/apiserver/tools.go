//go:build tools

// Package apiserver is a separate module that only exists to build
// kube-apiserver for the e2e tests, so the agent's go.mod stays small.
package apiserver

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"
