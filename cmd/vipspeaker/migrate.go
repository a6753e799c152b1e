package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/vipspeaker/vipspeaker/config/migrate"
)

// migrateCommand is `vipspeaker migrate`: MetalLB's or OpenELB's resources
// in, the vipspeaker-config ConfigMap (or a config directory) out, and one
// line on stderr for each thing that was not carried over.
func migrateCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vipspeaker migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ns := fs.String("namespace", "vipspeaker-system", "the namespace of the ConfigMap written")
	dir := fs.String("dir", "", "write vipspeaker.toml and gobgp.conf into this directory instead of a ConfigMap on stdout")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vipspeaker migrate [-namespace NS] [-dir DIR] FILE... (- for stdin)\n\n"+
			"Reads MetalLB (metallb.io: IPAddressPool, BGPAdvertisement, L2Advertisement, BGPPeer, Community,\n"+
			"BFDProfile) and OpenELB (network.kubesphere.io: Eip, BgpConf, BgpPeer) resources, e.g. from\n"+
			"`kubectl get ipaddresspools,bgpadvertisements,l2advertisements,bgppeers,communities,bfdprofiles -A -o yaml`,\n"+
			"and writes the equivalent vipspeaker configuration. Exit 0 when everything was carried over, 3 when\n"+
			"something was not (each on stderr), 1 when the input cannot be converted.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	res, err := migrate.Files(fs.Args(), stdin)
	if err == nil && *dir != "" {
		err = res.WriteDir(*dir)
	} else if err == nil {
		var cm string
		if cm, err = res.ConfigMap(*ns); err == nil {
			fmt.Fprint(stdout, cm)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "vipspeaker migrate: %v\n", err)
		return 1
	}
	for _, n := range res.Notes {
		fmt.Fprintf(stderr, "not carried over: %s\n", n)
	}
	if len(res.Notes) > 0 {
		return 3
	}
	return 0
}
