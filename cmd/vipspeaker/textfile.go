package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// textfilePrefix selects the families written to --metrics-textfile. The
// Go runtime and process families (go_*, process_*) are left out:
// node_exporter exports its own under the same names, and a textfile that
// repeats one of them makes its whole scrape fail.
const textfilePrefix = "vipspeaker_"

// writeTextfile writes the vipspeaker_* families of /metrics to path in
// node_exporter's textfile-collector format every interval, and once more
// when ctx ends, so the file holds the agent's last figures. Each write is
// atomic (a temporary file in the same directory, then rename), so
// node_exporter never reads half a file. A failed write is logged and
// retried at the next interval; only an unusable directory stops the agent.
func (a *agent) writeTextfile(ctx context.Context, path string, every time.Duration) error {
	if every <= 0 {
		every = 15 * time.Second
	}
	if !strings.HasSuffix(path, ".prom") {
		a.log.Warn("node_exporter's textfile collector reads only *.prom files", "component", "textfile", "file", path)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil {
		return fmt.Errorf("metrics textfile %s: %w", path, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("metrics textfile %s: %s is not a directory", path, filepath.Dir(path))
	}
	write := func() {
		if err := a.writeTextfileOnce(path); err != nil {
			a.log.Error("write metrics textfile", "component", "textfile", "file", path, "error", err)
		}
	}
	write()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			write()
			return nil
		case <-tick.C:
			write()
		}
	}
}

// writeTextfileOnce gathers the registry and replaces path with the result.
func (a *agent) writeTextfileOnce(path string) error {
	mfs, gatherErr := a.reg.Gather()
	keep := mfs[:0]
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), textfilePrefix) {
			keep = append(keep, mf)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // gone already after a successful rename
	if err := encodeText(tmp, keep); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	if gatherErr != nil {
		// What could be gathered was written; say what was not.
		return fmt.Errorf("gather metrics: %w", gatherErr)
	}
	return nil
}

func encodeText(f *os.File, mfs []*dto.MetricFamily) error {
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(f, mf); err != nil {
			return err
		}
	}
	return nil
}
