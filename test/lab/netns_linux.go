package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var (
	netnsDirOnce sync.Once
	netnsDirErr  error
)

// PrepareNetnsDir makes /var/run/netns a shared mount point of its own, as
// `ip netns add` does the first time it runs on a machine, before any
// namespace is mounted in it. Otherwise the first `ip netns add` of
// anyone else (a test, a CNI plugin) bind-mounts the directory over itself
// while namespaces of ours are mounted in it: ours end up beneath the new
// mount, and deleting them fails with "device or resource busy" (seen on a
// freshly booted machine, where nothing had run `ip netns` yet).
func PrepareNetnsDir() error {
	netnsDirOnce.Do(func() {
		if err := os.MkdirAll(netnsDir, 0o755); err != nil {
			netnsDirErr = err
			return
		}
		for bound := false; ; bound = true {
			err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
			if err == nil {
				return
			}
			if !errors.Is(err, unix.EINVAL) || bound {
				netnsDirErr = fmt.Errorf("make %s a shared mount: %w", netnsDir, err)
				return
			}
			// Not a mount point yet: make it one.
			if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				netnsDirErr = fmt.Errorf("bind-mount %s onto itself: %w", netnsDir, err)
				return
			}
		}
	})
	return netnsDirErr
}

// createNamespace makes a named namespace on a throw-away locked thread, so
// no goroutine of the caller ever changes namespace.
func createNamespace(name string) (netns.NsHandle, error) {
	if err := PrepareNetnsDir(); err != nil {
		return netns.None(), err
	}
	var (
		h   netns.NsHandle
		err error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread's namespace changes and is never restored: it stays
		// locked and exits with the goroutine.
		runtime.LockOSThread()
		h, err = netns.NewNamed(name)
	}()
	<-done
	if err != nil {
		return netns.None(), fmt.Errorf("create namespace %s: %w", name, err)
	}
	return h, nil
}

// inNamespace runs fn on a locked thread switched into ns, and switches back.
// A thread that cannot switch back is left locked, so it dies with its
// goroutine instead of running other code in the wrong namespace.
func inNamespace(ns netns.NsHandle, fn func() error) error {
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, gerr := netns.Get()
		if gerr != nil {
			err = fmt.Errorf("get current namespace: %w", gerr)
			return
		}
		defer orig.Close()
		if serr := netns.Set(ns); serr != nil {
			err = fmt.Errorf("enter namespace: %w", serr)
			return
		}
		err = fn()
		if serr := netns.Set(orig); serr != nil {
			return // thread stays locked and exits
		}
		runtime.UnlockOSThread()
	}()
	<-done
	return err
}

// deleteNamespace removes a named namespace; a missing one is not an error.
func deleteNamespace(name string) error {
	p := filepath.Join(netnsDir, name)
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := netns.DeleteNamed(name); err != nil {
		// An earlier half-done delete can leave a plain file behind.
		if rerr := os.Remove(p); rerr == nil || errors.Is(rerr, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

type nsID struct{ dev, ino uint64 }

// killInNamespaces SIGKILLs every process whose network namespace is one of
// the named namespaces: daemons that forked away from the processes the lab
// started, or anything started by hand with `ip netns exec`.
func killInNamespaces(names []string) []error {
	ids := map[nsID]string{}
	for _, n := range names {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(netnsDir, n), &st); err != nil {
			continue
		}
		ids[nsID{uint64(st.Dev), st.Ino}] = n
	}
	if len(ids) == 0 {
		return nil
	}
	self := os.Getpid()
	var errs []error
	for round := 0; round < 20; round++ {
		found := 0
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return []error{fmt.Errorf("list processes: %w", err)}
		}
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self {
				continue
			}
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st); err != nil {
				continue
			}
			if _, ok := ids[nsID{uint64(st.Dev), st.Ino}]; !ok {
				continue
			}
			if isZombie(pid) {
				continue
			}
			found++
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
			}
		}
		if found == 0 {
			return errs
		}
		time.Sleep(25 * time.Millisecond)
	}
	return append(errs, fmt.Errorf("processes still running in %s", strings.Join(names, ", ")))
}

// procStat returns the fields of /proc/PID/stat after the command name.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

func isZombie(pid int) bool {
	f, err := procStat(pid)
	return err == nil && len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// processStartTime is field 22 of /proc/PID/stat: the start time in clock
// ticks since boot. With the PID it identifies a process for good.
func processStartTime(pid int) (uint64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	// Fields after ')' start at field 3 (state), so field 22 is index 19.
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// frrDirsWithPrefix lists FRR's per-namespace folders whose name starts
// with prefix.
func frrDirsWithPrefix(prefix string) []string {
	var out []string
	for _, root := range []string{frrEtcRoot, frrRunRoot} {
		ents, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
				out = append(out, filepath.Join(root, e.Name()))
			}
		}
	}
	return out
}

// RoomForNeighbours raises the kernel's neighbour-table limits
// (net.ipv{4,6}.neigh.default.gc_thresh1/2/3, written in the initial
// network namespace) to at least entries, restoring them when the test
// ends. The table is one for all namespaces, 1,024 entries by default: a
// lab of fifty hosts that all talk to each other (the layer2 membership is
// a full mesh) fills it, and a host that starts then gets "no route to
// host" to everything it has not talked to yet (dmesg: "neighbor table
// overflow"). On a real machine each node has its own table.
func RoomForNeighbours(t testing.TB, entries int) {
	t.Helper()
	for _, fam := range []string{"ipv4", "ipv6"} {
		for i, want := range []int{entries / 4, entries / 2, entries} {
			p := fmt.Sprintf("/proc/sys/net/%s/neigh/default/gc_thresh%d", fam, i+1)
			old, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("neighbour-table limit: %v", err)
			}
			have, err := strconv.Atoi(strings.TrimSpace(string(old)))
			if err != nil || have >= want {
				continue
			}
			if err := os.WriteFile(p, []byte(strconv.Itoa(want)), 0o644); err != nil {
				t.Fatalf("neighbour-table limit: %v", err)
			}
			t.Cleanup(func() { _ = os.WriteFile(p, old, 0o644) })
		}
	}
}
