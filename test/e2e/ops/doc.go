// Package ops holds the operator-facing checks that span the whole
// repository: the Grafana dashboard in deploy/grafana against the metric
// families the code registers, the real agent binary's `vipspeaker status`
// in a lab namespace, and the Helm chart in deploy/helm (helm lint and
// helm template with a pinned helm built by `go run`).
//
// What it needs: nothing for the dashboard checks; root and network
// namespaces for the lab test (see test/lab); the Go module proxy for the
// Helm checks, which are skipped with -short.
package ops
