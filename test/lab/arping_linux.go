package lab

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Who answers ARP on a segment, asked with the client's own tools: the
// layer2 suites' "which node owns this VIP".

// ARPing sends count ARP requests for addr from h's interface ifName
// (iputils arping, interval apart, 3 s at most) and returns the sender MAC
// of every reply, in order.
func (h *Host) ARPing(ifName, addr string, count int, interval time.Duration) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, _ := h.Run(ctx, "arping", "-i", ifName, "-c", strconv.Itoa(count),
		"-W", strconv.FormatFloat(interval.Seconds(), 'f', -1, 64), "-w", "3", "-r", addr)
	var got []string
	for _, line := range strings.Split(out, "\n") {
		if hw, err := net.ParseMAC(strings.TrimSpace(line)); err == nil && len(hw) == 6 {
			got = append(got, hw.String())
		}
	}
	return got
}

// MACs returns the distinct MAC addresses among the words of a tool's
// output (arping -r, ndisc6), in order.
func MACs(out string) []string {
	var ms []string
	for _, f := range strings.Fields(out) {
		if hw, err := net.ParseMAC(f); err == nil && len(hw) == 6 && !slices.Contains(ms, hw.String()) {
			ms = append(ms, hw.String())
		}
	}
	return ms
}

// WaitOwner waits until resolve(addr) gives exactly one distinct MAC and
// it is one of macs (the nodes'), and returns its index in macs. resolve
// asks the segment (Host.ARPing, ndisc6 through MACs).
func WaitOwner(t testing.TB, timeout time.Duration, addr string, macs []string, resolve func(addr string) []string) int {
	t.Helper()
	idx := -1
	Eventually(t, timeout, 200*time.Millisecond, func() error {
		got := MACs(strings.Join(resolve(addr), " "))
		if len(got) != 1 {
			return fmt.Errorf("answers for %s from %v, want exactly one", addr, got)
		}
		if idx = slices.Index(macs, got[0]); idx < 0 {
			return fmt.Errorf("%s answered by %s, not a node's (%v)", addr, got[0], macs)
		}
		return nil
	})
	return idx
}
