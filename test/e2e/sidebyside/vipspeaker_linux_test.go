package sidebyside

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
)

// vipspeakerSys runs `vipspeaker run` on every node as the all-in-one
// DaemonSet would (it allocates too: no allocator Deployment), with the
// ServiceAccount's token and the manifests from deploy/kustomize plus
// deploy/kustomize-all-in-one's bindings. BGP: BFD 100 ms × 3 and graceful restart with the
// router. L2: the XDP fast path pinned in the lab's bpffs.
type vipspeakerSys struct {
	bin      string
	kcfg     string
	speakers map[string]*lab.Process
	// migrated, when set, is the ConfigMap's data to install instead of
	// the bench's configuration (vipspeaker.toml and gobgp.conf, as
	// `vipspeaker migrate` wrote them).
	migrated map[string]string
}

func newVipspeaker(t testing.TB) *vipspeakerSys {
	t.Helper()
	bin, err := lab.BuildBinary("./cmd/vipspeaker")
	if err != nil {
		t.Fatal(err)
	}
	return &vipspeakerSys{bin: bin, speakers: map[string]*lab.Process{}}
}

func (v *vipspeakerSys) Name() string { return "vipspeaker" }

func (v *vipspeakerSys) RouterNeighbor(addr string) []string {
	return []string{"neighbor " + addr + " bfd", "neighbor " + addr + " bfd profile fast"}
}

func (v *vipspeakerSys) RouterGlobal() string { return lab.FRRFastBFD }

func (v *vipspeakerSys) toml(e *env) string {
	return lab.AgentTOML{DefaultClass: "true", Pools: []lab.Pool{{Name: "bgp", Addresses: []string{bgpPool}},
		{Name: "l2", Addresses: []string{l2Pool}, Manual: true, Layer2Interfaces: []string{"eth0"}}},
		Extra: fmt.Sprintf("[layer2]\nfast-path = \"auto\"\npin-dir = %q\n\n[membership]\nsecret-file = \"secret:memberlist/key\"\n",
			filepath.Join(e.bpffs, "vipspeaker")),
	}.String()
}

// gobgp is the agents' gobgp.conf: the router with BFD and graceful
// restart; with a community, an export policy adds it to every VIP of the
// BGP pool.
func (v *vipspeakerSys) gobgp(community string) string {
	c := lab.GoBGPConf{AS: nodeAS, Neighbors: []lab.GoBGPNeighbor{{Address: routerAddr, PeerAS: routerAS,
		ConnectRetry: 1, HoldTime: 3, KeepaliveInterval: 1, IdleHoldTimeAfterReset: 1, BFD: true, GracefulRestart: true}}}
	if community != "" {
		c.Extra = lab.GoBGPPolicy{Name: "tag-vips", Default: "accept-route",
			PrefixSets: []lab.GoBGPPrefixSet{{Name: "vips", Prefix: bgpPool, MaskRange: "32..32"}},
			Statements: []lab.GoBGPStatement{{Name: "tag", PrefixSet: "vips", Disposition: "accept-route", AddCommunities: []string{community}}},
		}.String()
	}
	return c.String()
}

func (v *vipspeakerSys) Install(t testing.TB, e *env) {
	t.Helper()
	// RBAC, namespace, ServiceAccount, ConfigMap as a user applies them;
	// the DaemonSet as a dry run (no kubelet here). The agents allocate
	// themselves (run --allocate=true, the default: the measured figures
	// are those of the all-in-one install), so their ServiceAccount gets
	// the allocator's rights by deploy/kustomize-all-in-one's bindings.
	if err := e.API.ApplyDeploy(); err != nil {
		t.Fatal(err)
	}
	if err := e.API.ApplyAllInOne(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "memberlist", Namespace: kube.DefaultNamespace},
		StringData: map[string]string{"key": "side-by-side-membership-secret-0123456789"}}
	if _, err := e.cs.CoreV1().Secrets(kube.DefaultNamespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if v.migrated != nil {
		v.setConfigMap(t, e, v.migrated[config.FileName], v.migrated[config.GoBGPFileName])
	} else {
		v.setConfigMap(t, e, v.toml(e), v.gobgp(""))
	}
	var err error
	if v.kcfg, err = e.API.Kubeconfig(kubeapi.AgentToken); err != nil {
		t.Fatal(err)
	}
}

func (v *vipspeakerSys) setConfigMap(t testing.TB, e *env, toml, gobgp string) {
	t.Helper()
	if err := e.API.SetAgentConfig(toml, gobgp); err != nil {
		t.Fatal(err)
	}
}

func (v *vipspeakerSys) Start(t testing.TB, e *env) {
	t.Helper()
	for _, n := range nodeNames {
		v.StartSpeaker(t, e, n)
	}
}

func (v *vipspeakerSys) StartSpeaker(t testing.TB, e *env, n string) {
	t.Helper()
	p, err := e.Nodes[n].Start("vipspeaker", []string{v.bin, "run",
		"--kubeconfig", v.kcfg, "--node-name", n, "--run-dir", filepath.Join(e.Lab.Dir(), "run-"+n),
		"--lease-duration", "4s", "--log-level", "info"})
	if err != nil {
		t.Fatal(err)
	}
	v.speakers[n] = p
}

func (v *vipspeakerSys) Speaker(n string) *lab.Process { return v.speakers[n] }
func (v *vipspeakerSys) Controller() *lab.Process      { return nil }

func (v *vipspeakerSys) PoolAnnotations(pool string) map[string]string {
	return map[string]string{kube.AnnotationPool: pool}
}

func (v *vipspeakerSys) SetCommunity(t testing.TB, e *env, community string) {
	t.Helper()
	v.setConfigMap(t, e, v.toml(e), v.gobgp(community))
}

func (v *vipspeakerSys) KubeProxy() bool { return false }

// ready reports whether the agent on node n answers ARP (its responder
// is up), for the L2 measurements.
// The lab appends every start to the same log after a "### " line: only
// the last start counts.
func (v *vipspeakerSys) ready(n string) bool {
	log := v.speakers[n].Log()
	if i := strings.LastIndex(log, "\n### "); i >= 0 {
		log = log[i+1:]
	}
	return strings.Contains(log, "answering ARP/NDP on layer2 interface")
}
