package lab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Agent is a vipspeaker agent in standalone mode on a host: its config
// folder (vipspeaker.toml, gobgp.conf), its services folder (Service
// manifests) and its run folder (gobgp.sock, state), under <lab dir>/<host>.
type Agent struct {
	Host                           *Host
	Bin                            string // the vipspeaker binary (BuildBinary)
	ConfigDir, ServicesDir, RunDir string
	// LogLevel of the agent (default "debug").
	LogLevel string
	// Wrap is argv before the binary (setpriv ... --).
	Wrap []string
	// Proc is the agent last started, nil before.
	Proc   *Process
	starts int
}

// NewAgent makes the agent's folders on h; it starts nothing.
func NewAgent(h *Host, bin string) (*Agent, error) {
	base := filepath.Join(h.Lab().Dir(), h.Name())
	a := &Agent{Host: h, Bin: bin, ConfigDir: filepath.Join(base, "config"),
		ServicesDir: filepath.Join(base, "services"), RunDir: filepath.Join(base, "run")}
	for _, d := range []string{a.ConfigDir, a.ServicesDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// WriteConfig writes a file of the config folder ("gobgp.conf",
// "vipspeaker.toml") at once (rename), so the agent never reads half of it.
func (a *Agent) WriteConfig(name, content string) error {
	return WriteFileAtomic(filepath.Join(a.ConfigDir, name), content)
}

// WriteService writes s to the services folder as <name>.yaml.
func (a *Agent) WriteService(s ServiceFile) error {
	return WriteFileAtomic(filepath.Join(a.ServicesDir, s.Name+".yaml"), s.String())
}

// RemoveService removes <name>.yaml from the services folder.
func (a *Agent) RemoveService(name string) error {
	return os.Remove(filepath.Join(a.ServicesDir, name+".yaml"))
}

// Args is the agent's command line: Wrap, then `vipspeaker run` on its
// folders, node name = host name, then extra.
func (a *Agent) Args(extra ...string) []string {
	level := a.LogLevel
	if level == "" {
		level = "debug"
	}
	return append(append(slices.Clone(a.Wrap), a.Bin, "run", "--config-dir", a.ConfigDir, "--services-dir", a.ServicesDir,
		"--run-dir", a.RunDir, "--node-name", a.Host.Name(), "--log-level", level), extra...)
}

// Start starts the agent (again) as process vipspeaker-<n>, n counting the
// starts, and makes it Proc.
func (a *Agent) Start(extra ...string) (*Process, error) {
	a.starts++
	p, err := a.Host.Start(fmt.Sprintf("vipspeaker-%d", a.starts), a.Args(extra...))
	if err != nil {
		return nil, err
	}
	a.Proc = p
	return p, nil
}

// Starts says how often Start was called.
func (a *Agent) Starts() int { return a.starts }

// GoBGPSocket is the agent's GoBGP API socket, for the gobgp CLI.
func (a *Agent) GoBGPSocket() string { return filepath.Join(a.RunDir, "gobgp.sock") }

// WriteFileAtomic writes content to path through a temporary file and a
// rename.
func WriteFileAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Gateways returns the next hops of h's kernel route to prefix, sorted; nil
// when h has no route to it.
func (h *Host) Gateways(prefix string) ([]string, error) {
	r, ok, err := h.KernelRoute(prefix)
	if err != nil || !ok {
		return nil, err
	}
	out := make([]string, 0, len(r.Gateways))
	for _, g := range r.Gateways {
		out = append(out, g.String())
	}
	slices.Sort(out)
	return out, nil
}

// HostPrefix is the prefix of a route to a alone: a/32 or a/128.
func HostPrefix(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

// WaitGateways waits until h's kernel routes prefix via exactly gws (in any
// order); no gws: until it has no route to prefix.
func (h *Host) WaitGateways(prefix string, timeout time.Duration, gws ...string) error {
	want := append([]string(nil), gws...)
	slices.Sort(want)
	return Poll(timeout, 20*time.Millisecond, func() error {
		got, err := h.Gateways(prefix)
		switch {
		case err != nil:
			return err
		case len(want) == 0 && got != nil:
			return fmt.Errorf("%s kernel still routes %s via %v", h.Name(), prefix, got)
		case len(want) > 0 && got == nil:
			return fmt.Errorf("%s kernel has no route to %s", h.Name(), prefix)
		case !slices.Equal(got, want):
			return fmt.Errorf("%s kernel route to %s via %v, want via %v", h.Name(), prefix, got, want)
		}
		return nil
	})
}

// WatchKernelRoutes reads h's main routing table every interval in a
// goroutine and hands each successful read, with the time since the watch
// began, to fn. The returned stop ends the watch and returns once fn has
// run for the last time; calling it again does nothing.
func (h *Host) WatchKernelRoutes(interval time.Duration, fn func(since time.Duration, rs []KernelRoute)) (stop func()) {
	start, quit, done := time.Now(), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if rs, err := h.KernelRoutes(); err == nil {
				fn(time.Since(start), rs)
			}
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-done
	}
}
