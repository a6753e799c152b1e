package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/vipspeaker/vipspeaker/status"
)

// statusCommand is `vipspeaker status [--run-dir DIR] [-o table|json]`.
func statusCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vipspeaker status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runDir := fs.String("run-dir", "/run/vipspeaker", "the --run-dir of the agent to ask")
	output := fs.String("o", "table", "output format: table or json")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the agent")
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
	r, raw, err := status.Fetch(ctx, filepath.Join(*runDir, status.SocketName))
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
	if err := status.Print(stdout, r); err != nil {
		fmt.Fprintf(stderr, "vipspeaker status: %v\n", err)
		return 1
	}
	return 0
}
