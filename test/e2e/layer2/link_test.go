package layer2_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/dataplane/l2node"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// The cable of the owner's layer2 interface pulled (its bridge port set
// down, so eth0 loses carrier; the membership runs over it too): the
// client's first ARP reply from the other node comes within a second, the
// agent logs why and its vipspeaker_l2_interface_up{interface="eth0"} is
// 0. The cable back: the node answers again only after LinkUpHold and its
// rejoin (the hash gives it the VIP back), the VIP is never unanswered
// for a second, and the two nodes do not both answer once it settles.
func TestOwnerLinkDownFailsOverInUnderASecond(t *testing.T) {
	t.Parallel()
	tp := newTopo(t, 2)
	tp.start(t, 0)
	tp.start(t, 1)
	p := tp.probe(t, probeEvery)
	o := tp.owner(t, vip4, tp.arping)
	other := 1 - o
	tp.waitReplyFrom(t, p, o, time.Now(), 10*time.Second)
	node := tp.Nodes[o]
	eth0, err := node.Host.Netlink().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	port, err := tp.client.Netlink().LinkByIndex(eth0.Attrs().ParentIndex)
	if err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	if err := tp.client.Netlink().LinkSetDown(port); err != nil {
		t.Fatal(err)
	}
	r := tp.waitReplyFrom(t, p, other, down, 10*time.Second)
	t.Logf("node%d's eth0 lost carrier: first ARP reply from node%d %v later", o, other, r.At.Sub(down).Round(time.Millisecond))
	if took := r.At.Sub(down); took >= failoverBound {
		t.Errorf("failover took %v from the link loss on node%d to node%d's first ARP reply, want < %v", took, o, other, failoverBound)
	}
	lab.Eventually(t, 5*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(node.Proc.Log(), `msg="layer2 interface down: this node is no candidate for its pools' VIPs there"`) {
			return fmt.Errorf("node%d's agent has not logged its eth0 down", o)
		}
		m, err := node.Host.Metrics()
		if err != nil {
			return err
		}
		if v := lab.MetricSum(m, "vipspeaker_l2_interface_up", map[string]string{"interface": "eth0"}); v != 0 {
			return fmt.Errorf("node%d's vipspeaker_l2_interface_up{interface=\"eth0\"} = %v, want 0", o, v)
		}
		return nil
	})

	up := time.Now()
	if err := tp.client.Netlink().LinkSetUp(port); err != nil {
		t.Fatal(err)
	}
	back := tp.waitReplyFrom(t, p, o, up, 15*time.Second)
	t.Logf("node%d's eth0 back: node%d answers again %v later", o, o, back.At.Sub(up).Round(time.Millisecond))
	if d := back.At.Sub(up); d < l2node.LinkUpHold {
		t.Errorf("node%d answered %v after its link came back, before the %v hold and its rejoin", o, d, l2node.LinkUpHold)
	}
	lab.Eventually(t, 5*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(node.Proc.Log(), `msg="layer2 interface up: this node is a candidate there again"`) {
			return fmt.Errorf("node%d's agent has not logged its eth0 back", o)
		}
		m, err := node.Host.Metrics()
		if err != nil {
			return err
		}
		if v := lab.MetricSum(m, "vipspeaker_l2_interface_up", map[string]string{"interface": "eth0"}); v != 1 {
			return fmt.Errorf("node%d's vipspeaker_l2_interface_up{interface=\"eth0\"} = %v, want 1", o, v)
		}
		return nil
	})
	// Settled: one node answers.
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		since := time.Now().Add(-500 * time.Millisecond)
		if since.Before(back.At) {
			return fmt.Errorf("settling")
		}
		if r, ok := p.FirstFrom(since, tp.macs[o]); ok {
			return fmt.Errorf("node%d still answers at %s besides node%d", other, r.At.Format(time.StampMilli), o)
		}
		return nil
	})
	if n, longest := p.Unanswered(down, time.Now()); longest >= failoverBound {
		t.Errorf("%s unanswered for %v (%d requests) across node%d's link loss and return", vip4, longest, n, o)
	}
}
