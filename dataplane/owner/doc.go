// Package owner decides which node answers ARP/NDP for each layer2 VIP.
//
// The owner of a VIP is computed, not negotiated: a rendezvous (highest
// random weight) hash of (node, VIP) over the nodes that are both eligible
// for that VIP (given as plain data by the caller: Ready, not excluded, with
// a local endpoint under externalTrafficPolicy: Local) and healthy. Every
// speaker computes the same answer from the same inputs, and a node joining
// or leaving moves only the VIPs it wins or held.
//
// Health comes from Membership, a hashicorp/memberlist cluster of the
// speakers, encrypted with a shared key, tuned so a dead speaker is declared
// dead within about half a second on a LAN. A speaker that leaves for good
// says so (memberlist Leave) and is dropped at once; a speaker that restarts
// first announces a restart window in its node metadata, and the others keep
// it healthy until the window ends or it comes back, so its VIPs do not move.
//
// Links: each speaker also publishes its layer2 interfaces in its metadata
// (Membership.SetLinks: up or not, and their subnets that overlap the
// pools); Elect leaves out nodes whose interfaces for a VIP are down, and,
// when some candidate's interface subnet contains the VIP, those whose do
// not.
//
// What it needs: UDP and TCP on the bind address and port (7946 by default)
// between the speakers. No kernel features beyond sockets.
package owner
