package kubeapi

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// BuildComponents builds the named Kubernetes v1.37.2 components
// (kube-controller-manager, kubelet, ...) with test/apiserver/build.sh,
// once per machine (cached), and returns their paths in order.
func BuildComponents(names ...string) ([]string, error) {
	return buildScript(filepath.Join("test", "apiserver", "build.sh"), len(names), names...)
}

// KwokBinary builds KWOK's controller (sigs.k8s.io/kwok, the version
// test/kwok/go.mod pins) with test/kwok/build.sh, once per machine
// (cached), and returns its path (its stages beside it: kwokStages).
func KwokBinary() (string, error) {
	p, err := buildScript(filepath.Join("test", "kwok", "build.sh"), 1)
	if err != nil {
		return "", err
	}
	return p[0], nil
}

// buildScript runs a build script of the repository (its path relative to
// the module root) and returns the want paths it prints.
func buildScript(script string, want int, args ...string) ([]string, error) {
	root, err := lab.ModuleRoot()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(root, script), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", script, strings.Join(args, " "), err, stderr.String())
	}
	paths := strings.Fields(string(out))
	if len(paths) != want {
		return nil, fmt.Errorf("%s printed %d paths, want %d", script, len(paths), want)
	}
	return paths, nil
}

// StartControllers runs kube-controller-manager (its default controllers:
// Deployments, ReplicaSets, EndpointSlices, node lifecycle, ...) and
// kube-scheduler, the binaries kcm and sched, as admin on h; the lab stops
// them. serviceCIDRs and clusterCIDRs are comma-separated.
func (s *Server) StartControllers(h *lab.Host, kcm, sched, serviceCIDRs, clusterCIDRs string) error {
	kubeconfig, err := s.Kubeconfig(AdminToken)
	if err != nil {
		return err
	}
	if _, err := h.Start("kube-controller-manager", []string{kcm,
		"--kubeconfig", kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--root-ca-file", filepath.Join(s.dir, "certs", "apiserver.crt"),
		"--service-account-private-key-file", filepath.Join(s.dir, "sa.key"),
		"--service-cluster-ip-range", serviceCIDRs,
		"--cluster-cidr", clusterCIDRs,
		"--allocate-node-cidrs=false",
		"--v=1",
	}, lab.StopTimeout(5*time.Second)); err != nil {
		return err
	}
	_, err = h.Start("kube-scheduler", []string{sched, "--kubeconfig", kubeconfig, "--leader-elect=false", "--secure-port=0", "--v=1"},
		lab.StopTimeout(5*time.Second))
	return err
}

// KwokAnnotation marks the Nodes KWOK keeps alive (StartKwok manages only
// those).
const KwokAnnotation = "kwok.x-k8s.io/node"

// StartKwok runs KWOK's controller bin as admin on h: it keeps every Node
// annotated KwokAnnotation=fake Ready (conditions, heartbeats by Lease)
// and plays the kubelet for the Pods scheduled there (Running and Ready, an
// address from podCIDR), with the project's own stages (node initialize
// and heartbeat with Lease, pod fast; test/kwok/build.sh writes them
// beside the binary).
func (s *Server) StartKwok(h *lab.Host, bin, podCIDR string) (*lab.Process, error) {
	kubeconfig, err := s.Kubeconfig(AdminToken)
	if err != nil {
		return nil, err
	}
	return h.Start("kwok", []string{bin,
		"--kubeconfig", kubeconfig,
		"--config", bin + "-stages.yaml",
		"--manage-nodes-with-annotation-selector", KwokAnnotation + "=fake",
		"--cidr", podCIDR,
		"--node-lease-duration-seconds", "40",
	}, lab.StopTimeout(5*time.Second))
}

// CreateKwokNode registers Node name for KWOK the way a kubelet registers
// itself (name, hostname label, InternalIP and Hostname addresses), with
// KwokAnnotation=fake and no conditions: KWOK makes it Ready and keeps it
// so.
func (s *Server) CreateKwokNode(name, internalIP string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := s.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		Annotations: map[string]string{KwokAnnotation: "fake"},
		Labels:      map[string]string{corev1.LabelHostname: name, corev1.LabelOSStable: "linux"}}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: internalIP}, {Type: corev1.NodeHostName, Address: name}}
	_, err = s.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}
