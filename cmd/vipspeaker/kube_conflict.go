package main

import (
	"net"
	"net/netip"
)

// layer2Conflict hears from the responder that another station answers for
// a VIP this node owns (the responder logs and counts it); in a cluster the
// Services holding the VIP get an AddressConflict Event, once per episode.
func (a *agent) layer2Conflict(vip netip.Addr, iface string, mac net.HardwareAddr) {
	if a.cluster.ctrl == nil {
		return
	}
	// The responder's read loop must not wait on the API.
	go a.cluster.ctrl.ReportConflict(vip, iface, mac.String())
}
