package status

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
)

// ClusterFunc renders the cluster's state from the API server (`status
// --cluster`); package kube/nodestate has it (StatusCluster).
type ClusterFunc func(ctx context.Context, kubeconfig, namespace, output string, w io.Writer) error

// Command is `vipspeaker status [--run-dir DIR] [-o table|json]`, or with
// --cluster [--kubeconfig FILE] [--namespace NS] the cluster's state read
// from the API server by cluster. It returns the exit code.
func Command(args []string, stdout, stderr io.Writer, cluster ClusterFunc) int {
	fs := flag.NewFlagSet("vipspeaker status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runDir := fs.String("run-dir", "/run/vipspeaker", "the --run-dir of the agent to ask")
	output := fs.String("o", "table", "output format: table or json")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the agent or the API server")
	inCluster := fs.Bool("cluster", false, "the whole cluster from the API server (Services and VIPSpeakerNode objects) instead of the local agent")
	kubeconfig := fs.String("kubeconfig", "", "with --cluster: a kubeconfig file (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)")
	namespace := fs.String("namespace", "vipspeaker-system", "with --cluster: the agents' namespace")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vipspeaker status: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(stderr, "vipspeaker status: -o %q: want table or json\n", *output)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *inCluster {
		if err := cluster(ctx, *kubeconfig, *namespace, *output, stdout); err != nil {
			fmt.Fprintf(stderr, "vipspeaker status --cluster: %v\n", err)
			return 1
		}
		return 0
	}
	r, raw, err := Fetch(ctx, filepath.Join(*runDir, SocketName))
	if err != nil {
		fmt.Fprintf(stderr, "vipspeaker status: %v\n", err)
		return 1
	}
	if *output == "json" {
		if _, err := stdout.Write(raw); err != nil {
			return 1
		}
		return 0
	}
	if err := Print(stdout, r); err != nil {
		fmt.Fprintf(stderr, "vipspeaker status: %v\n", err)
		return 1
	}
	return 0
}
