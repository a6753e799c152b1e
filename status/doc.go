// Package status is the agent's view of itself for people and probes: the
// report `vipspeaker status` prints (Report, gathered by Collect from what
// the parts publish), the unix socket it is served on (Serve, Fetch), its
// rendering as tables (Print), the configuration's reload history (Reloads:
// the vipspeaker_config_* metrics and the last refusal), and the HTTP
// endpoints /metrics, /healthz and /readyz (Handler, Readiness). Command is
// the `vipspeaker status` command line; with --cluster it hands over to a
// ClusterFunc (package kube/nodestate reads the API server; this package
// knows no Kubernetes).
//
// It reads the parts (routing.Table's List, bgp.Server's Peers, the
// Prometheus registry) and never changes them. It needs nothing from the
// kernel beyond a unix socket in the agent's run directory.
package status
