package realnodes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// Node is one real node: its lab host (network namespace), the holder of
// its mount and UTS namespaces, and containerd, kubelet and kube-proxy.
type Node struct {
	Name    string // Kubernetes node name and hostname
	Addr    string // node IP on the segment
	PodCIDR string
	// Addr6 and PodCIDR6 are set in a dual-stack cluster.
	Addr6, PodCIDR6 string
	Host            *lab.Host

	c      *Cluster
	dir    string
	cgroup string // cgroup root, e.g. /vsrn123-1-n1
	holder *lab.Process
	// Containerd, Kubelet and KubeProxy are the node's daemons.
	Containerd, Kubelet, KubeProxy *lab.Process
}

const cgroupMount = "/sys/fs/cgroup"

// Values the kubelet wants in host-wide /proc/sys files; inside a node they
// are shadowed by files holding them, so the host keeps its own.
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// CgroupRoot is the node's cgroup root (the kubelet's cgroupRoot).
func (n *Node) CgroupRoot() string { return n.cgroup }

// Dir is the node's folder: configs, containerd's and the kubelet's state.
func (n *Node) Dir() string { return n.dir }

func (n *Node) start(proxyMode, pauseTar string) error {
	c := n.c
	n.dir = filepath.Join(c.dir, n.Name)
	n.cgroup = "/" + c.tag + "-" + n.Name
	for _, d := range []string{"containerd", "containerd-state", "kubelet", "cni-conf", "cni-data", "sys"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	if err := createCgroup(n.cgroup); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	if err := n.writeConfigs(proxyMode); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	script, err := n.holderScript()
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	// `ip netns exec` (lab.Host.Start) gives the holder a fresh sysfs; the
	// holder's own mount namespace then gets the cgroup mounts back.
	n.holder, err = n.Host.Start("holder", []string{"unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-ec", script})
	if err != nil {
		return err
	}
	ready := filepath.Join(n.dir, "holder.ready")
	if err := lab.Poll(20*time.Second, 20*time.Millisecond, func() error {
		if n.holder.Exited() {
			return fmt.Errorf("holder exited:\n%s: %w", n.holder.Log(), lab.ErrGiveUp)
		}
		_, err := os.Stat(ready)
		return err
	}); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	n.Containerd, err = n.StartOnNode("containerd", []string{c.bins.Containerd, "--config", filepath.Join(n.dir, "containerd.toml")})
	if err != nil {
		return err
	}
	if err := lab.Poll(30*time.Second, 100*time.Millisecond, func() error {
		if n.Containerd.Exited() {
			return fmt.Errorf("containerd exited: %w", lab.ErrGiveUp)
		}
		_, err := n.Run(context.Background(), c.bins.Ctr, "version")
		return err
	}); err != nil {
		return fmt.Errorf("node %s: containerd: %w", n.Name, err)
	}
	if err := n.ImportImage(pauseTar); err != nil {
		return err
	}
	n.Kubelet, err = n.StartOnNode("kubelet", []string{c.bins.Kubelet,
		"--config", filepath.Join(n.dir, "kubelet.yaml"),
		"--kubeconfig", c.Kubeconfig,
		"--root-dir", filepath.Join(n.dir, "kubelet"),
		"--hostname-override", n.Name,
		"--node-ip", n.nodeIPs(),
		"--v=1",
	})
	if err != nil {
		return err
	}
	n.KubeProxy, err = n.StartOnNode("kube-proxy", []string{c.bins.KubeProxy, "--config", filepath.Join(n.dir, "kube-proxy.yaml"), "--v=1"})
	return err
}

// holderScript mounts the node's private file systems and sleeps.
func (n *Node) holderScript() (string, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "mount -t tmpfs -o mode=755 cgroup_root %s\n", cgroupMount)
	for _, m := range mounts {
		fmt.Fprintf(&b, "mkdir -p %s\nmount -t %s -o %s %s %s\n", m.dir, m.fstype, m.opts, m.fstype, m.dir)
		fmt.Fprintf(&b, "echo $$ > %s\n", filepath.Join(m.dir, n.cgroup, "cgroup.procs"))
	}
	// A private /run (containerd's state and sockets, netns files, the
	// xtables lock, hostPath folders such as /run/vipspeaker) and /var/log
	// (Pod logs), a private bpf file system.
	b.WriteString("mount -t tmpfs -o mode=755,size=256m node_run /run\nmkdir -p /run/netns /run/containerd\n")
	b.WriteString("mount -t tmpfs -o mode=755,size=256m node_log /var/log\nmkdir -p /var/log/pods /var/log/containers\n")
	b.WriteString("mount -t bpf bpf /sys/fs/bpf\n")
	for key, val := range kubeletSysctls {
		f := filepath.Join(n.dir, "sys", strings.ReplaceAll(key, "/", "."))
		if err := os.WriteFile(f, []byte(val+"\n"), 0o644); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "mount --bind %s /proc/sys/%s\n", f, key)
	}
	// As on a node booted by systemd, / is shared inside the node (Pods
	// mount with HostToContainer propagation, e.g. the agent's
	// /sys/fs/bpf); the node's mounts have no peer outside it (the
	// namespace was made private first), so nothing reaches the host.
	b.WriteString("mount --make-rshared /\n")
	fmt.Fprintf(&b, "hostname %s\n", n.Name)
	// Per network namespace on this kernel: the node's own.
	b.WriteString("echo 1 > /proc/sys/net/ipv4/ip_forward\n")
	if n.c.dual {
		b.WriteString("echo 1 > /proc/sys/net/ipv6/conf/all/forwarding\n")
	}
	b.WriteString("if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables; echo 1 > /proc/sys/net/bridge/bridge-nf-call-ip6tables; fi\n")
	fmt.Fprintf(&b, "touch %s\nexec sleep infinity\n", filepath.Join(n.dir, "holder.ready"))
	return b.String(), nil
}

// StartOnNode starts argv in the node's namespaces and cgroup root; output
// goes to the lab folder (<host>.<name>.log). It stops with the lab.
func (n *Node) StartOnNode(name string, argv []string) (*lab.Process, error) {
	return n.Host.Start(name, n.enter(argv), lab.StopTimeout(5*time.Second))
}

// Run runs argv in the node's namespaces and returns its combined output.
func (n *Node) Run(ctx context.Context, argv ...string) (string, error) {
	return n.Host.Run(ctx, n.enter(argv)...)
}

// enter wraps argv so it runs in the node's mount and UTS namespaces (the
// network namespace is the lab host's) and joins the node's cgroup root.
func (n *Node) enter(argv []string) []string {
	join := fmt.Sprintf(`for f in %s/*%s/cgroup.procs; do echo $$ > "$f"; done; exec "$@"`, cgroupMount, n.cgroup)
	return append([]string{"nsenter", "--target", strconv.Itoa(n.holder.PID()), "--mount", "--uts", "--", "/bin/sh", "-ec", join, "sh"}, argv...)
}

// ImportImage loads an image tarball into the node's containerd (namespace
// k8s.io, where the kubelet looks).
func (n *Node) ImportImage(tarball string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := n.Run(ctx, n.c.bins.Ctr, "-n", "k8s.io", "images", "import", tarball); err != nil {
		return fmt.Errorf("node %s: ctr images import %s: %w\n%s", n.Name, tarball, err, out)
	}
	return nil
}

func (n *Node) checkAlive() error {
	for _, p := range []*lab.Process{n.holder, n.Containerd, n.Kubelet, n.KubeProxy} {
		if p != nil && p.Exited() {
			return fmt.Errorf("node %s: %s exited:\n%s", n.Name, p.Name(), lab.Tail(p.Log(), 25))
		}
	}
	return nil
}

// Freeze stops every process of the node (daemons, shims, Pods) with
// SIGSTOP, found through its cgroup root: the node is lost to the cluster
// and the network, but its addresses and routes stay. Thaw resumes it.
func (n *Node) Freeze() error { return signalCgroup(n.cgroup, syscall.SIGSTOP) }

// Thaw resumes a frozen node (SIGCONT).
func (n *Node) Thaw() error { return signalCgroup(n.cgroup, syscall.SIGCONT) }

func (n *Node) writeConfigs(proxyMode string) error {
	c := n.c
	ranges, routes := n.cniRanges()
	files := map[string]string{
		"containerd.toml": fmt.Sprintf(`version = 2
root = %q
state = "/run/containerd"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # No CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
`, filepath.Join(n.dir, "containerd"), PauseImage, c.bins.CNIDir, filepath.Join(n.dir, "cni-conf")),
		"cni-conf/10-vsrn.conflist": fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "vsrn",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": %s,
        "routes": %s
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, filepath.Join(n.dir, "cni-data"), ranges, routes),
		"kubelet.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 here: kubelet 1.37 refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
cgroupsPerQOS: true
# No CAP_SYS_RESOURCE here.
oomScoreAdj: 0
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
address: %s
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
failSwapOn: false
resolvConf: /etc/resolv.conf
serializeImagePulls: false
protectKernelDefaults: false
localStorageCapacityIsolation: false
evictionHard:
  memory.available: "0%%"
  nodefs.available: "0%%"
  imagefs.available: "0%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, n.cgroup, n.Addr),
		"kube-proxy.yaml": fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
mode: %s
clusterCIDR: %s
# No CAP_SYS_RESOURCE here; no host-wide conntrack tunables.
oomScoreAdj: 0
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 0.0.0.0:10256
`, c.Kubeconfig, n.Name, proxyMode, c.clusterCIDRs()),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(n.dir, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// nodeIPs is the kubelet's --node-ip: IPv4, then IPv6 on a dual-stack node.
func (n *Node) nodeIPs() string {
	if n.Addr6 == "" {
		return n.Addr
	}
	return n.Addr + "," + n.Addr6
}

// cniRanges is host-local's ranges and the bridge plugin's routes (JSON):
// one per family of the node's Pod subnets.
func (n *Node) cniRanges() (ranges, routes string) {
	if n.PodCIDR6 == "" {
		return fmt.Sprintf(`[[{"subnet": %q}]]`, n.PodCIDR), `[{"dst": "0.0.0.0/0"}]`
	}
	return fmt.Sprintf(`[[{"subnet": %q}], [{"subnet": %q}]]`, n.PodCIDR, n.PodCIDR6), `[{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]`
}

// cgroupMount is one mounted cgroup hierarchy of the host.
type cgroupHier struct {
	dir    string // e.g. /sys/fs/cgroup/cpu
	fstype string // cgroup or cgroup2
	opts   string // mount options naming the hierarchy
}

// cgroupMounts lists the host's cgroup hierarchies under /sys/fs/cgroup.
func cgroupMounts() ([]cgroupHier, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []cgroupHier
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, fl := range fields {
			if fl == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+4 || len(fields) < 5 {
			continue
		}
		dir, fstype, super := fields[4], fields[sep+1], fields[sep+3]
		if !strings.HasPrefix(dir, cgroupMount+"/") || (fstype != "cgroup" && fstype != "cgroup2") {
			continue
		}
		var opts []string
		for _, o := range strings.Split(super, ",") {
			if o != "rw" && o != "ro" {
				opts = append(opts, o)
			}
		}
		if fstype == "cgroup" && len(opts) == 1 && strings.HasPrefix(opts[0], "name=") {
			opts = append([]string{"none"}, opts...)
		}
		if len(opts) == 0 {
			opts = []string{"defaults"}
		}
		out = append(out, cgroupHier{dir: dir, fstype: fstype, opts: strings.Join(opts, ",")})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no cgroup hierarchies under /sys/fs/cgroup")
	}
	return out, nil
}

// createCgroup creates root in every hierarchy, with the parent's cpuset.
func createCgroup(root string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		d := filepath.Join(m.dir, root)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", d, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(m.dir, f)); err == nil {
				if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
					return fmt.Errorf("cgroup %s: %s: %w", d, f, err)
				}
			}
		}
	}
	return nil
}

// cgroupPIDs lists the processes in root and below (first hierarchy that
// has root).
func cgroupPIDs(root string) ([]int, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	var pids []int
	for _, m := range mounts {
		base := filepath.Join(m.dir, root)
		if _, err := os.Stat(base); err != nil {
			continue
		}
		_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids, nil
}

func signalCgroup(root string, sig syscall.Signal) error {
	pids, err := cgroupPIDs(root)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("cgroup %s holds no process", root)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal %v to pid %d of %s: %w", sig, pid, root, err)
		}
	}
	return nil
}

// killCgroup kills every process in root (SIGCONT first, for a frozen
// node) until none is left, then removes root's folders, deepest first, in
// every hierarchy.
func killCgroup(root string) error {
	if root == "" {
		return nil
	}
	err := lab.Poll(20*time.Second, 50*time.Millisecond, func() error {
		pids, err := cgroupPIDs(root)
		if err != nil {
			return err
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
		if len(pids) > 0 {
			return fmt.Errorf("cgroup %s still holds %d processes", root, len(pids))
		}
		return nil
	})
	if err != nil {
		return err
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		base := filepath.Join(m.dir, root)
		var dirs []string
		_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := lab.Poll(5*time.Second, 50*time.Millisecond, func() error {
				err := syscall.Rmdir(dirs[i])
				if errors.Is(err, syscall.ENOENT) {
					return nil
				}
				return err
			}); err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

var staleRE = regexp.MustCompile(`^` + Prefix + `([0-9]+)-[0-9]+(-|$)`)

// SweepStale removes what clusters of dead test processes left: cgroup
// roots (killing what still runs in them) and folders named
// vsrn<pid>-<seq>-... whose process is gone. Start calls it.
func SweepStale() error {
	dead := func(name string) bool {
		m := staleRE.FindStringSubmatch(name)
		if m == nil {
			return false
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid <= 0 || pid == os.Getpid() {
			return false
		}
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	var errs []error
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	roots := map[string]bool{}
	for _, m := range mounts {
		ents, _ := os.ReadDir(m.dir)
		for _, e := range ents {
			if e.IsDir() && dead(e.Name()) {
				roots["/"+e.Name()] = true
			}
		}
	}
	for r := range roots {
		errs = append(errs, killCgroup(r))
	}
	ents, _ := os.ReadDir(os.TempDir())
	for _, e := range ents {
		if e.IsDir() && dead(e.Name()) {
			errs = append(errs, os.RemoveAll(filepath.Join(os.TempDir(), e.Name())))
		}
	}
	return errors.Join(errs...)
}

// counterRE matches iptables-save's packet/byte counters.
var counterRE = regexp.MustCompile(`\[[0-9]+:[0-9]+\]`)

// HostSnapshot describes what a cluster must leave as it found it on the
// host (the test process's namespaces): the /proc/sys values the kubelet
// and kube-proxy want to set, the root namespace's iptables and nftables
// rules (without counters), and the cgroups this process named.
func HostSnapshot() (string, error) {
	var b strings.Builder
	keys := []string{"net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_tcp_timeout_established", "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
		"net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables", "net/ipv4/conf/all/route_localnet"}
	for k := range kubeletSysctls {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			fmt.Fprintf(&b, "%s: (unreadable)\n", k)
			continue
		}
		fmt.Fprintf(&b, "%s = %s\n", k, strings.TrimSpace(string(v)))
	}
	for _, argv := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"nft", "list", "ruleset"}} {
		out, err := exec.Command(argv[0], argv[1:]...).Output()
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", argv[0], err)
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "#") {
				continue // iptables-save's time stamps
			}
			fmt.Fprintf(&b, "%s: %s\n", argv[0], counterRE.ReplaceAllString(line, ""))
		}
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return "", err
	}
	own := fmt.Sprintf("%s%d-", Prefix, os.Getpid())
	for _, m := range mounts {
		ents, _ := os.ReadDir(m.dir)
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), own) {
				fmt.Fprintf(&b, "cgroup %s\n", filepath.Join(m.dir, e.Name()))
			}
		}
	}
	return b.String(), nil
}
