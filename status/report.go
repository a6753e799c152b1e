package status

import "time"

// SocketName is the name of the status socket in the agent's --run-dir.
const SocketName = "vipspeaker.sock"

// path is the one HTTP path served on the status socket.
const path = "/v1/status"

// Report is what `vipspeaker status -o json` prints and what the agent
// serves on its socket. Field names are part of the user contract.
type Report struct {
	Node    string    `json:"node"`
	Version string    `json:"version"`
	Time    time.Time `json:"time"`
	VIPs    []VIP     `json:"vips"`
	BGP     BGP       `json:"bgp"`
	Config  Config    `json:"config"`
	Ready   []string  `json:"notReady,omitempty"`
	Errors  []Error   `json:"errors,omitempty"`
}

// VIP is one VIP of the node's table.
type VIP struct {
	Address string `json:"address"`
	Service string `json:"service"`
	Mode    string `json:"mode"`
	Pool    string `json:"pool,omitempty"`
	// Role is this node's part for the VIP: "announcing" (bgp mode, BGP
	// speaker running with a config), "not-announced" (bgp mode, BGP
	// off); for layer2 "owner" (this node answers ARP/NDP), "standby"
	// (another node, Owner, does), "no-owner" (no healthy candidate) or
	// "unknown" (no owner election running).
	Role string `json:"role"`
	// Owner is the node answering for a layer2 VIP, when known.
	Owner string `json:"owner,omitempty"`
	// RxPackets/RxBytes are null until a receive counter exists for the
	// VIP (vipspeaker_vip_receive_*_total in the registry).
	RxPackets *uint64 `json:"rxPackets"`
	RxBytes   *uint64 `json:"rxBytes"`
}

// BGP is the embedded speaker's state.
type BGP struct {
	// Configured is true once a gobgp.conf was accepted.
	Configured bool   `json:"configured"`
	Running    bool   `json:"running"`
	Peers      []Peer `json:"peers"`
}

// Peer is one BGP session.
type Peer struct {
	Peer             string  `json:"peer"`
	PeerAS           uint32  `json:"peerAS"`
	LocalAS          uint32  `json:"localAS"`
	State            string  `json:"state"`
	AdminDown        bool    `json:"adminDown,omitempty"`
	UptimeSeconds    float64 `json:"uptimeSeconds"`
	PrefixesSent     uint64  `json:"prefixesSent"`
	PrefixesReceived uint64  `json:"prefixesReceived"`
	PrefixesAccepted uint64  `json:"prefixesAccepted"`
	// BFD is "" when BFD is off for the peer.
	BFD             string `json:"bfd,omitempty"`
	GracefulRestart bool   `json:"gracefulRestart,omitempty"`
	Flaps           uint32 `json:"flaps"`
}

// Config is the configuration's history since start.
type Config struct {
	ConfigDir   string `json:"configDir,omitempty"`
	ServicesDir string `json:"servicesDir,omitempty"`
	// Generation counts the configurations accepted since start.
	Generation uint64 `json:"generation"`
	// LastReloadSuccessful mirrors vipspeaker_config_last_reload_successful.
	LastReloadSuccessful bool       `json:"lastReloadSuccessful"`
	LastAccepted         *time.Time `json:"lastAccepted,omitempty"`
	// LastError is why the last refused configuration was refused; it
	// stays after a later good one, with its time, so a flapping
	// ConfigMap can be diagnosed.
	LastError     string     `json:"lastError,omitempty"`
	LastErrorTime *time.Time `json:"lastErrorTime,omitempty"`
}

// Error is a part of the report that could not be read.
type Error struct {
	Part  string `json:"part"`
	Error string `json:"error"`
}
