package dataplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// sysctlChange records one value the responder changed.
type sysctlChange struct {
	Path string `json:"path"`
	Old  int    `json:"old"`
	Set  int    `json:"set"`
}

// wantSysctls are the per-interface values that keep the kernel from
// answering ARP for addresses on other interfaces (arp_ignore=1: only for
// addresses configured on the incoming interface) and from using a VIP as
// the source of its own ARP requests (arp_announce=2). A stricter value
// already in place is left alone.
var wantSysctls = []struct {
	name string
	val  int
}{
	{"arp_ignore", 1},
	{"arp_announce", 2},
}

// sysctlRoot is /proc/sys; the calling thread's network namespace decides
// which interface a path under net/ refers to.
var sysctlRoot = "/proc/sys"

func sysctlPath(iface, name string) string {
	return filepath.Join(sysctlRoot, "net/ipv4/conf", iface, name)
}

func readSysctl(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, nil
}

func writeSysctl(path string, v int) error {
	return os.WriteFile(path, []byte(strconv.Itoa(v)+"\n"), 0o644)
}

// setSysctls raises arp_ignore/arp_announce of iface where they are below
// the wanted values and returns what it changed. It must run in the
// interface's namespace.
func setSysctls(iface string) ([]sysctlChange, error) {
	var (
		changes []sysctlChange
		errs    []error
	)
	for _, w := range wantSysctls {
		p := sysctlPath(iface, w.name)
		old, err := readSysctl(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", p, err))
			continue
		}
		if old >= w.val {
			continue
		}
		if err := writeSysctl(p, w.val); err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", p, err))
			continue
		}
		changes = append(changes, sysctlChange{Path: p, Old: old, Set: w.val})
	}
	return changes, errors.Join(errs...)
}

// adoptSysctlsLocked takes over, from the state file a previous agent left,
// the original values of iface's sysctls that still hold the value that
// agent wrote. It must run in the interface's namespace.
func (r *Responder) adoptSysctlsLocked(iface string) {
	if r.stateFile == "" || len(r.saved[iface]) > 0 {
		return
	}
	st, err := loadSysctlState(r.stateFile)
	if err != nil {
		r.log.Warn("read sysctl state", "file", r.stateFile, "err", err)
		return
	}
	for _, c := range st[iface] {
		if cur, err := readSysctl(c.Path); err == nil && cur == c.Set {
			r.saved[iface] = append(r.saved[iface], c)
			r.log.Info("adopted sysctl set by the previous agent; original restored on exit",
				"iface", iface, "sysctl", c.Path, "original", c.Old, "value", c.Set)
		}
	}
	if len(r.saved[iface]) > 0 {
		r.m.sysctlChanged.WithLabelValues(iface).Set(1)
	}
}

// loadSysctlState reads the state file (missing: empty).
func loadSysctlState(path string) (map[string][]sysctlChange, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string][]sysctlChange{}, nil
	}
	if err != nil {
		return nil, err
	}
	st := map[string][]sysctlChange{}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return st, nil
}

// persistLocked writes r.saved to the state file (removing it when empty).
func (r *Responder) persistLocked() {
	if r.stateFile == "" {
		return
	}
	if len(r.saved) == 0 {
		if err := os.Remove(r.stateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("remove sysctl state", "file", r.stateFile, "err", err)
		}
		return
	}
	b, err := json.MarshalIndent(r.saved, "", "  ")
	if err == nil {
		tmp := r.stateFile + ".tmp"
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, r.stateFile)
		}
	}
	if err != nil {
		r.log.Warn("write sysctl state", "file", r.stateFile, "err", err)
	}
}

// recordSysctlsLocked remembers what was changed on iface, keeping the first
// (original) old value when a reopened interface reports a change again.
func (r *Responder) recordSysctlsLocked(iface string, changes []sysctlChange) {
	for _, c := range changes {
		r.log.Info("set sysctl so only the owner's responder answers ARP for VIPs (restored on exit)",
			"iface", iface, "sysctl", c.Path, "old", c.Old, "new", c.Set)
		if !containsPath(r.saved[iface], c.Path) {
			r.saved[iface] = append(r.saved[iface], c)
		}
	}
	if len(r.saved[iface]) > 0 {
		r.m.sysctlChanged.WithLabelValues(iface).Set(1)
	}
	if len(changes) > 0 {
		r.persistLocked()
	}
}

func containsPath(cs []sysctlChange, path string) bool {
	for _, c := range cs {
		if c.Path == path {
			return true
		}
	}
	return false
}

// restoreLocked puts back what was changed on iface, where the value is
// still the one we wrote; a value someone else changed since is left alone.
func (r *Responder) restoreLocked(iface string) error {
	changes := r.saved[iface]
	if len(changes) == 0 {
		return nil
	}
	var errs []error
	err := r.enter(func() error {
		for _, c := range changes {
			cur, err := readSysctl(c.Path)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue // the interface is gone, and its sysctls with it
				}
				errs = append(errs, fmt.Errorf("read %s: %w", c.Path, err))
				continue
			}
			if cur != c.Set {
				r.log.Info("sysctl changed by someone else since; leaving it", "iface", iface, "sysctl", c.Path, "value", cur)
				continue
			}
			if err := writeSysctl(c.Path, c.Old); err != nil {
				errs = append(errs, fmt.Errorf("restore %s: %w", c.Path, err))
				continue
			}
			r.log.Info("restored sysctl", "iface", iface, "sysctl", c.Path, "value", c.Old)
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	delete(r.saved, iface)
	r.persistLocked()
	r.m.sysctlChanged.DeleteLabelValues(iface)
	return errors.Join(errs...)
}
