package status

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Print writes the report as tables for people.
func Print(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	ready := "ready"
	if len(r.Ready) > 0 {
		ready = "not ready: waiting for " + strings.Join(r.Ready, ", ")
	}
	p("Node %s (vipspeaker %s), %s\n", dash(r.Node), r.Version, ready)

	p("\nVIPs (%d)\n", len(r.VIPs))
	p("ADDRESS\tSERVICE\tMODE\tPOOL\tROLE\tOWNER\tRX PACKETS\tRX BYTES\n")
	for _, v := range r.VIPs {
		p("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Address, dash(v.Service), v.Mode, dash(v.Pool), v.Role, dash(v.Owner),
			count(v.RxPackets), count(v.RxBytes))
	}

	switch {
	case !r.BGP.Configured:
		p("\nBGP: off (no gobgp.conf)\n")
	default:
		state := "running"
		if !r.BGP.Running {
			state = "starting"
		}
		p("\nBGP peers (%d, speaker %s)\n", len(r.BGP.Peers), state)
		p("PEER\tAS\tSTATE\tUPTIME\tSENT\tRECEIVED\tACCEPTED\tBFD\tFLAPS\n")
		for _, pe := range r.BGP.Peers {
			st := pe.State
			if pe.AdminDown {
				st += " (admin down)"
			}
			up := "-"
			switch {
			case pe.UptimeSeconds >= 1:
				up = (time.Duration(pe.UptimeSeconds) * time.Second).String()
			case pe.State == "established":
				up = "<1s"
			}
			p("%s\t%d\t%s\t%s\t%d\t%d\t%d\t%s\t%d\n", pe.Peer, pe.PeerAS, st, up,
				pe.PrefixesSent, pe.PrefixesReceived, pe.PrefixesAccepted, dash(pe.BFD), pe.Flaps)
		}
	}

	c := r.Config
	p("\nConfig\n")
	if c.ConfigDir != "" {
		p("directory\t%s\n", c.ConfigDir)
	}
	p("generation\t%d\n", c.Generation)
	last := "refused (the last good configuration stays in force)"
	if c.LastReloadSuccessful {
		last = "accepted"
	}
	if c.LastAccepted != nil {
		last += ", last accepted " + c.LastAccepted.Format(time.RFC3339)
	}
	p("last reload\t%s\n", last)
	if c.LastError == "" {
		p("last error\t-\n")
	} else {
		lines := strings.Split(c.LastError, "\n")
		p("last error\t%s (%s)\n", lines[0], c.LastErrorTime.Format(time.RFC3339))
		for _, l := range lines[1:] {
			p("\t%s\n", l)
		}
	}
	for _, e := range r.Errors {
		p("\nerror reading %s: %s\n", e.Part, e.Error)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func count(n *uint64) string {
	if n == nil {
		return "-"
	}
	return strconv.FormatUint(*n, 10)
}
