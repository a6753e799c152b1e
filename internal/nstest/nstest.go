// Package nstest gives privileged tests a fresh network namespace of their
// own, created on a throw-away locked OS thread, so a test never switches
// its own goroutine's namespace and tests can run in parallel.
//
// A test that cannot run here (not root, no namespaces) skips with the
// reason; with CI=true in the environment such a skip is a failure, so
// nothing silently stops being tested.
package nstest

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
)

// Skip skips the test with the reason, or fails it when CI=true.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run here and CI=true forbids skipping: %s", msg)
	}
	t.Skip(msg)
}

// RequireRoot skips (or, under CI=true, fails) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root for network namespaces")
	}
}

var (
	seq   atomic.Uint64
	sweep sync.Once
)

// sweepStale removes the namespaces that test processes which died without
// cleaning up (kill -9, a timeout's panic) left under /var/run/netns: the
// names carry the pid of their process, so only dead processes' are taken.
func sweepStale(t testing.TB) {
	ents, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range ents {
		var pid, n int
		if c, _ := fmt.Sscanf(e.Name(), "vst%d-%d", &pid, &n); c != 2 || e.Name() != fmt.Sprintf("vst%d-%d", pid, n) {
			continue
		}
		if pid == os.Getpid() || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue
		}
		if err := netns.DeleteNamed(e.Name()); err != nil {
			t.Logf("remove stale namespace %s: %v", e.Name(), err)
		}
	}
}

// NS is a named network namespace that lives for one test.
type NS struct {
	// Name is the namespace's name under /var/run/netns, so `ip netns exec
	// NAME` reaches it too.
	Name string
	// Handle is an open descriptor of the namespace.
	Handle netns.NsHandle
}

// Path is the namespace's bind-mount path.
func (n *NS) Path() string { return "/var/run/netns/" + n.Name }

// New creates a fresh named network namespace, with loopback up, and removes
// it when the test ends. The first New of a process also removes namespaces
// left by test processes that are gone.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	sweep.Do(func() { sweepStale(t) })
	name := fmt.Sprintf("vst%d-%d", os.Getpid(), seq.Add(1))
	var (
		h   netns.NsHandle
		err error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// This thread's namespace is changed and never restored; the
		// thread exits with the goroutine because it stays locked.
		runtime.LockOSThread()
		h, err = netns.NewNamed(name)
	}()
	<-done
	if err != nil {
		Skip(t, "create network namespace: %v", err)
	}
	ns := &NS{Name: name, Handle: h}
	t.Cleanup(func() {
		ns.Handle.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Logf("delete namespace %s: %v", name, err)
		}
	})
	if err := ns.Do(func() error { return setLoUp() }); err != nil {
		t.Fatalf("loopback up in %s: %v", name, err)
	}
	return ns
}

// Do runs f on a locked OS thread that has entered the namespace. The
// thread is thrown away afterwards.
func (n *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocked on purpose: the thread dies with this goroutine.
		if err := netns.Set(n.Handle); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", n.Name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
