// Command vipspeaker is the node agent: it puts the VIPs of LoadBalancer
// Services on this node's VIP interface and announces them over BGP or
// answers ARP/NDP for them.
package main

import (
	"fmt"
	"io"
	"os"
)

func usage(w io.Writer) {
	fmt.Fprint(w, `vipspeaker: real LoadBalancer Services for bare-metal Kubernetes

Usage:
  vipspeaker run [flags]      the node agent (see vipspeaker run -h)
  vipspeaker allocate [flags] the allocator alone, as its own Deployment (see vipspeaker allocate -h)
  vipspeaker status [-o json] tables of VIPs, BGP peers and config from the local agent
                              (--cluster: every Service and node, from the API server)
  vipspeaker check PATH       validate a config directory or a ConfigMap manifest
  vipspeaker migrate FILE...  MetalLB or OpenELB resources in, the vipspeaker-config ConfigMap out
  vipspeaker version          version, commit, Go and GoBGP versions
`)
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs a sub-command and returns the process exit code.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "run":
		return runCommand(args[1:], stderr)
	case "allocate":
		return allocateCommand(args[1:], stderr)
	case "status":
		return statusCommand(args[1:], stdout, stderr)
	case "check":
		return checkCommand(args[1:], stdout, stderr)
	case "migrate":
		return migrateCommand(args[1:], os.Stdin, stdout, stderr)
	case "version", "--version", "-version":
		printVersion(stdout)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "vipspeaker: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
}
