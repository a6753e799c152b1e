package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// GoBGPd is a gobgpd (built from the module proxy, see GoBGPBinaries)
// running on one host, with its gRPC API on a unix socket in the lab folder.
type GoBGPd struct {
	host *Host
	conf string
	sock string
	cli  string
	proc *Process
}

// GoBGPdOptions tunes StartGoBGPd; the zero value is fine.
type GoBGPdOptions struct {
	// ConfigType is the format of the config text: "toml" (default),
	// "yaml" or "json".
	ConfigType string
	// LogLevel is gobgpd's --log-level (default "info").
	LogLevel string
	// Args are extra gobgpd arguments (e.g. "--graceful-restart").
	Args []string
}

// StartGoBGPd writes conf to the lab folder and runs gobgpd inside the host's
// namespace (no pprof, no metrics listener), then waits until its API
// answers. Building gobgpd the first time takes minutes; see GoBGPBinaries.
func (h *Host) StartGoBGPd(conf string, opts ...GoBGPdOptions) (*GoBGPd, error) {
	var o GoBGPdOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.ConfigType == "" {
		o.ConfigType = "toml"
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	bin, cli, err := GoBGPBinaries()
	if err != nil {
		return nil, err
	}
	g := &GoBGPd{
		host: h,
		conf: filepath.Join(h.lab.dir, h.name+".gobgpd."+o.ConfigType),
		sock: filepath.Join(h.lab.dir, h.name+".gobgpd.sock"),
		cli:  cli,
	}
	if err := os.WriteFile(g.conf, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("gobgpd on %s: %w", h.name, err)
	}
	argv := []string{bin,
		"-f", g.conf, "-t", o.ConfigType,
		"--api-hosts", "unix://" + g.sock,
		"--pprof-disable", "--metrics-path=",
		"-l", o.LogLevel, "-p",
	}
	argv = append(argv, o.Args...)
	p, err := h.startReady("gobgpd", argv, 15*time.Second, 25*time.Millisecond, func() error {
		_, err := g.CLI("global")
		return err
	})
	if err != nil {
		return nil, err
	}
	g.proc = p
	return g, nil
}

// Process is the gobgpd process.
func (g *GoBGPd) Process() *Process { return g.proc }

// APISocket is the path of gobgpd's gRPC unix socket.
func (g *GoBGPd) APISocket() string { return g.sock }

// CLI runs the gobgp CLI against this gobgpd, e.g.
// CLI("global", "rib", "add", "203.0.113.10/32", "-a", "ipv4").
func (g *GoBGPd) CLI(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	full := append([]string{"--target", "unix://" + g.sock}, args...)
	out, err := exec.CommandContext(ctx, g.cli, full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("gobgp %s on %s: %w: %s", strings.Join(args, " "), g.host.name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

var gobgpStateRE = regexp.MustCompile(`BGP state = ([A-Za-z_]+)`)

// PeerState returns the session state of a neighbor as gobgp prints it
// ("ESTABLISHED", "ACTIVE", ...).
func (g *GoBGPd) PeerState(peer string) (string, error) {
	out, err := g.CLI("neighbor", peer)
	if err != nil {
		return "", err
	}
	m := gobgpStateRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("gobgpd on %s: no state for %s in %q", g.host.name, peer, out)
	}
	// v4 prints the enum's name, SESSION_STATE_ESTABLISHED.
	return strings.TrimPrefix(m[1], "SESSION_STATE_"), nil
}

// WaitEstablished waits until the session with peer is established.
func (g *GoBGPd) WaitEstablished(peer string, timeout time.Duration) error {
	return Poll(timeout, 100*time.Millisecond, func() error {
		s, err := g.PeerState(peer)
		if err != nil {
			return err
		}
		if !strings.EqualFold(s, "ESTABLISHED") {
			return fmt.Errorf("gobgpd on %s: neighbor %s is %s", g.host.name, peer, s)
		}
		return nil
	})
}

// Stop stops gobgpd (SIGTERM: it sends a Cease to its peers).
func (g *GoBGPd) Stop() error { return g.proc.Stop() }
