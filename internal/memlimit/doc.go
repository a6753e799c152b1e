// Package memlimit gives the Go runtime a soft memory limit from the
// container's: at start, unless GOMEMLIMIT is set, the agent's garbage
// collector works harder as the heap nears 80 % of the cgroup's memory.max,
// so a burst (thousands of Services at once) is collected before the
// kernel's OOM killer ends the pod. Outside a memory-limited cgroup it does
// nothing.
package memlimit
