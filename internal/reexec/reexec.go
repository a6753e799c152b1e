// Package reexec carries a counter across a process's re-executions of
// itself (syscall.Exec of /proc/self/exe) through one environment
// variable.
package reexec

import (
	"strconv"
	"strings"
)

// Count reads the count a previous execution left in the value of its
// variable; anything unreadable (or absent) counts as 0.
func Count(value string) uint64 {
	n, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// WithCount returns env with key set to n (replaced if present), for the
// next execution.
func WithCount(env []string, key string, n uint64) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+strconv.FormatUint(n, 10))
}
