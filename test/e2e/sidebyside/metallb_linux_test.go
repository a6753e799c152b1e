package sidebyside

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
	"github.com/vipspeaker/vipspeaker/test/lab/metallb"
)

// MetalLB as the lab runs it: the release test/metallb pins, in its own
// namespace, its memberlist secret under the names its manifests use
// (config/controllers/speaker.yaml mounts Secret "memberlist" and the
// speaker reads the key "secretkey" from the mounted folder).
const (
	metallbVersion   = metallb.Version
	metallbNS        = "metallb-system"
	metallbSecret    = "memberlist"
	metallbSecretKey = "secretkey"
	metallbMLPort    = "7946"
	metallbMetrics   = "7472"
	metallbLabels    = "app=metallb,component=speaker"
)

// The MetalLB objects the lab writes (the versions v0.15.2 stores).
var (
	crdGVR     = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	poolGVR    = schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: "ipaddresspools"}
	peerGVR    = schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta2", Resource: "bgppeers"}
	bgpAdvGVR  = schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: "bgpadvertisements"}
	l2AdvGVR   = schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: "l2advertisements"}
	metallbApp = map[string]string{"app": "metallb", "component": "speaker"}
)

// metallbSys runs MetalLB v0.15.2 in native BGP mode: the controller on
// the API server's host (a Deployment somewhere in the cluster), a speaker
// on every node with memberlist on the node's address (what the DaemonSet
// passes from status.podIP). Both use the admin kubeconfig: the lab does
// not reproduce MetalLB's RBAC, which is not what is measured.
type metallbSys struct {
	speakerBin    string
	controllerBin string
	src           string // the module's source folder (CRDs)
	// config, when set, is MetalLB's configuration as YAML documents
	// (metallb.io resources) instead of the bench's, and as its BGP
	// peers' myASN.
	config string
	as     uint32

	kcfg       string
	secretDir  string // the memberlist Secret as the kubelet would mount it
	dyn        dynamic.Interface
	speakers   map[string]*lab.Process
	controller *lab.Process
}

func newMetalLB(t testing.TB) *metallbSys {
	t.Helper()
	b, err := metallb.Binaries()
	if err != nil {
		if metallb.IsUnavailable(err) {
			nstest.Skip(t, "%v", err)
		}
		t.Fatal(err)
	}
	return &metallbSys{speakerBin: b.Speaker, controllerBin: b.Controller, src: b.Src, speakers: map[string]*lab.Process{}}
}

func (m *metallbSys) Name() string { return "metallb" }

// NodeAS is the AS of the nodes' sessions when the configuration is the
// test's own (0: the bench's nodeAS).
func (m *metallbSys) NodeAS() uint32 { return m.as }

// MetalLB's native mode has no BFD and no graceful restart: the router
// needs nothing beyond the common session settings.
func (m *metallbSys) RouterNeighbor(string) []string { return nil }
func (m *metallbSys) RouterGlobal() string           { return "" }

// KubeProxy: MetalLB leaves the VIP on the node to kube-proxy.
func (m *metallbSys) KubeProxy() bool { return true }

// PoolAnnotations uses the annotation v0.15.2 reads first
// (controller/service.go; metallb.universe.tf/address-pool is its
// deprecated spelling).
func (m *metallbSys) PoolAnnotations(pool string) map[string]string {
	return map[string]string{"metallb.io/address-pool": pool}
}

func (m *metallbSys) Speaker(n string) *lab.Process { return m.speakers[n] }
func (m *metallbSys) Controller() *lab.Process      { return m.controller }

func speakerPodName(node string) string { return "speaker-" + node }

func (m *metallbSys) secretValue() string { return "side-by-side-metallb-memberlist-0123456789" }

// obj is an empty MetalLB object of kind in MetalLB's namespace.
func (m *metallbSys) obj(kind string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("metallb.io/v1beta1")
	u.SetKind(kind)
	u.SetNamespace(metallbNS)
	return u
}

// Install writes what MetalLB's native manifests would, minus RBAC and
// the webhook: the namespace, the CRDs from the module, the memberlist
// Secret (created here; the controller would create one itself when given
// --ml-secret-name, so it is not), the speaker Pods, and the equivalent of
// vipspeaker's configuration: pools "bgp" (auto-assigned) and "l2" (by
// annotation only), the router as BGPPeer, a BGPAdvertisement for "bgp"
// and an L2Advertisement for "l2" on eth0.
func (m *metallbSys) Install(t testing.TB, e *env) {
	t.Helper()
	var err error
	if m.dyn, err = dynamic.NewForConfig(e.API.Admin()); err != nil {
		t.Fatal(err)
	}
	if m.kcfg, err = e.API.Kubeconfig(kubeapi.AdminToken); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := e.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metallbNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m.installCRDs(ctx, t)

	// The memberlist Secret, and the folder the speaker reads it from (the
	// DaemonSet mounts it at /etc/ml_secret_key).
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: metallbSecret, Namespace: metallbNS},
		StringData: map[string]string{metallbSecretKey: m.secretValue()}}
	if _, err := e.cs.CoreV1().Secrets(metallbNS).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m.secretDir = filepath.Join(e.Lab.Dir(), "metallb-ml-secret")
	if err := os.MkdirAll(m.secretDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.secretDir, metallbSecretKey), []byte(m.secretValue()), 0o600); err != nil {
		t.Fatal(err)
	}

	m.createSpeakerPods(ctx, t, e)
	if m.config != "" {
		m.applyConfig(ctx, t)
		return
	}

	pool := func(name, cidr string, auto bool) *unstructured.Unstructured {
		u := m.obj("IPAddressPool")
		u.SetName(name)
		u.Object["spec"] = map[string]any{"addresses": []any{cidr}, "autoAssign": auto}
		return u
	}
	peer := m.obj("BGPPeer")
	peer.SetAPIVersion("metallb.io/v1beta2")
	peer.SetName("router")
	// A 3 s hold time is the shortest MetalLB accepts. Native mode refuses
	// keepaliveTime ("has keepalive-time set on native bgp mode": it sends
	// keepalives every third of the hold time, 1 s) and connectTime.
	peer.Object["spec"] = map[string]any{"myASN": int64(nodeAS), "peerASN": int64(routerAS), "peerAddress": routerAddr,
		"holdTime": "3s"}
	bgpAdv := m.obj("BGPAdvertisement")
	bgpAdv.SetName("bgp")
	bgpAdv.Object["spec"] = map[string]any{"ipAddressPools": []any{"bgp"}}
	l2Adv := m.obj("L2Advertisement")
	l2Adv.SetName("l2")
	l2Adv.Object["spec"] = map[string]any{"ipAddressPools": []any{"l2"}, "interfaces": []any{"eth0"}}
	for _, o := range []struct {
		gvr schema.GroupVersionResource
		u   *unstructured.Unstructured
	}{
		{poolGVR, pool("bgp", bgpPool, true)}, {poolGVR, pool("l2", l2Pool, false)},
		{peerGVR, peer}, {bgpAdvGVR, bgpAdv}, {l2AdvGVR, l2Adv},
	} {
		m.create(ctx, t, o.gvr, o.u)
	}
}

// create writes one MetalLB object into MetalLB's namespace.
func (m *metallbSys) create(ctx context.Context, t testing.TB, gvr schema.GroupVersionResource, u *unstructured.Unstructured) {
	t.Helper()
	// A CRD just Established may still answer 404 for a moment.
	if err := lab.Poll(30*time.Second, 100*time.Millisecond, func() error {
		_, err := m.dyn.Resource(gvr).Namespace(metallbNS).Create(ctx, u, metav1.CreateOptions{})
		return err
	}); err != nil {
		t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// applyConfig creates the objects of m.config, as `kubectl apply -f`
// would, in MetalLB's namespace.
func (m *metallbSys) applyConfig(ctx context.Context, t testing.TB) {
	t.Helper()
	for i, d := range strings.Split(m.config, "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(d), &u.Object); err != nil || u.GetKind() == "" {
			t.Fatalf("MetalLB configuration, document %d: %v", i+1, err)
		}
		gv, err := schema.ParseGroupVersion(u.GetAPIVersion())
		if err != nil {
			t.Fatal(err)
		}
		u.SetNamespace(metallbNS)
		res := strings.ToLower(u.GetKind()) + "s" // ipaddresspools, bgppeers, …
		if r, ok := strings.CutSuffix(res, "ys"); ok {
			res = r + "ies" // communities
		}
		m.create(ctx, t, gv.WithResource(res), u)
	}
}

// installCRDs creates MetalLB's CRDs from the module's config/crd/bases and
// waits until they are Established.
func (m *metallbSys) installCRDs(ctx context.Context, t testing.TB) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(m.src, "config", "crd", "bases", "metallb.io_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no MetalLB CRDs in %s: %v", m.src, err)
	}
	var names []string
	for _, f := range files {
		u, err := metallb.ReadCRD(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.dyn.Resource(crdGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD from %s: %v", filepath.Base(f), err)
		}
		names = append(names, u.GetName())
	}
	for _, n := range names {
		if err := lab.Poll(30*time.Second, 50*time.Millisecond, func() error {
			u, err := m.dyn.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				if c, ok := c.(map[string]any); ok && c["type"] == "Established" && c["status"] == "True" {
					return nil
				}
			}
			return fmt.Errorf("CRD %s not Established yet", n)
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// createSpeakerPods plays the DaemonSet and the kubelet: a Pod per node,
// Running and Ready, host network, podIP the node's address. The speaker
// reads its own Pod at start (owner of its status objects) and memberlist
// finds its peers by listing these Pods' status.podIP (once at start, then
// every 5 minutes), so they must exist before any speaker starts. They
// stay as they are across speaker restarts: the addresses do not change.
func (m *metallbSys) createSpeakerPods(ctx context.Context, t testing.TB, e *env) {
	t.Helper()
	// The ServiceAccount admission plugin wants the Pod's account to exist.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "speaker", Namespace: metallbNS}}
	if _, err := e.cs.CoreV1().ServiceAccounts(metallbNS).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodeNames {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: speakerPodName(n), Namespace: metallbNS, Labels: metallbApp},
			Spec: corev1.PodSpec{
				NodeName:                     n,
				HostNetwork:                  true,
				ServiceAccountName:           "speaker",
				AutomountServiceAccountToken: ptr(false),
				Containers: []corev1.Container{{Name: "speaker", Image: "quay.io/metallb/speaker:" + metallbVersion,
					Args: []string{"--port=" + metallbMetrics}}},
			},
		}
		p, err := e.cs.CoreV1().Pods(metallbNS).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create speaker Pod for %s: %v", n, err)
		}
		now := metav1.Now()
		p.Status = corev1.PodStatus{
			Phase:     corev1.PodRunning,
			HostIP:    nodeAddr(n),
			HostIPs:   []corev1.HostIP{{IP: nodeAddr(n)}},
			PodIP:     nodeAddr(n),
			PodIPs:    []corev1.PodIP{{IP: nodeAddr(n)}},
			StartTime: &now,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "speaker", Ready: true, Started: ptr(true),
				Image: pod.Spec.Containers[0].Image, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
		}
		if _, err := e.cs.CoreV1().Pods(metallbNS).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("speaker Pod status for %s: %v", n, err)
		}
	}
}

// Start runs the controller on the API server's host (port 7472 there) and
// a speaker on every node.
func (m *metallbSys) Start(t testing.TB, e *env) {
	t.Helper()
	host := e.API.Process().Host()
	p, err := host.Start("metallb-controller", []string{m.controllerBin,
		"--kubeconfig", m.kcfg, "--namespace", metallbNS, "--webhook-mode=disabled", "--port", metallbMetrics,
		"--log-level", "info"}, lab.StopTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m.controller = p
	for _, n := range nodeNames {
		m.StartSpeaker(t, e, n)
	}
}

// StartSpeaker starts the speaker on node n as the DaemonSet does: the
// node's address as memberlist bind address (status.podIP), the
// memberlist key from the mounted Secret, 2 s to stop
// (terminationGracePeriodSeconds).
func (m *metallbSys) StartSpeaker(t testing.TB, e *env, n string) {
	t.Helper()
	p, err := e.Nodes[n].Start("metallb-speaker", []string{m.speakerBin,
		"--kubeconfig", m.kcfg, "--namespace", metallbNS, "--node-name", n, "--pod-name", speakerPodName(n),
		"--port", metallbMetrics, "--ml-bindaddr", nodeAddr(n), "--ml-bindport", metallbMLPort,
		"--ml-labels", metallbLabels, "--ml-secret-key-path", m.secretDir, "--log-level", "info"},
		lab.StopTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m.speakers[n] = p
}

// SetCommunity sets the BGPAdvertisement's communities, as an operator
// edits it; "" removes them.
func (m *metallbSys) SetCommunity(t testing.TB, e *env, community string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// Get and Update again on a conflict (or any other error) until the
	// deadline.
	err := lab.Poll(15*time.Second, 20*time.Millisecond, func() error {
		u, err := m.dyn.Resource(bgpAdvGVR).Namespace(metallbNS).Get(ctx, "bgp", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if community == "" {
			unstructured.RemoveNestedField(u.Object, "spec", "communities")
		} else if err := unstructured.SetNestedStringSlice(u.Object, []string{community}, "spec", "communities"); err != nil {
			return err
		}
		_, err = m.dyn.Resource(bgpAdvGVR).Namespace(metallbNS).Update(ctx, u, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("set community %q on BGPAdvertisement bgp: %v", community, err)
	}
}

// ready reports whether the speaker on node n sees every node's speaker
// in memberlist, so that L2 ownership is agreed: until then a speaker
// counts only the members it has and may answer for a VIP another one
// owns.
func (m *metallbSys) ready(n string) bool {
	return len(m.members(n)) == len(nodeNames)
}

// members is the memberlist membership the speaker on node n has logged
// since it last started ("node event - forcing sync" with NodeJoin or
// NodeLeave for a node name, its own included); only the first speaker to
// join others logs "memberlist join successfully", so that line says
// little.
func (m *metallbSys) members(n string) []string {
	p := m.speakers[n]
	if p == nil {
		return nil
	}
	log := p.Log()
	// The lab appends every start to the same log after a "### " line.
	if i := strings.LastIndex(log, "\n### "); i >= 0 {
		log = log[i+1:]
	}
	in := map[string]bool{}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "node event - forcing sync") {
			continue
		}
		var ev struct {
			Node  string `json:"node name"`
			Event string `json:"node event"`
		}
		if json.Unmarshal([]byte(line), &ev) != nil || ev.Node == "" {
			continue
		}
		switch ev.Event {
		case "NodeJoin":
			in[ev.Node] = true
		case "NodeLeave":
			delete(in, ev.Node)
		}
	}
	out := make([]string, 0, len(in))
	for node := range in {
		out = append(out, node)
	}
	slices.Sort(out)
	return out
}
