// Package privilege checks, at the agent's start, that the process holds
// the capabilities the agent uses (read from /proc/self/status): it refuses
// to start without NET_ADMIN and logs what the missing optional ones
// (NET_RAW, BPF, PERFMON, NET_BIND_SERVICE) take away.
package privilege
