package fault_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/vipspeaker/vipspeaker/bpf"
	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// capBits maps Kubernetes capability names to Linux capability numbers
// (include/uapi/linux/capability.h), for the ones a node agent might ask
// for.
var capBits = map[string]uint{
	"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETGID": 6, "SETUID": 7,
	"NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13,
	"IPC_LOCK": 14, "SYS_MODULE": 16, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_ADMIN": 21,
	"SYS_RESOURCE": 24, "PERFMON": 38, "BPF": 39,
}

// daemonSetCaps reads the capabilities the vipspeaker container of
// deploy/kustomize/daemonset.yaml asks for, and checks the rest of its
// security context is what the lab reproduces: root, every other
// capability dropped, no privilege escalation, not privileged.
func daemonSetCaps(t *testing.T) []string {
	t.Helper()
	root, err := lab.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "deploy", "kustomize", "daemonset.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Kind string `json:"kind"`
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Name            string `json:"name"`
						SecurityContext struct {
							Privileged               *bool  `json:"privileged"`
							AllowPrivilegeEscalation *bool  `json:"allowPrivilegeEscalation"`
							RunAsUser                *int64 `json:"runAsUser"`
							Capabilities             struct {
								Add  []string `json:"add"`
								Drop []string `json:"drop"`
							} `json:"capabilities"`
						} `json:"securityContext"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if ds.Kind != "DaemonSet" {
		t.Fatalf("%s holds a %q, not a DaemonSet", path, ds.Kind)
	}
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name != "vipspeaker" {
			continue
		}
		sc := c.SecurityContext
		if sc.Privileged != nil && *sc.Privileged {
			t.Fatalf("%s: the vipspeaker container is privileged; least privilege means it is not", path)
		}
		if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
			t.Fatalf("%s: capabilities.drop is %v; the lab reproduces drop [ALL] plus add", path, sc.Capabilities.Drop)
		}
		if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
			t.Fatalf("%s: runAsUser is not 0; the lab reproduces root with a reduced capability set", path)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Fatalf("%s: allowPrivilegeEscalation is not false; the lab runs with no_new_privs", path)
		}
		if len(sc.Capabilities.Add) == 0 {
			t.Fatalf("%s: the vipspeaker container adds no capabilities", path)
		}
		return sc.Capabilities.Add
	}
	t.Fatalf("%s: no container named vipspeaker", path)
	return nil
}

// setpriv is the argv prefix that gives the agent what a container with
// these capabilities gets from the runtime: root, a bounding set of
// exactly caps (so, as root, permitted and effective are caps too), no
// inheritable or ambient capabilities, no_new_privs.
func setpriv(t *testing.T, caps []string) (argv []string, mask uint64) {
	t.Helper()
	requireTools(t, "setpriv")
	set := []string{"-all"}
	for _, c := range caps {
		bit, ok := capBits[strings.ToUpper(c)]
		if !ok {
			t.Fatalf("capability %q is unknown to this test; add it to capBits", c)
		}
		mask |= 1 << bit
		set = append(set, "+"+strings.ToLower(c))
	}
	return []string{"setpriv", "--bounding-set", strings.Join(set, ","), "--inh-caps", "-all", "--no-new-privs", "--"}, mask
}

// procCaps reads the capability sets and no_new_privs of a process, once
// it runs bin (ip netns exec and setpriv exec into it under the same PID).
func procCaps(t *testing.T, p *lab.Process, bin string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	lab.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID()))
		if err != nil {
			return err
		}
		if exe != bin {
			return fmt.Errorf("pid %d runs %s, not yet %s", p.PID(), exe, bin)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID()))
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || !(strings.HasPrefix(k, "Cap") || k == "NoNewPrivs") {
				continue
			}
			base := 16
			if k == "NoNewPrivs" {
				base = 10
			}
			n, err := strconv.ParseUint(strings.TrimSpace(v), base, 64)
			if err != nil {
				return fmt.Errorf("%s: %w", line, err)
			}
			out[k] = n
		}
		return nil
	})
	return out
}

func checkCaps(t *testing.T, p *lab.Process, bin string, mask uint64) {
	t.Helper()
	got := procCaps(t, p, bin)
	t.Logf("agent pid %d: CapEff %#016x CapPrm %#016x CapBnd %#016x CapInh %#x CapAmb %#x NoNewPrivs %d",
		p.PID(), got["CapEff"], got["CapPrm"], got["CapBnd"], got["CapInh"], got["CapAmb"], got["NoNewPrivs"])
	for k, want := range map[string]uint64{"CapEff": mask, "CapPrm": mask, "CapBnd": mask, "CapInh": 0, "CapAmb": 0, "NoNewPrivs": 1} {
		if got[k] != want {
			t.Errorf("agent's %s is %#x, want %#x (exactly the DaemonSet's capabilities)", k, got[k], want)
		}
	}
}

// With exactly the capabilities the DaemonSet asks for, the agent
// announces a BGP VIP (route in the router's kernel, the client pings it)
// and answers ARP for a layer2 VIP on a shared segment (exactly one node
// answers, the client pings it).
func TestLeastPrivilegeDaemonSetCapabilities(t *testing.T) {
	caps := daemonSetCaps(t)
	prefix, mask := setpriv(t, caps)
	t.Logf("DaemonSet capabilities: %v (mask %#x)", caps, mask)

	t.Run("bgp", func(t *testing.T) {
		b := newBGPLab(t, bgpOptions{prefix: prefix})
		p := b.start(t)
		checkCaps(t, p, b.bin, mask)
		err := lab.Poll(routeBound, 20*time.Millisecond, func() error {
			if p.Exited() {
				return fmt.Errorf("the agent exited: %w", lab.ErrGiveUp)
			}
			return hasRoute(b.router, vipPrefix)
		})
		if err != nil {
			log := p.Log()
			if strings.Contains(log, ":179: bind: permission denied") {
				t.Fatalf("with the DaemonSet's capabilities %v the agent cannot listen on BGP's port 179 "+
					"(CAP_NET_BIND_SERVICE is not among them): add NET_BIND_SERVICE to deploy/kustomize/daemonset.yaml "+
					"and the Helm chart's DaemonSet (checked: with it added, this test passes). %v\n%s", caps, err, lab.Tail(log, 15))
			}
			t.Fatalf("BGP VIP not announced with the DaemonSet's capabilities: %v\n%s", err, lab.Tail(log, 15))
		}
		if err := b.client.Ping(vip); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("layer2", func(t *testing.T) {
		requireTools(t, "curl")
		tp := newL2Lab(t, prefix)
		for i := range tp.Nodes {
			p := tp.start(t, i)
			checkCaps(t, p, tp.bin, mask)
		}
		owner := tp.waitOneOwner(t)
		lab.Eventually(t, routeBound, 100*time.Millisecond, func() error { return tp.client.Ping(vip) })
		// A kernel that refuses live frames to root as well (probed here,
		// with every capability) refuses them to the agent for the same
		// reason: its "operation not permitted" for them is not a missing
		// capability.
		live, err := bpf.LiveFramesAllowed()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range tp.Nodes {
			p := n.Proc
			log := p.Log()
			if !live {
				var keep []string
				for _, line := range strings.Split(log, "\n") {
					if !strings.Contains(line, bpf.ErrLiveFramesRefused.Error()) {
						keep = append(keep, line)
					}
				}
				log = strings.Join(keep, "\n")
			}
			for _, bad := range []string{"XDP fast path not available", "XDP fast path failed to load", "verifier", "operation not permitted"} {
				if strings.Contains(log, bad) {
					t.Errorf("%s: %q with the DaemonSet's capabilities; the XDP fast path must load with them:\n%s", p.Name(), bad, lab.Tail(log, 15))
				}
			}
			for _, line := range strings.Split(log, "\n") {
				if strings.Contains(line, "XDP fast path") {
					t.Logf("%s: %s", p.Name(), line)
				}
			}
		}
		// The owner's replies (waitOneOwner's arping, the ping's ARP)
		// were sent by the XDP program, none by the userspace responder.
		lab.Eventually(t, 10*time.Second, 200*time.Millisecond, func() error {
			m, err := tp.Nodes[owner].Host.Metrics()
			if err != nil {
				return err
			}
			if v := lab.MetricSum(m, "vipspeaker_arp_replies_sent_total", map[string]string{"path": "xdp"}); v < 1 {
				return fmt.Errorf("%s: ARP replies with path=\"xdp\" = %v, want ≥ 1 (the XDP fast path answering with the DaemonSet's capabilities)", tp.Nodes[owner].Host.Name(), v)
			}
			if v := lab.MetricSum(m, "vipspeaker_arp_replies_sent_total", map[string]string{"path": "userspace"}); v != 0 {
				return fmt.Errorf("%s: ARP replies with path=\"userspace\" = %v while XDP answers, want 0", tp.Nodes[owner].Host.Name(), v)
			}
			return nil
		})
	})
}

// Without NET_ADMIN (the DaemonSet's other capabilities kept) the agent
// exits non-zero at once, naming the missing capability and what it is
// for, and leaves nothing behind (no VIP interface).
func TestWithoutNetAdminExitsWithClearMessage(t *testing.T) {
	nstest.RequireRoot(t)
	var caps []string
	for _, c := range daemonSetCaps(t) {
		if !strings.EqualFold(c, "NET_ADMIN") {
			caps = append(caps, c)
		}
	}
	prefix, mask := setpriv(t, caps)
	node := lab.New(t).MustHost("node")
	a, err := lab.NewAgent(node, lab.Vipspeaker(t))
	if err != nil {
		t.Fatal(err)
	}
	a.Wrap, a.LogLevel = prefix, "info"
	if err := a.WriteService(lab.ServiceFile{Name: "web", Addresses: []string{vip}}); err != nil {
		t.Fatal(err)
	}
	p, err := a.Start()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("the agent without NET_ADMIN (capabilities %#x) still runs after 20 s:\n%s", mask, lab.Tail(p.Log(), 20))
	}
	var ee *exec.ExitError
	if err := p.Wait(); !errors.As(err, &ee) || ee.ExitCode() <= 0 {
		t.Fatalf("the agent without NET_ADMIN ended with %v, want a non-zero exit status", err)
	}
	log := p.Log()
	t.Logf("agent without NET_ADMIN (capabilities %v):\n%s", caps, lab.Tail(log, 5))
	for _, want := range []string{"CAP_NET_ADMIN", "VIP interface", "VIP addresses"} {
		if !strings.Contains(log, want) {
			t.Errorf("the agent's message lacks %q (name the missing capability and what it is needed for):\n%s", want, lab.Tail(log, 10))
		}
	}
	if _, err := node.Netlink().LinkByName("kube-lb0"); err == nil {
		t.Error("the agent without NET_ADMIN left a kube-lb0 behind")
	}
}
