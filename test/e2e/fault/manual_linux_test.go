package fault_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// An operator deletes the VIP from kube-lb0 by hand (ip addr del), and
// later deletes kube-lb0 itself (ip link del): each time the agent puts
// the interface and the address back within a second (ARCHITECTURE.md:
// "restored within milliseconds"; make bench measures how many), the
// router never loses the route (the BGP path is not withdrawn:
// subscribers never see the VIP go), and the client loses no more pings
// than the time the VIP was off the node explains.
func TestVIPDeletedByHandIsPutBack(t *testing.T) {
	b, p := startBGP(t, bgpOptions{})

	for _, fault := range []struct {
		name string
		argv []string
	}{
		{"ip addr del", []string{"ip", "addr", "del", vipPrefix, "dev", "kube-lb0"}},
		{"ip link del", []string{"ip", "link", "del", "kube-lb0"}},
	} {
		w := watchRoute(b.router, vipPrefix)
		from := time.Now()
		run(t, b.node, fault.argv...)
		lab.Eventually(t, routeBound, 5*time.Millisecond, func() error {
			nl := b.node.Netlink()
			link, err := nl.LinkByName("kube-lb0")
			if err != nil {
				return fmt.Errorf("no kube-lb0: %w", err)
			}
			if link.Attrs().Flags&net.FlagUp == 0 {
				return fmt.Errorf("kube-lb0 is not up")
			}
			addrs, err := nl.AddrList(link, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if a.IPNet.String() == vipPrefix {
					return nil
				}
			}
			return fmt.Errorf("kube-lb0 lacks %s: %v", vipPrefix, addrs)
		})
		repaired := time.Since(from)
		pings := waitPings(t, p, routeBound, fault.name)
		// A second more: the repair holds.
		p.waitPast(t, time.Second)
		w.Stop()
		r := p.result()
		t.Logf("%s: the VIP was back on kube-lb0 after %v; 20 pings in a row answered %v after the repair (200 ms at the least); router's route %v; client: %v",
			fault.name, repaired.Round(time.Millisecond), pings.Round(time.Millisecond), w, r)
		if repaired >= time.Second {
			t.Errorf("after %s the VIP was back on kube-lb0 only %v later, want < 1 s", fault.name, repaired)
		}
		if w.gaps != 0 {
			t.Errorf("after %s the router's route to %s went: %v", fault.name, vipPrefix, w)
		}
		// Pings sent while the VIP was off the node, and one either side.
		if budget := int(repaired/pingInterval) + 2; r.Lost() > budget {
			t.Errorf("after %s %d pings lost, more than the %v without the VIP explains (%d)", fault.name, r.Lost(), repaired, budget)
		}
		if fault.name == "ip addr del" {
			// Next fault, next count.
			p = startPinger(t, b.client, vip)
		}
	}
	if b.agent().Exited() {
		t.Errorf("the agent exited:\n%s", lab.Tail(b.agent().Log(), 20))
	}
}
