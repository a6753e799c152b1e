// Command prebuild builds the pinned helm and kustomize that the tests in
// test/e2e/ops use into the cache folder (see ops.CacheDir), so a cold
// machine pays for the build once, outside any test timeout:
//
//	go run ./test/e2e/ops/prebuild
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/vipspeaker/vipspeaker/test/e2e/ops"
)

func main() {
	for _, tool := range []struct {
		name  string
		build func() (string, error)
	}{
		{"helm " + ops.HelmVersion, ops.Helm},
		{"kustomize " + ops.KustomizeVersion, ops.Kustomize},
	} {
		start := time.Now()
		path, err := tool.build()
		if err != nil {
			fmt.Fprintf(os.Stderr, "prebuild: %s: %v\n", tool.name, err)
			os.Exit(1)
		}
		fmt.Printf("%s: %s (%s)\n", tool.name, path, time.Since(start).Round(time.Millisecond))
	}
}
