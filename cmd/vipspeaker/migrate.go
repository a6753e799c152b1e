package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vipspeaker/vipspeaker/config"
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
	var in bytes.Buffer
	for _, name := range fs.Args() {
		var b []byte
		var err error
		if name == "-" {
			b, err = io.ReadAll(stdin)
		} else {
			b, err = os.ReadFile(name)
		}
		if err != nil {
			fmt.Fprintf(stderr, "vipspeaker migrate: %v\n", err)
			return 1
		}
		in.Write(b)
		in.WriteString("\n---\n")
	}
	res, err := migrate.Convert(&in)
	if err != nil {
		fmt.Fprintf(stderr, "vipspeaker migrate: %v\n", err)
		return 1
	}
	if *dir != "" {
		files := map[string]string{config.FileName: res.TOML}
		if res.GoBGP != "" {
			files[config.GoBGPFileName] = res.GoBGP
		}
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(*dir, name), []byte(text), 0o644); err != nil {
				fmt.Fprintf(stderr, "vipspeaker migrate: %v\n", err)
				return 1
			}
		}
	} else {
		cm, err := res.ConfigMap(*ns)
		if err != nil {
			fmt.Fprintf(stderr, "vipspeaker migrate: %v\n", err)
			return 1
		}
		fmt.Fprint(stdout, cm)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(stderr, "not carried over: %s\n", n)
	}
	if len(res.Notes) > 0 {
		return 3
	}
	return 0
}
