package memlimit

import (
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCgroupMax reads memory.max the way a pod's container sees it: its
// own cgroup named in /proc/self/cgroup, else the root of its namespace.
func TestCgroupMax(t *testing.T) {
	for _, tc := range []struct {
		name, self string
		files      map[string]string
		want       int64
	}{
		{"own cgroup", "0::/kubepods/pod1/c1\n", map[string]string{"kubepods/pod1/c1/memory.max": "268435456\n", "memory.max": "max\n"}, 268435456},
		{"namespaced root", "0::/\n", map[string]string{"memory.max": "134217728\n"}, 134217728},
		{"no limit", "0::/\n", map[string]string{"memory.max": "max\n"}, 0},
		{"no cgroup v2", "", map[string]string{}, 0},
		{"path not visible, root's", "0::/elsewhere\n", map[string]string{"memory.max": "1048576\n"}, 1048576},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for p, s := range tc.files {
				write(t, filepath.Join(root, p), s)
			}
			self := filepath.Join(t.TempDir(), "cgroup")
			write(t, self, tc.self)
			got, _, err := cgroupMax(root, self)
			if err != nil || got != tc.want {
				t.Errorf("cgroupMax = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	root := t.TempDir()
	write(t, filepath.Join(root, "memory.max"), "lots\n")
	if _, _, err := cgroupMax(root, filepath.Join(root, "none")); err == nil {
		t.Error("a memory.max that is not a number: no error")
	}
}

// Set gives the runtime 80 % of memory.max, and leaves the runtime's
// limit alone when GOMEMLIMIT is set.
func TestSetFromCgroup(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	root := t.TempDir()
	write(t, filepath.Join(root, "memory.max"), "268435456\n")
	self := filepath.Join(root, "self")
	write(t, self, "0::/\n")
	log := slog.New(slog.DiscardHandler)

	t.Setenv("GOMEMLIMIT", "")
	const want = 214748364 // 80 % of 256 MiB, rounded down
	if got := set(log, root, self); got != want || debug.SetMemoryLimit(-1) != want {
		t.Errorf("set = %d, runtime limit %d; want %d", got, debug.SetMemoryLimit(-1), want)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "100MiB")
	if got := set(log, root, self); got != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("with GOMEMLIMIT: set = %d, runtime limit %d; want it untouched", got, debug.SetMemoryLimit(-1))
	}
}
