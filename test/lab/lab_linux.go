package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
)

// netnsDir is where `ip netns` and vishvananda/netns keep named namespaces.
const netnsDir = "/var/run/netns"

// testPrefix starts the namespace names of test-mode labs: vl<pid>-<n>-<node>.
const testPrefix = "vl"

// stateFile is the file in a persistent lab's state folder that records what
// the lab created.
const stateFile = "lab.json"

var (
	nameRE     = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	testNameRE = regexp.MustCompile(`^` + testPrefix + `([0-9]+)-[0-9]+-`)
)

// Lab is a set of network namespaces (hosts), the links between them and the
// processes running inside them. Everything it created goes away at Close.
type Lab struct {
	t          testing.TB // nil in persistent mode
	prefix     string     // namespace name prefix, ends in "-"
	dir        string     // logs, configs, sockets
	persistent bool
	stateDir   string

	mu     sync.Mutex
	hosts  map[string]*Host
	order  []*Host
	procs  []*Process
	dirs   []string // extra folders to remove at Close (FRR's)
	closed atomic.Bool
	seq    int // for generated interface names
}

// Labs live in one registry so a SIGINT or SIGTERM can tear them all down.
var (
	labSeq     atomic.Int64
	registryMu sync.Mutex
	registry   = map[*Lab]struct{}{}
	signalOnce sync.Once
	sweepMu    sync.Mutex
)

// New creates a lab for one test. Namespaces are named
// vl<pid>-<n>-<node>; all of it is removed in t.Cleanup, also when the test
// fails. When the test failed, the tail of every process log is printed and
// the lab folder (logs, configs) is kept; its path is logged.
//
// New first removes what earlier, dead test processes left behind
// (SweepStale); the first New of a process also installs a SIGINT/SIGTERM handler that tears down every
// live lab and exits, so Ctrl-C leaves nothing behind either.
func New(t testing.TB) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		nstest.Skip(t, "the lab needs root for network namespaces")
	}
	if err := SweepStale(); err != nil {
		t.Logf("lab: sweep stale namespaces: %v", err)
	}
	signalOnce.Do(installSignalHandler)
	n := labSeq.Add(1)
	prefix := fmt.Sprintf("%s%d-%d-", testPrefix, os.Getpid(), n)
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("lab: create folder: %v", err)
	}
	l := &Lab{t: t, prefix: prefix, dir: dir, hosts: map[string]*Host{}}
	register(l)
	t.Cleanup(func() {
		failed := t.Failed()
		if failed {
			l.printLogTails(t, 40)
		}
		if err := l.close(!failed); err != nil {
			t.Errorf("lab: teardown: %v", err)
		}
		if failed {
			t.Logf("lab: logs and configs kept in %s", dir)
		}
	})
	return l
}

// NewPersistent creates a lab that outlives the calling process, for
// `make demo`. Namespaces are named <name>-<node>; processes are started in
// their own session so they keep running after the caller exits. What the
// lab creates (namespaces, process IDs, FRR folders) is recorded in
// stateDir/lab.json, and logs, configs and sockets live in stateDir, so
// Teardown(name, stateDir) removes everything from any process.
//
// stateDir must be missing, empty, or the state folder of an earlier lab of
// the same name, which is torn down first.
func NewPersistent(name, stateDir string) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: needs root for network namespaces")
	}
	if !nameRE.MatchString(name) || len(name) > 24 {
		return nil, fmt.Errorf("lab: invalid name %q (letters, digits, '_', '.', '-'; at most 24)", name)
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("lab %s: state folder %s: %w", name, stateDir, err)
	}
	stateDir = abs
	if st, err := readState(stateDir); err == nil {
		if st.Name != name {
			return nil, fmt.Errorf("lab %s: %s holds lab %q", name, stateDir, st.Name)
		}
		if err := Teardown(name, stateDir); err != nil {
			return nil, fmt.Errorf("lab %s: tear down the earlier lab: %w", name, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lab %s: %w", name, err)
	} else if ents, err := os.ReadDir(stateDir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("lab %s: state folder %s is not empty and holds no %s", name, stateDir, stateFile)
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab %s: create state folder: %w", name, err)
	}
	l := &Lab{
		prefix:     name + "-",
		dir:        stateDir,
		persistent: true,
		stateDir:   stateDir,
		hosts:      map[string]*Host{},
	}
	if err := l.saveState(); err != nil {
		return nil, err
	}
	return l, nil
}

// Dir is the lab's folder: process logs, generated configs and sockets.
func (l *Lab) Dir() string { return l.dir }

// Prefix is the prefix of every namespace name of the lab.
func (l *Lab) Prefix() string { return l.prefix }

// Hosts returns the lab's hosts in creation order.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.order...)
}

// Processes returns every process started in the lab, in start order.
func (l *Lab) Processes() []*Process {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Process(nil), l.procs...)
}

// Close stops every process and deletes every namespace of the lab. In test
// mode it runs by itself at the end of the test; calling it earlier is fine.
// For a persistent lab it is Teardown; the state folder is removed.
func (l *Lab) Close() error {
	return l.close(true)
}

func (l *Lab) close(removeDir bool) error {
	l.mu.Lock()
	if l.closed.Swap(true) {
		l.mu.Unlock()
		return nil
	}
	procs := append([]*Process(nil), l.procs...)
	hosts := append([]*Host(nil), l.order...)
	dirs := append([]string(nil), l.dirs...)
	l.mu.Unlock()
	defer unregister(l)

	var errs []error
	stopAll(procs, 2*time.Second)
	names := make([]string, 0, len(hosts))
	for _, h := range hosts {
		names = append(names, h.netns)
	}
	errs = append(errs, killInNamespaces(names)...)
	for _, h := range hosts {
		h.closeHandles()
	}
	for _, n := range names {
		if err := deleteNamespace(n); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	if removeDir {
		if err := os.RemoveAll(l.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkOpen reports an error when the lab was already closed.
func (l *Lab) checkOpen() error {
	if l.closed.Load() {
		return errors.New("lab is closed")
	}
	return nil
}

func (l *Lab) addProcess(p *Process) error {
	l.mu.Lock()
	if l.closed.Load() {
		// Close has taken its list already: this one would be missed.
		l.mu.Unlock()
		return errors.New("lab is closed")
	}
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return l.saveState()
}

func (l *Lab) addDir(d string) error {
	l.mu.Lock()
	l.dirs = append(l.dirs, d)
	l.mu.Unlock()
	return l.saveState()
}

func (l *Lab) nextSeq() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	return l.seq
}

func (l *Lab) printLogTails(t testing.TB, lines int) {
	t.Helper()
	seen := map[string]bool{}
	for _, p := range l.Processes() {
		if seen[p.logPath] {
			continue
		}
		seen[p.logPath] = true
		t.Logf("--- %s on %s: last %d lines of %s ---\n%s", p.name, p.host.name, lines, p.logPath, Tail(p.Log(), lines))
	}
}

// Tail is the last lines of s (all of it when shorter).
func Tail(s string, lines int) string {
	s = strings.TrimRight(s, "\n")
	idx := len(s)
	for i := 0; i < lines; i++ {
		j := strings.LastIndexByte(s[:idx], '\n')
		if j < 0 {
			return s
		}
		idx = j
	}
	return s[idx+1:]
}

// state is what a persistent lab records in lab.json.
type state struct {
	Name       string      `json:"name"`
	Prefix     string      `json:"prefix"`
	Namespaces []string    `json:"namespaces"`
	Processes  []procState `json:"processes"`
	Dirs       []string    `json:"dirs,omitempty"`
}

type procState struct {
	Host  string `json:"host"`
	Name  string `json:"name"`
	PID   int    `json:"pid"`
	Start uint64 `json:"start"` // start time in clock ticks, guards against PID reuse
}

func (l *Lab) saveState() error {
	if !l.persistent {
		return nil
	}
	l.mu.Lock()
	st := state{Name: strings.TrimSuffix(l.prefix, "-"), Prefix: l.prefix, Dirs: append([]string(nil), l.dirs...)}
	for _, h := range l.order {
		st.Namespaces = append(st.Namespaces, h.netns)
	}
	for _, p := range l.procs {
		st.Processes = append(st.Processes, procState{Host: p.host.name, Name: p.name, PID: p.pid, Start: p.startTime})
	}
	l.mu.Unlock()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("lab %s: encode state: %w", st.Name, err)
	}
	tmp := filepath.Join(l.stateDir, stateFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("lab %s: write state: %w", st.Name, err)
	}
	if err := os.Rename(tmp, filepath.Join(l.stateDir, stateFile)); err != nil {
		return fmt.Errorf("lab %s: write state: %w", st.Name, err)
	}
	return nil
}

func readState(stateDir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, stateFile))
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(stateDir, stateFile), err)
	}
	return &st, nil
}

// Teardown removes a persistent lab from any process: it kills the recorded
// processes (checking that each PID still is the process that was started),
// kills whatever else runs inside the lab's namespaces, deletes every
// namespace whose name starts with name+"-", removes the lab's FRR folders
// and the state folder. A lab that is already gone is not an error.
func Teardown(name, stateDir string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("lab: invalid name %q", name)
	}
	prefix := name + "-"
	var errs []error
	st, err := readState(stateDir)
	switch {
	case err == nil:
		if st.Name != name {
			return fmt.Errorf("lab %s: %s holds lab %q", name, stateDir, st.Name)
		}
	case errors.Is(err, os.ErrNotExist):
		st = &state{}
	default:
		errs = append(errs, err)
		st = &state{}
	}
	var procs []*Process
	for _, ps := range st.Processes {
		if ps.PID <= 0 {
			continue
		}
		if start, err := processStartTime(ps.PID); err != nil || start != ps.Start {
			continue // gone, or the PID now belongs to someone else
		}
		procs = append(procs, &Process{name: ps.Name, pid: ps.PID, pgid: ps.PID, startTime: ps.Start, detached: true})
	}
	stopAll(procs, 3*time.Second)
	names := map[string]bool{}
	for _, n := range st.Namespaces {
		names[n] = true
	}
	if ents, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				names[e.Name()] = true
			}
		}
	}
	list := make([]string, 0, len(names))
	for n := range names {
		list = append(list, n)
	}
	sort.Strings(list)
	errs = append(errs, killInNamespaces(list)...)
	for _, n := range list {
		if err := deleteNamespace(n); err != nil {
			errs = append(errs, err)
		}
	}
	dirs := append([]string(nil), st.Dirs...)
	dirs = append(dirs, frrDirsWithPrefix(prefix)...)
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat(filepath.Join(stateDir, stateFile)); err == nil {
		if err := os.RemoveAll(stateDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SweepStale removes what test-mode labs of dead test processes left behind:
// namespaces named vl<pid>-..., the processes still running in them, their
// FRR folders and (after an hour) their lab folders. New calls it.
func SweepStale() error {
	sweepMu.Lock()
	defer sweepMu.Unlock()
	var errs []error
	dead := map[string]bool{} // pid -> dead?
	isDead := func(pid string) bool {
		if d, ok := dead[pid]; ok {
			return d
		}
		var n int
		if _, err := fmt.Sscanf(pid, "%d", &n); err != nil || n <= 0 {
			dead[pid] = false
			return false
		}
		err := syscall.Kill(n, 0)
		d := errors.Is(err, syscall.ESRCH) || (err == nil && isZombie(n))
		dead[pid] = d
		return d
	}
	var stale []string
	if ents, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range ents {
			m := testNameRE.FindStringSubmatch(e.Name())
			if m != nil && isDead(m[1]) {
				stale = append(stale, e.Name())
			}
		}
	}
	errs = append(errs, killInNamespaces(stale)...)
	for _, n := range stale {
		if err := deleteNamespace(n); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range frrDirsWithPrefix(testPrefix) {
		if m := testNameRE.FindStringSubmatch(filepath.Base(d)); m != nil && isDead(m[1]) {
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Lab folders of dead processes are kept for a while: a failed test
	// points at its logs there.
	if ents, err := os.ReadDir(os.TempDir()); err == nil {
		for _, e := range ents {
			m := testNameRE.FindStringSubmatch(e.Name())
			if m == nil || !e.IsDir() || !isDead(m[1]) {
				continue
			}
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
				_ = os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
			}
		}
	}
	// Per-process binary folders of BuildBinary.
	if ents, err := os.ReadDir(binRoot()); err == nil {
		for _, e := range ents {
			if e.IsDir() && isDead(e.Name()) {
				_ = os.RemoveAll(filepath.Join(binRoot(), e.Name()))
			}
		}
	}
	return errors.Join(errs...)
}

func register(l *Lab) {
	registryMu.Lock()
	registry[l] = struct{}{}
	registryMu.Unlock()
}

func unregister(l *Lab) {
	registryMu.Lock()
	delete(registry, l)
	registryMu.Unlock()
}

func installSignalHandler() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-ch
		registryMu.Lock()
		labs := make([]*Lab, 0, len(registry))
		for l := range registry {
			labs = append(labs, l)
		}
		registryMu.Unlock()
		fmt.Fprintf(os.Stderr, "lab: %v: tearing down %d lab(s)\n", sig, len(labs))
		for _, l := range labs {
			if err := l.close(true); err != nil {
				fmt.Fprintf(os.Stderr, "lab: teardown %s: %v\n", l.prefix, err)
			}
		}
		code := 130
		if sig == syscall.SIGTERM {
			code = 143
		}
		os.Exit(code)
	}()
}
