package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a background process running inside a host's namespace. Its
// stdout and stderr go to a log file in the lab folder.
type Process struct {
	host      *Host
	name      string
	argv      []string
	pid       int
	pgid      int
	startTime uint64
	logPath   string
	stopAfter time.Duration
	detached  bool // not our child (persistent lab seen from Teardown)

	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid once done is closed
}

// StartOption changes how Host.Start runs a process.
type StartOption func(*startConfig)

type startConfig struct {
	env         []string
	dir         string
	stopTimeout time.Duration
	stdin       string
}

// Env adds environment variables ("KEY=value") to the process's environment,
// which otherwise is the caller's.
func Env(kv ...string) StartOption {
	return func(c *startConfig) { c.env = append(c.env, kv...) }
}

// Dir sets the working folder of the process (default: the lab folder).
func Dir(dir string) StartOption {
	return func(c *startConfig) { c.dir = dir }
}

// StopTimeout sets how long Stop waits after SIGTERM before SIGKILL
// (default 5 s).
func StopTimeout(d time.Duration) StartOption {
	return func(c *startConfig) { c.stopTimeout = d }
}

// Stdin feeds the given text to the process's standard input (default:
// /dev/null).
func Stdin(s string) StartOption {
	return func(c *startConfig) { c.stdin = s }
}

// Name is the name given at Start.
func (p *Process) Name() string { return p.name }

// Host is the host the process runs on.
func (p *Process) Host() *Host { return p.host }

// PID is the process ID. The process leads its own process group.
func (p *Process) PID() int { return p.pid }

// LogPath is the file holding the process's stdout and stderr.
func (p *Process) LogPath() string { return p.logPath }

// Log returns what the process wrote so far.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", p.logPath, err)
	}
	return string(b)
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	if p.detached {
		return p.waitExit(0)
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its exit error
// (*exec.ExitError for a non-zero status or a signal).
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process's whole group.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := syscall.Kill(-p.pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to %s (pid %d): %w", sig, p.name, p.pid, err)
	}
	return nil
}

// Kill sends SIGKILL to the process group and waits for the process to exit.
func (p *Process) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if !p.waitExit(10 * time.Second) {
		return fmt.Errorf("kill %s (pid %d): still running after 10s", p.name, p.pid)
	}
	return nil
}

// Stop sends SIGTERM to the process group, and SIGKILL when the process has
// not exited after its stop timeout. It returns once the process is gone; the
// exit status of a stopped process is not an error.
func (p *Process) Stop() error {
	return p.stop(p.stopAfter)
}

func (p *Process) stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if p.waitExit(grace) {
		// The leader is gone; take down what is left of its group.
		_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
		return nil
	}
	return p.Kill()
}

// waitExit waits up to d for the process to exit.
func (p *Process) waitExit(d time.Duration) bool {
	if !p.detached {
		select {
		case <-p.done:
			return true
		case <-time.After(d):
			return false
		}
	}
	// Not our child: watch /proc until the PID is gone or reused.
	deadline := time.Now().Add(d)
	for {
		st, err := processStartTime(p.pid)
		if err != nil || st != p.startTime || isZombie(p.pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopAll stops processes in parallel, newest first within the grace.
func stopAll(procs []*Process, grace time.Duration) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func(p *Process) {
			defer wg.Done()
			_ = p.stop(grace)
		}(p)
	}
	wg.Wait()
}

// start runs argv inside the host's namespace in the background.
func (h *Host) start(name string, argv []string, cfg startConfig) (*Process, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("start %s on %s: empty command", name, h.name)
	}
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("start %s on %s: invalid process name", name, h.name)
	}
	if err := h.lab.checkOpen(); err != nil {
		return nil, fmt.Errorf("start %s on %s: %w", name, h.name, err)
	}
	logPath := filepath.Join(h.lab.dir, h.name+"."+name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s on %s: open log: %w", name, h.name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "### %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))

	full := append([]string{"netns", "exec", h.netns}, argv...)
	cmd := exec.Command(ipPath(), full...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if cfg.stdin != "" {
		cmd.Stdin = strings.NewReader(cfg.stdin)
	}
	cmd.Env = append(os.Environ(), cfg.env...)
	cmd.Dir = cfg.dir
	if cmd.Dir == "" {
		cmd.Dir = h.lab.dir
	}
	if h.lab.persistent {
		// Own session: the process outlives the caller and its terminal.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		err = cmd.Start()
	} else {
		// Own group, and killed if the test process dies. The parent-death
		// signal is tied to the forking thread, so fork from a thread that
		// lives as long as the process.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		onSpawnerThread(func() { err = cmd.Start() })
	}
	if err != nil {
		return nil, fmt.Errorf("start %s on %s: %w", name, h.name, err)
	}
	stop := cfg.stopTimeout
	if stop <= 0 {
		stop = 5 * time.Second
	}
	p := &Process{
		host:      h,
		name:      name,
		argv:      argv,
		pid:       cmd.Process.Pid,
		pgid:      cmd.Process.Pid,
		logPath:   logPath,
		stopAfter: stop,
		cmd:       cmd,
		done:      make(chan struct{}),
	}
	p.startTime, _ = processStartTime(p.pid)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := h.lab.addProcess(p); err != nil {
		_ = p.Kill()
		return nil, fmt.Errorf("start %s on %s: %w", name, h.name, err)
	}
	return p, nil
}

var spawner struct {
	once sync.Once
	ch   chan func()
}

// onSpawnerThread runs fn on one OS thread that never exits.
func onSpawnerThread(fn func()) {
	spawner.once.Do(func() {
		spawner.ch = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives on
			for f := range spawner.ch {
				f()
			}
		}()
	})
	done := make(chan struct{})
	spawner.ch <- func() {
		defer close(done)
		fn()
	}
	<-done
}

func ipPath() string {
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "ip"
}

// startReady starts a daemon (stopped with a 3 s grace) and waits until
// ready says it serves; when it does not, the daemon's last log lines are
// in the error.
func (h *Host) startReady(name string, argv []string, timeout, interval time.Duration, ready func() error) (*Process, error) {
	p, err := h.Start(name, argv, StopTimeout(3*time.Second))
	if err != nil {
		return nil, err
	}
	err = Poll(timeout, interval, func() error {
		if p.Exited() {
			return fmt.Errorf("exited: %w", ErrGiveUp)
		}
		return ready()
	})
	if err != nil {
		return nil, fmt.Errorf("%s on %s not ready: %w\n%s", name, h.name, err, Tail(p.Log(), 20))
	}
	return p, nil
}
