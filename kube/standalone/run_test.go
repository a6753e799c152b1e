package standalone

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vipspeaker/vipspeaker/routing"
)

// waitTime bounds every wait for the watcher; changes land within
// debounce (20ms) in practice.
const waitTime = 10 * time.Second

type recorder struct {
	mu     sync.Mutex
	calls  [][]routing.VIP
	notify chan struct{}
}

func (r *recorder) apply(v []routing.VIP) {
	r.mu.Lock()
	r.calls = append(r.calls, v)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) snapshot() [][]routing.VIP {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]routing.VIP(nil), r.calls...)
}

// waitFor waits until the last applied set equals want.
func (r *recorder) waitFor(t *testing.T, what string, want []routing.VIP) {
	t.Helper()
	deadline := time.NewTimer(waitTime)
	defer deadline.Stop()
	for {
		calls := r.snapshot()
		if len(calls) > 0 && cmp.Diff(want, calls[len(calls)-1], addrCmp) == "" {
			return
		}
		select {
		case <-r.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			var last []routing.VIP
			if len(calls) > 0 {
				last = calls[len(calls)-1]
			}
			t.Fatalf("%s: not applied within %s (-want +last applied):\n%s", what, waitTime, cmp.Diff(want, last, addrCmp))
		}
	}
}

func startRun(t *testing.T, dir string) *recorder {
	t.Helper()
	s, err := New(Options{Dir: dir, Logger: testLogger(t), Debounce: 20 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{notify: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, r.apply) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(waitTime):
			t.Errorf("Run did not return after cancel")
		}
	})
	return r
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRunWatchesChanges(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), svc("a", "203.0.113.10"))
	r := startRun(t, dir)
	a10 := vip("203.0.113.10", "default/a", "")
	r.waitFor(t, "initial load", []routing.VIP{a10})

	write(t, filepath.Join(dir, "b.yaml"), svc("b", "2001:db8:100::10"))
	b := vip("2001:db8:100::10", "default/b", "")
	r.waitFor(t, "create", []routing.VIP{a10, b})

	write(t, filepath.Join(dir, "a.yaml"), svc("a", "203.0.113.11"))
	a11 := vip("203.0.113.11", "default/a", "")
	r.waitFor(t, "modify", []routing.VIP{a11, b})

	// An editor's atomic save: write a temporary file, rename it over.
	write(t, filepath.Join(dir, ".a.yaml.tmp"), svc("a", "203.0.113.12"))
	if err := os.Rename(filepath.Join(dir, ".a.yaml.tmp"), filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	a12 := vip("203.0.113.12", "default/a", "")
	r.waitFor(t, "rename over", []routing.VIP{a12, b})

	// Renamed to a name that is not a manifest: its Service goes.
	if err := os.Rename(filepath.Join(dir, "a.yaml"), filepath.Join(dir, "a.yaml.disabled")); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "rename away", []routing.VIP{b})

	// And back under another manifest name.
	if err := os.Rename(filepath.Join(dir, "a.yaml.disabled"), filepath.Join(dir, "a.yml")); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "rename back", []routing.VIP{a12, b})

	// A broken edit keeps what was good.
	write(t, filepath.Join(dir, "b.yaml"), "apiVersion: v1\nkind: [\n")
	write(t, filepath.Join(dir, "c.yaml"), svc("c", "203.0.113.13"))
	r.waitFor(t, "broken edit", []routing.VIP{a12, vip("203.0.113.13", "default/c", ""), b})

	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "delete", []routing.VIP{a12, vip("203.0.113.13", "default/c", "")})
}

// TestRunConfigMapSwap follows the kubelet's ConfigMap volume updates: the
// files are symlinks through "..data", which is swapped atomically to a new
// timestamped directory.
func TestRunConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, body string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "svc.yaml"), body)
	}
	version("..2026_11_26_10_00_00.1", svc("web", "203.0.113.10"))
	if err := os.Symlink("..2026_11_26_10_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/svc.yaml", filepath.Join(dir, "svc.yaml")); err != nil {
		t.Fatal(err)
	}
	r := startRun(t, dir)
	r.waitFor(t, "initial", []routing.VIP{vip("203.0.113.10", "default/web", "")})

	version("..2026_11_26_10_01_00.2", svc("web", "203.0.113.10,2001:db8:100::10"))
	if err := os.Symlink("..2026_11_26_10_01_00.2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_11_26_10_00_00.1")); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "..data swap", []routing.VIP{
		vip("203.0.113.10", "default/web", ""),
		vip("2001:db8:100::10", "default/web", ""),
	})
}

// TestRunDirectoryLater: a directory that does not exist yet is polled for
// and nothing is applied until it exists; one that disappears keeps the
// VIPs until it is back.
func TestRunDirectoryLater(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "services")
	r := startRun(t, dir)

	// Build the directory elsewhere and move it in, so it appears complete.
	staging := filepath.Join(parent, "staging")
	if err := os.Mkdir(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(staging, "a.yaml"), svc("a", "203.0.113.10"))
	if n := len(r.snapshot()); n != 0 {
		t.Fatalf("%d applies before the directory existed, want 0", n)
	}
	if err := os.Rename(staging, dir); err != nil {
		t.Fatal(err)
	}
	a10 := vip("203.0.113.10", "default/a", "")
	r.waitFor(t, "directory appears", []routing.VIP{a10})

	// Gone: nothing is withdrawn.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	// Back with other content: the watch is set up again.
	if err := os.Mkdir(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(staging, "b.yaml"), svc("b", "203.0.113.11"))
	if err := os.Rename(staging, dir); err != nil {
		t.Fatal(err)
	}
	b11 := vip("203.0.113.11", "default/b", "")
	r.waitFor(t, "directory back", []routing.VIP{b11})
	// The new directory is watched, not just read once.
	write(t, filepath.Join(dir, "c.yaml"), svc("c", "203.0.113.12"))
	r.waitFor(t, "change in the new directory", []routing.VIP{b11, vip("203.0.113.12", "default/c", "")})
	for i, c := range r.snapshot() {
		if len(c) == 0 {
			t.Errorf("apply %d was empty: a vanished directory withdrew the VIPs", i)
		}
	}
}
