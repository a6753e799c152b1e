package memlimit

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// Fraction of the cgroup's limit the Go runtime is told to keep under: the
// rest is for what the runtime does not count (the binary's pages, thread
// stacks outside the heap, eBPF maps) and for the collector's lag.
const Fraction = 0.8

// cgroupRoot is where the process's cgroup v2 hierarchy is mounted.
const cgroupRoot = "/sys/fs/cgroup"

// Set applies Fraction of the limit the cgroup v2 files under root say
// (memory.max of the process's own cgroup, read from /proc/self/cgroup,
// else of root itself as a container sees its own) unless env GOMEMLIMIT
// is set, and logs what it did. It returns the limit set, 0 when none.
func Set(log *slog.Logger) int64 { return set(log, cgroupRoot, "/proc/self/cgroup") }

func set(log *slog.Logger, root, selfCgroup string) int64 {
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok && v != "" {
		log.Debug("GOMEMLIMIT set; the cgroup's memory limit is not read", "gomemlimit", v)
		return 0
	}
	max, file, err := cgroupMax(root, selfCgroup)
	if err != nil || max <= 0 {
		return 0
	}
	limit := int64(float64(max) * Fraction)
	debug.SetMemoryLimit(limit)
	log.Info("Go memory limit from the cgroup", "memory_max", max, "file", file, "go_memory_limit", limit)
	return limit
}

// cgroupMax reads memory.max of the cgroup selfCgroup names (the
// "0::/path" line of /proc/self/cgroup) under root, else root's own. It
// returns 0 for "max" (no limit) or when no file is there.
func cgroupMax(root, selfCgroup string) (int64, string, error) {
	var candidates []string
	if data, err := os.ReadFile(selfCgroup); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if p, ok := strings.CutPrefix(line, "0::"); ok {
				candidates = append(candidates, filepath.Join(root, filepath.Clean("/"+p), "memory.max"))
			}
		}
	}
	candidates = append(candidates, filepath.Join(root, "memory.max"))
	for _, f := range candidates {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := parseMax(string(data))
		if err != nil {
			return 0, f, fmt.Errorf("%s: %w", f, err)
		}
		return v, f, nil
	}
	return 0, "", nil
}

// parseMax reads a memory.max value: bytes, or "max" for none (0).
func parseMax(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	return int64(min(v, math.MaxInt64)), nil
}
