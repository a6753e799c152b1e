package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// noteSecretRefs tells the user of `vipspeaker check` that the
// secret:NAME/KEY references in path (a config directory or a ConfigMap
// manifest) were checked for their form only: offline no Secret can be
// read; the agent reads them through the API server in cluster mode.
func noteSecretRefs(w io.Writer, path string) {
	files := []string{path}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		files = []string{filepath.Join(path, vipspeakerTOML), filepath.Join(path, gobgpConf)}
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			l := sc.Text()
			if strings.Contains(l, "secret:") && (strings.Contains(l, "auth-password") || strings.Contains(l, "secret-file")) {
				n++
			}
		}
	}
	if n > 0 {
		fmt.Fprintf(w, "%s: note: %d secret:NAME/KEY reference(s) checked for their form only; the Secrets are read by the agent in cluster mode (namespace of the agent), not offline\n", path, n)
	}
}
