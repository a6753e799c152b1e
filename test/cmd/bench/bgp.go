package main

import (
	bgpbench "github.com/vipspeaker/vipspeaker/test/bench/bgp"
	"github.com/vipspeaker/vipspeaker/test/bench/report"
)

// benchBGP runs the BGP measurements of test/bench/bgp (the agent and, as
// the baseline, gobgpd fed by its CLI, both peering with a real FRR).
func benchBGP(r *report.Report) error {
	return bgpbench.Run(r)
}
