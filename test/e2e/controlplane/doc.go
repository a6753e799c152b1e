// Package controlplane tests the [control-plane] VIP on three
// "control-plane nodes" of a lab, each running a real etcd and a real
// kube-apiserver next to a vipspeaker agent in control-plane mode (no
// --services-dir, no API server for the agent), with a client calling
// https://VIP:6443/readyz every 10 ms.
package controlplane
