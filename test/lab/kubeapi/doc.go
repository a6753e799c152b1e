// Package kubeapi runs a real Kubernetes API server for lab tests: etcd
// (Debian's etcd-server) and kube-apiserver v1.37.2 (built once by
// test/apiserver/build.sh into the cache folder) inside a lab host, serving
// on a lab address so agents in other lab namespaces reach it, with RBAC on
// and static bearer tokens (an admin in system:masters, and the two
// ServiceAccount identities the deploy/kustomize manifests bind: the
// speakers', AgentToken, and the allocator's, AllocatorToken).
//
// The API server can be stopped and started again on the same etcd
// (Server.Stop, Server.Start), which is how a test takes the API away from
// the agents for a while. Server.ApplyKustomization (and ApplyDeploy, for
// deploy/kustomize) server-side-applies the resources a kustomization
// lists, as a user would; Server.ApplyAllInOne adds the bindings of
// deploy/kustomize-all-in-one (the speakers may allocate too);
// Server.ApplyManifests does the same for a rendered YAML stream (helm
// template). Server.Can asks the authorizer what a user (AgentUser,
// AllocatorUser) may do.
//
// NewCluster is the kube suites' topology: one segment (bridge br0 on the
// router, or on the host ClusterOptions.Bridge names) holding the API
// server's host "api", more hosts (a client) and the nodes; the deploy
// manifests applied with the ConfigMap's vipspeaker.toml and gobgp.conf,
// a namespace for the tests' Services, Ready Node objects (CreateNode, as
// no kubelet runs here) and the kubeconfigs of the agents and of the
// allocator. LoadBalancer builds a
// Service of vipspeaker's class; Events lists the Events of an object.
//
// What it needs: root and network namespaces (package lab), etcd on $PATH
// (or apt-get, tried once), the Go toolchain and module proxy (or a warm
// cache) for kube-apiserver. Missing tools skip the test (fail under
// CI=true, see nstest.Skip).
package kubeapi
