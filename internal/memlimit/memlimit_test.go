package memlimit

import (
	"os"
	"path/filepath"
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
