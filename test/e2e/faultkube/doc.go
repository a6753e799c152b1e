// Package faultkube is the Kubernetes half of the fault suite (issue 9):
// each test builds its own lab — a real kube-apiserver and etcd
// (test/lab/kubeapi) on a lab address, two node namespaces running the real
// `vipspeaker run` with a kubeconfig for the agent's ServiceAccount (RBAC
// from deploy/kustomize, all in one: the agents allocate themselves, with
// deploy/kustomize-all-in-one's bindings), FRR as the router, and a client behind the
// router — then breaks something and asserts on what users see: the VIP
// routes in the router's kernel and BGP table, pings from the client,
// Service status and Events, and the agents' /metrics.
//
//   - TestAPIServerAway30s: the API server stopped for 30 s and started
//     again on the same etcd.
//   - TestConfigMapGarbageThenRepaired: vipspeaker.toml, then gobgp.conf,
//     of the ConfigMap replaced by invalid TOML, then repaired.
//   - TestThousandServicesBurst: 1,000 Services created and deleted at once,
//     the agents' memory compared before and after.
//
// What it needs: root, network namespaces, FRR, etcd and the cached
// kube-apiserver (make test-tools); see test/lab and test/lab/kubeapi.
package faultkube
