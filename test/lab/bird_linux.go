package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// BIRD is a BIRD 2 daemon running on one host.
type BIRD struct {
	host *Host
	conf string
	ctl  string
	proc *Process
}

// HaveBIRD reports whether bird and birdc are installed.
func HaveBIRD() error {
	for _, b := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("bird: %s %w (apt-get install bird2)", b, errNotInstalled)
		}
	}
	return nil
}

// StartBIRD writes conf to the lab folder, runs bird in the foreground
// inside the host's namespace with its control socket in the lab folder, and
// waits until birdc gets an answer. Add `log stderr all;` to conf to see
// BIRD's log in the process log.
func (h *Host) StartBIRD(conf string) (*BIRD, error) {
	if err := HaveBIRD(); err != nil {
		return nil, err
	}
	b := &BIRD{
		host: h,
		conf: filepath.Join(h.lab.dir, h.name+".bird.conf"),
		ctl:  filepath.Join(h.lab.dir, h.name+".bird.ctl"),
	}
	if err := os.WriteFile(b.conf, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("bird on %s: %w", h.name, err)
	}
	p, err := h.startReady("bird", []string{"bird", "-f", "-c", b.conf, "-s", b.ctl,
		"-P", filepath.Join(h.lab.dir, h.name+".bird.pid")}, 10*time.Second, 20*time.Millisecond, func() error {
		_, err := b.Birdc("show status")
		return err
	})
	if err != nil {
		return nil, err
	}
	b.proc = p
	return b, nil
}

// Process is the bird process.
func (b *BIRD) Process() *Process { return b.proc }

// ControlSocket is the path of bird's control socket.
func (b *BIRD) ControlSocket() string { return b.ctl }

// Birdc runs one birdc command ("show route", "show protocols all p1")
// and returns its output.
func (b *BIRD) Birdc(cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	args := append([]string{"-s", b.ctl}, strings.Fields(cmd)...)
	out, err := exec.CommandContext(ctx, "birdc", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("birdc %q on %s: %w: %s", cmd, b.host.name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ProtocolState returns the state column and info of a BIRD protocol as
// `show protocols` prints them ("up", "Established").
func (b *BIRD) ProtocolState(name string) (state, info string, err error) {
	out, err := b.Birdc("show protocols " + name)
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == name {
			// name proto table state since [info...]
			st := f[3]
			rest := ""
			if len(f) > 5 {
				rest = strings.Join(f[5:], " ")
			}
			// "since" may be a date and a time.
			if len(f) > 6 && strings.Contains(f[5], ":") {
				rest = strings.Join(f[6:], " ")
			}
			return st, rest, nil
		}
	}
	return "", "", fmt.Errorf("bird on %s: no protocol %s in %q", b.host.name, name, out)
}

// WaitEstablished waits until the BGP protocol name is up and Established.
func (b *BIRD) WaitEstablished(name string, timeout time.Duration) error {
	return Poll(timeout, 100*time.Millisecond, func() error {
		st, info, err := b.ProtocolState(name)
		if err != nil {
			return err
		}
		if st != "up" || !strings.Contains(info, "Established") {
			return fmt.Errorf("bird on %s: protocol %s is %s %s", b.host.name, name, st, info)
		}
		return nil
	})
}

// Stop stops bird.
func (b *BIRD) Stop() error { return b.proc.Stop() }
