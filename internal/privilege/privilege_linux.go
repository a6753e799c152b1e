package privilege

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// Linux capability numbers (include/uapi/linux/capability.h).
const (
	capNetBindService = 10
	capNetAdmin       = 12
	capNetRaw         = 13
	capSysAdmin       = 21
	capPerfmon        = 38
	capBPF            = 39
)

// bgpPort is the port the embedded speaker listens on unless gobgp.conf
// says otherwise.
const bgpPort = 179

// agentCapability is one capability the agent uses, and what for.
type agentCapability struct {
	bit     uint
	name    string // as Kubernetes spells it in securityContext.capabilities
	purpose string
	// required: nothing works without it, so the agent refuses to start.
	required bool
}

var agentCapabilities = []agentCapability{
	{capNetAdmin, "NET_ADMIN", "creating the VIP interface (kube-lb0), adding and removing the VIP addresses on it over netlink, and setting its sysctls", true},
	{capNetRaw, "NET_RAW", "the packet sockets that answer ARP and NDP for layer2 pools", false},
	{capBPF, "BPF", "loading the XDP fast path of layer2 pools (without it, ARP and NDP are answered in userspace)", false},
	{capPerfmon, "PERFMON", "the XDP fast path of layer2 pools (without it, ARP and NDP are answered in userspace)", false},
}

// Check reads the agent's effective capabilities and returns an
// error naming each missing capability the agent cannot work without
// (NET_ADMIN) and what it is needed for; missing optional ones are logged.
// When the capabilities cannot be read, it logs that and lets the agent
// try.
func Check(log *slog.Logger) error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		log.Warn("cannot read this process's capabilities; starting anyway", "error", err)
		return nil
	}
	eff, err := parseCapEff(string(b))
	if err != nil {
		log.Warn("cannot read this process's capabilities; starting anyway", "error", err)
		return nil
	}
	portStart := -1 // unknown
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			portStart = n
		}
	}
	missing, warnings := privilegeProblems(eff, portStart)
	for _, w := range warnings {
		log.Warn(w)
	}
	return missing
}

// privilegeProblems compares an effective capability set with what the
// agent uses. portStart is net.ipv4.ip_unprivileged_port_start (-1:
// unknown).
func privilegeProblems(eff uint64, portStart int) (missing error, warnings []string) {
	has := func(bit uint) bool { return eff&(1<<bit) != 0 }
	var errs []error
	for _, c := range agentCapabilities {
		if has(c.bit) || ((c.bit == capBPF || c.bit == capPerfmon) && has(capSysAdmin)) {
			continue
		}
		if c.required {
			errs = append(errs, fmt.Errorf("missing capability CAP_%s, needed for %s; grant it (Kubernetes: securityContext.capabilities.add: [%q], as the DaemonSet in deploy/ does) or run as root",
				c.name, c.purpose, c.name))
			continue
		}
		warnings = append(warnings, fmt.Sprintf("capability CAP_%s is missing; it is needed for %s", c.name, c.purpose))
	}
	if !has(capNetBindService) && portStart > bgpPort {
		warnings = append(warnings, fmt.Sprintf("capability CAP_NET_BIND_SERVICE is missing and net.ipv4.ip_unprivileged_port_start is %d: BGP, when configured, cannot listen on port %d (grant NET_BIND_SERVICE, or set [global.config] port in gobgp.conf)",
			portStart, bgpPort))
	}
	return errors.Join(errs...), warnings
}

// parseCapEff returns the CapEff mask of a /proc/PID/status text.
func parseCapEff(status string) (uint64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "CapEff" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("parse CapEff %q: %w", strings.TrimSpace(v), err)
		}
		return n, nil
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}
