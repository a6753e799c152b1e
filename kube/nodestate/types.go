package nodestate

import (
	"encoding/json"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/vipspeaker/vipspeaker/status"
)

// The resource.
const (
	Group    = "vipspeaker.io"
	Version  = "v1alpha1"
	Kind     = "VIPSpeakerNode"
	Resource = "vipspeakernodes"
)

// GVR is the VIPSpeakerNode resource.
var GVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}

// MaxVIPs is how many VIPs one object lists; VIPCount says how many the
// node has (an object stays far below etcd's 1.5 MB limit).
const MaxVIPs = 4096

// Roles of a VIP on a node.
const (
	RoleAnnouncing = "announcing"
	RoleOwner      = "owner"
)

// Status is a VIPSpeakerNode's status. Field names are part of the user
// contract (docs/INTERFACE.md).
type Status struct {
	Sessions []Session `json:"sessions"`
	VIPs     []VIP     `json:"vips"`
	// VIPCount counts the node's VIPs; VIPs lists the first MaxVIPs.
	VIPCount int `json:"vipCount"`
	// Pools are the pools the node may announce or own (Ready, not
	// excluded, selected by the pool's node-selector).
	Pools []string `json:"pools"`
	// Updated is when the speaker wrote this status.
	Updated metav1.Time `json:"updated,omitzero"`

	exists bool // read from an object (Writer)
}

// Session is one BGP session of the node's speaker.
type Session struct {
	Peer   string `json:"peer"`
	PeerAS uint32 `json:"peerAS,omitempty"`
	// State is the BGP FSM state, lower case (established, active, ...).
	State string `json:"state"`
	// Since is when the session entered State (as the speaker saw it).
	Since metav1.Time `json:"since,omitzero"`
}

// Established reports whether the session is up.
func (s Session) Established() bool { return s.State == "established" }

// VIP is one address the node draws traffic for.
type VIP struct {
	Address string `json:"address"`
	// Service is namespace/name; Services sharing the address are
	// comma-separated.
	Service string `json:"service"`
	Mode    string `json:"mode"`
	Pool    string `json:"pool,omitempty"`
	Role    string `json:"role"`
}

// FromReport turns the agent's status report (status.Collect) into the
// node's status; false when the agent is not ready yet (nothing is written
// then). A bgp VIP is announcing when at least one session is established,
// or when gobgp.conf has no neighbor (zebra mode: FRR's sessions are not
// the agent's to see); a layer2 VIP when this node is its owner.
func FromReport(r status.Report) (Status, bool) {
	st := Status{Sessions: []Session{}, VIPs: []VIP{}, Pools: []string{}}
	up := len(r.BGP.Peers) == 0
	for _, p := range r.BGP.Peers {
		s := Session{Peer: p.Peer, PeerAS: p.PeerAS, State: p.State}
		if p.AdminDown {
			s.State = "admin-down"
		}
		up = up || s.Established()
		st.Sessions = append(st.Sessions, s)
	}
	for _, v := range r.VIPs {
		role := ""
		switch {
		case v.Role == RoleOwner:
			role = RoleOwner
		case v.Role == RoleAnnouncing && up:
			role = RoleAnnouncing
		default:
			continue
		}
		st.VIPCount++
		if len(st.VIPs) < MaxVIPs {
			st.VIPs = append(st.VIPs, VIP{Address: v.Address, Service: v.Service, Mode: v.Mode, Pool: v.Pool, Role: role})
		}
	}
	return st, len(r.Ready) == 0
}

// Same reports whether two statuses say the same, apart from the times.
func (s Status) Same(o Status) bool {
	return slices.EqualFunc(s.Sessions, o.Sessions, func(a, b Session) bool {
		return a.Peer == b.Peer && a.PeerAS == b.PeerAS && a.State == b.State
	}) && slices.Equal(s.VIPs, o.VIPs) && s.VIPCount == o.VIPCount && slices.Equal(s.Pools, o.Pools)
}

// keepSince carries over the Since of sessions whose state did not change
// from old, and stamps the others with now.
func (s *Status) keepSince(old Status, now metav1.Time) {
	for i := range s.Sessions {
		s.Sessions[i].Since = now
		for _, o := range old.Sessions {
			if o.Peer == s.Sessions[i].Peer && o.State == s.Sessions[i].State && !o.Since.IsZero() {
				s.Sessions[i].Since = o.Since
			}
		}
	}
}

// Object is one VIPSpeakerNode read back.
type Object struct {
	Node   string
	Status Status
}

// FromUnstructured reads a VIPSpeakerNode.
func FromUnstructured(u *unstructured.Unstructured) (Object, error) {
	o := Object{Node: u.GetName()}
	raw, ok := u.Object["status"]
	if !ok {
		return o, nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return o, err
	}
	if err := json.Unmarshal(b, &o.Status); err != nil {
		return o, fmt.Errorf("%s %s: status: %w", Kind, u.GetName(), err)
	}
	return o, nil
}

// statusMap is s as the unstructured form of the object's status.
func statusMap(s Status) (map[string]any, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	err = json.Unmarshal(b, &m)
	return m, err
}
