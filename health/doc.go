// Package health runs the local health check that gates the control-plane
// VIP ([control-plane.health-check] in vipspeaker.toml): an HTTP(S) GET
// (kube-apiserver's /readyz with its CA and, optionally, a client
// certificate) or a TCP connect, every interval, with hysteresis — fall
// consecutive failures make it fail, rise consecutive successes make it
// pass. It starts failing. It needs nothing from the kernel but sockets and
// nothing from Kubernetes.
package health
