// Package ops holds the operator-facing checks that span the whole
// repository: the Grafana dashboard in deploy/grafana against the metric
// families the code registers, the real agent binary's `vipspeaker status`
// and --metrics-textfile in a lab (FRR router, node_exporter reading the
// textfile), and the Helm chart in deploy/helm (helm lint, helm template
// equal to `kustomize build deploy/kustomize`, the rendered ConfigMap
// accepted by `vipspeaker check`, the ServiceMonitor selecting the pods).
//
// The package itself gives other tests the pinned tools: Helm and
// Kustomize (built with `go install module@version` into the cache folder
// once per machine), HelmTemplate and KustomizeBuild, so a test with an API
// server can apply what the chart renders.
//
// What it needs: nothing for the dashboard checks; the Go module proxy (or
// a warm cache) for helm and kustomize; root, network namespaces, FRR and
// Debian's prometheus-node-exporter for the lab test (see test/lab).
package ops
