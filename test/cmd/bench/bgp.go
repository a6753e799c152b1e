package main

import (
	bgpbench "github.com/vipspeaker/vipspeaker/test/bench/bgp"
)

// benchBGP runs the BGP measurements of test/bench/bgp (real FRR and gobgpd
// in a lab) and adds their lines to the report.
func benchBGP(r *report) error {
	return bgpbench.Run(r.printf)
}
