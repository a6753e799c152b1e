package lab

import (
	"encoding/json"
	"fmt"
)

// PrefixPath is what FRR's `show bgp AFI unicast PREFIX json` says of one
// path to a prefix.
type PrefixPath struct {
	ASPath    string
	MED       int
	LocalPref int
	Community string
	Large     string // large communities
	NextHops  []string
	Best      bool
	Stale     bool
}

// PrefixPaths returns FRR's paths to one prefix of "ipv4" or "ipv6"
// unicast; none when FRR has no path to it.
func (f *FRR) PrefixPaths(afi, prefix string) ([]PrefixPath, error) {
	type str struct {
		String string `json:"string"`
	}
	var doc struct {
		Paths []struct {
			ASPath    str  `json:"aspath"`
			Metric    int  `json:"metric"`
			LocPrf    int  `json:"locPrf"`
			Stale     bool `json:"stale"`
			Community str  `json:"community"`
			Large     str  `json:"largeCommunity"`
			Nexthops  []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
			Bestpath struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
		} `json:"paths"`
	}
	if err := f.VtyshJSON(fmt.Sprintf("show bgp %s unicast %s json", afi, prefix), &doc); err != nil {
		return nil, err
	}
	var out []PrefixPath
	for _, p := range doc.Paths {
		fp := PrefixPath{ASPath: p.ASPath.String, MED: p.Metric, LocalPref: p.LocPrf, Community: p.Community.String,
			Large: p.Large.String, Best: p.Bestpath.Overall, Stale: p.Stale}
		for _, nh := range p.Nexthops {
			fp.NextHops = append(fp.NextHops, nh.IP)
		}
		out = append(out, fp)
	}
	return out, nil
}

// Session is FRR's view of its BGP session with one neighbor.
type Session struct {
	State       string
	Established int // connectionsEstablished
	Dropped     int // connectionsDropped
}

// Session returns FRR's view of its session with peer.
func (f *FRR) Session(peer string) (Session, error) {
	var doc map[string]json.RawMessage
	if err := f.VtyshJSON("show bgp neighbors "+peer+" json", &doc); err != nil {
		return Session{}, err
	}
	var s struct {
		BgpState               string `json:"bgpState"`
		ConnectionsEstablished int    `json:"connectionsEstablished"`
		ConnectionsDropped     int    `json:"connectionsDropped"`
	}
	if err := json.Unmarshal(doc[peer], &s); err != nil {
		return Session{}, fmt.Errorf("frr neighbor %s: %w", peer, err)
	}
	return Session{State: s.BgpState, Established: s.ConnectionsEstablished, Dropped: s.ConnectionsDropped}, nil
}
