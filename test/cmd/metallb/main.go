// Command metallb builds MetalLB's speaker and controller at the release
// test/metallb pins into the per-machine cache (test/lab/metallb.Binaries),
// so `make test` pays for the build once per machine, outside any test's
// timeout, and test/e2e/sidebyside's migration test finds them:
//
//	go run ./test/cmd/metallb
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab/metallb"
)

func main() {
	start := time.Now()
	b, err := metallb.Binaries()
	if err != nil {
		fmt.Fprintf(os.Stderr, "metallb %s: %v\n", metallb.Version, err)
		os.Exit(1)
	}
	fmt.Printf("metallb %s: %s, %s (%s)\n", metallb.Version, b.Speaker, b.Controller, time.Since(start).Round(time.Millisecond))
}
