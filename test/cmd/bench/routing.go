package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vipspeaker/vipspeaker/routing"
	"github.com/vipspeaker/vipspeaker/test/bench/report"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// benchNS creates a named namespace for a measurement and returns its path
// and a function that deletes it.
func benchNS(name string) (string, func(), error) {
	full := fmt.Sprintf("vsbench%d-%s", os.Getpid(), name)
	if err := lab.PrepareNetnsDir(); err != nil {
		return "", nil, err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // the thread is thrown away with its namespace
		h, err := netns.NewNamed(full)
		if err == nil {
			h.Close()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		return "", nil, fmt.Errorf("create namespace: %w", err)
	}
	return "/var/run/netns/" + full, func() { _ = netns.DeleteNamed(full) }, nil
}

func manyVIPs(n int) []routing.VIP {
	out := make([]routing.VIP, 0, n)
	base := netip.MustParseAddr("198.18.0.0").As4()
	// 198.18.0.0/15 gives 131k addresses; VIPs in a bench namespace reach
	// nothing outside it.
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for i := 1; len(out) < n; i++ {
		v := start + uint32(i)
		out = append(out, routing.VIP{Addr: netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})})
	}
	return out
}

type runningTable struct {
	*routing.Table
	stop func()
}

func startTable(path string) (*runningTable, error) {
	tb, err := routing.New(routing.Options{NetnsPath: path, Kind: "dummy"})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tb.Run(ctx) }()
	select {
	case <-tb.Ready():
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("table: %w", err)
	case <-time.After(30 * time.Second):
		cancel()
		return nil, fmt.Errorf("table not ready in 30s")
	}
	return &runningTable{Table: tb, stop: func() { cancel(); <-done; tb.Close() }}, nil
}

func benchRouting(r *report.Report) error {
	const n = 10000
	ctx := context.Background()
	path, cleanup, err := benchNS("routing")
	if err != nil {
		return err
	}
	defer cleanup()
	vips := manyVIPs(n + 200)

	// 0. the kernel's own floor: the same 10,000 adds through `ip -batch`.
	floor, err := ipBatchFloor(vips[:n])
	if err != nil {
		return err
	}
	r.Printf("- kernel floor, `ip -batch` adding the same %d IPv4 /32s to one interface: %s", n, ms(floor))

	// 1. cold: 10,000 VIPs onto an empty interface.
	tb, err := startTable(path)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := tb.Set(ctx, vips[:n]); err != nil {
		return err
	}
	cold := time.Since(start)
	r.Printf("- apply %d VIPs cold: %s (%d netlink writes; %.2f× the ip -batch floor; target < 2 s)", n, ms(cold), tb.Writes(), float64(cold)/float64(floor))
	r.Add(report.Figure{Name: fmt.Sprintf("%d VIPs applied to a cold interface", n), Unit: "ms", Value: report.F(report.Ms(cold)),
		Baseline: &report.Baseline{Name: "`ip -batch` of the same addresses", Value: report.F(report.Ms(floor))},
		Target:   &report.Target{Text: "< 2 s", Checks: []report.Check{report.AtMost("value", 2000)}}})

	// 2. incremental: one more VIP with 10,000 present, 200 times.
	var incs []time.Duration
	for i := range 200 {
		start := time.Now()
		if err := tb.Set(ctx, vips[:n+i+1]); err != nil {
			return err
		}
		incs = append(incs, time.Since(start))
	}
	r.Printf("- add one VIP with %d present (200 trials): p50 %s, p99 %s (target < 5 ms)", n, ms(percentile(incs, 50)), ms(percentile(incs, 99)))
	r.Add(report.Figure{Name: fmt.Sprintf("one VIP added with %d present", n), Unit: "ms", Samples: len(incs),
		P50: report.F(report.Ms(percentile(incs, 50))), P99: report.F(report.Ms(percentile(incs, 99))),
		Target: &report.Target{Text: "< 5 ms", Checks: []report.Check{report.AtMost("p99", 5)}}})

	// 3. repair: an outside `ip addr del` until the VIP is back.
	var repairs []time.Duration
	h, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return err
	}
	defer nh.Close()
	link, err := nh.LinkByName(routing.DefaultInterface)
	if err != nil {
		return err
	}
	updates := make(chan netlink.AddrUpdate, 1<<16)
	stopUpdates := make(chan struct{})
	defer close(stopUpdates)
	if err := netlink.AddrSubscribeWithOptions(updates, stopUpdates, netlink.AddrSubscribeOptions{Namespace: &h, ReceiveBufferSize: 8 << 20}); err != nil {
		return err
	}
	for i := range 20 {
		a := vips[i].Addr
		nla := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}}
		start := time.Now()
		if err := nh.AddrDel(link, nla); err != nil {
			return fmt.Errorf("ip addr del %s: %w", a, err)
		}
		timeout := time.After(time.Second)
	wait:
		for {
			select {
			case u := <-updates:
				if u.NewAddr && u.LinkAddress.IP.Equal(a.AsSlice()) {
					break wait
				}
			case <-timeout:
				return fmt.Errorf("VIP %s not restored within 1s", a)
			}
		}
		repairs = append(repairs, time.Since(start))
	}
	r.Printf("- VIP restored after an outside removal (20 trials): p50 %s, p99 %s (target < 100 ms)", ms(percentile(repairs, 50)), ms(percentile(repairs, 99)))
	r.Add(report.Figure{Name: "VIP restored after `ip addr del`", Unit: "ms", Samples: len(repairs),
		P50: report.F(report.Ms(percentile(repairs, 50))), P99: report.F(report.Ms(percentile(repairs, 99))),
		Target: &report.Target{Text: "< 100 ms", Checks: []report.Check{report.AtMost("p99", 100)}}})
	wantNow := vips[:n+200]
	tb.stop()

	// 4. adoption: a restarted agent finds its VIPs and writes nothing.
	start = time.Now()
	tb2, err := startTable(path)
	if err != nil {
		return err
	}
	ready := time.Since(start)
	start = time.Now()
	if err := tb2.Set(ctx, wantNow); err != nil {
		return err
	}
	set := time.Since(start)
	r.Printf("- restart adopting %d VIPs: ready in %s, first Set in %s, %d netlink writes (target 0)", len(wantNow), ms(ready), ms(set), tb2.Writes())
	r.Add(report.Figure{Name: fmt.Sprintf("netlink writes when a restarted agent adopts %d VIPs", len(wantNow)), Unit: "writes", Value: report.F(float64(tb2.Writes())),
		Target: &report.Target{Text: "0 (no flap)", Checks: []report.Check{report.AtMost("value", 0)}}})
	r.Add(report.Figure{Name: fmt.Sprintf("restart adopting %d VIPs: ready", len(wantNow)), Unit: "ms", Value: report.F(report.Ms(ready))})
	tb2.stop()
	return nil
}

// ipBatchFloor times iproute2 adding the addresses in one batch to an ifb
// in a namespace of its own: what the kernel itself costs.
func ipBatchFloor(vips []routing.VIP) (time.Duration, error) {
	path, cleanup, err := benchNS("floor")
	if err != nil {
		return 0, err
	}
	defer cleanup()
	name := filepath.Base(path)
	if out, err := exec.Command("ip", "-n", name, "link", "add", "kube-lb0", "type", "ifb").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("ip link add: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "kube-lb0", "up").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("ip link set up: %v: %s", err, out)
	}
	var b strings.Builder
	for _, v := range vips {
		fmt.Fprintf(&b, "addr add %s/32 dev kube-lb0\n", v.Addr)
	}
	cmd := exec.Command("ip", "-n", name, "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("ip -batch: %v: %s", err, out)
	}
	return time.Since(start), nil
}
