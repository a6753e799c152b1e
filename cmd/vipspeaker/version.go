package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

func printVersion(w io.Writer) {
	c := commit
	gobgp := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/osrg/gobgp/v4" {
				gobgp = d.Version
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	fmt.Fprintf(w, "vipspeaker %s\ncommit: %s\ngo: %s\ngobgp: %s\n", version, c, runtime.Version(), gobgp)
}
