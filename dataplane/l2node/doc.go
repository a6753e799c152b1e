// Package l2node runs a node's layer2 part: the owner election
// (dataplane/owner), the ARP/NDP responder (dataplane) and the XDP fast
// path (bpf), fed from the VIP table (routing).
//
// A Node follows the table's layer2 VIPs and hands them, with the
// candidate nodes of each (SetEligible, from the Kubernetes side; every
// healthy speaker in standalone mode), to the election; the VIPs this node
// wins go first to the XDP program (so it answers before the announcements
// go out), then to the userspace responder, which announces them and
// answers what XDP passes on. Gratuitous rounds go out as XDP live frames
// when the fast path is loaded, through the packet sockets otherwise.
//
// On a node without layer2 pools the Node only loads the fast path to count
// VIP traffic on the BGP uplinks (Options.Peers names the sessions; the
// kernel's routes give their interfaces).
//
// Links: the Node follows its layer2 interfaces through netlink link and
// address notifications and publishes their state to the membership at
// once when one goes down, and LinkUpHold after it comes back (and after
// rejoining the other speakers), so the election leaves out a node that
// cannot answer (links.go).
//
// Restarts: with Options.RemoveOnExit unset the node announces a restart
// window (RestartWindow) to the other speakers, leaves the sysctls for the
// next agent and renews the pinned program's lease so it keeps answering;
// a starting node leaves the owned set it found pinned in place until its
// VIP table has settled (at most StartupLimit). With RemoveOnExit it says
// goodbye, so the others take over at once, and removes the program.
//
// What it needs from the kernel: what dataplane and bpf need, in the
// network namespace the agent runs in (the membership binds the first
// layer2 interface's address there).
package l2node
