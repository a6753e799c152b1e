package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/vipspeaker/vipspeaker/config/check"
)

// checkCommand validates a config directory or a ConfigMap manifest with the
// same code the running agent uses. Exit 0: valid; 1: one `file:line:
// problem` line per error; 2: usage.
func checkCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vipspeaker check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vipspeaker check PATH   (a directory holding gobgp.conf / vipspeaker.toml, or a ConfigMap manifest)")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	path := fs.Arg(0)
	errs, err := check.Path(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
	for _, e := range errs {
		fmt.Fprintln(stdout, e)
	}
	check.NoteSecretRefs(stdout, path)
	if len(errs) > 0 {
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid\n", path)
	return 0
}
