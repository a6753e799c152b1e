// Package textfile writes a Prometheus registry's vipspeaker_* families to a
// file in node_exporter's textfile-collector format, atomically (a
// temporary file in the same directory, then rename), so node_exporter
// never reads half a file.
package textfile

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// prefix selects the families written. The Go runtime and process
// families (go_*, process_*) are left out: node_exporter exports its own
// under the same names, and a textfile that repeats one of them makes its
// whole scrape fail.
const prefix = "vipspeaker_"

// Run writes the vipspeaker_* families of g to path every interval (0: 15s),
// and once more when ctx ends, so the file holds the agent's last figures.
// A failed write is logged and retried at the next interval; only an
// unusable directory ends Run with an error.
func Run(ctx context.Context, g prometheus.Gatherer, path string, every time.Duration, log *slog.Logger) error {
	if every <= 0 {
		every = 15 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !strings.HasSuffix(path, ".prom") {
		log.Warn("node_exporter's textfile collector reads only *.prom files", "component", "textfile", "file", path)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil {
		return fmt.Errorf("metrics textfile %s: %w", path, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("metrics textfile %s: %s is not a directory", path, filepath.Dir(path))
	}
	write := func() {
		if err := Write(g, path); err != nil {
			log.Error("write metrics textfile", "component", "textfile", "file", path, "error", err)
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

// Write gathers g and replaces path with the result.
func Write(g prometheus.Gatherer, path string) error {
	mfs, gatherErr := g.Gather()
	keep := mfs[:0]
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), prefix) {
			keep = append(keep, mf)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // gone already after a successful rename
	if err := encode(tmp, keep); err != nil {
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

func encode(f *os.File, mfs []*dto.MetricFamily) error {
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(f, mf); err != nil {
			return err
		}
	}
	return nil
}
