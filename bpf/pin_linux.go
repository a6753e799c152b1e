package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// lockDir takes an exclusive flock on dir, so two agents never share one
// pin directory (the second would adopt and then rearrange the first's
// program). The lock goes with the process.
func lockDir(dir string) (*os.File, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open pin directory %s: %w", dir, err)
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("pin directory %s is in use by another vipspeaker; give each agent its own", dir)
		}
		return nil, fmt.Errorf("lock pin directory %s: %w", dir, err)
	}
	return d, nil
}

func (f *FastPath) unlock() {
	if f.lock != nil {
		_ = f.lock.Close()
		f.lock = nil
	}
}

func (f *FastPath) removeLocked() error {
	var errs []error
	// Stop answering first, in case a detach fails.
	if err := f.objs.VsLease.Put(uint32(0), uint64(0)); err != nil {
		errs = append(errs, fmt.Errorf("expire lease: %w", err))
	}
	for name, a := range f.ifaces {
		f.detachLocked(a)
		delete(f.ifaces, name)
	}
	if f.pinDir != "" {
		ents, _ := os.ReadDir(f.pinDir)
		for _, e := range ents {
			if name, ok := strings.CutPrefix(e.Name(), linkPinPrefix); ok {
				f.removeStaleLink(name)
			}
		}
		for _, m := range []*ebpf.Map{f.objs.VsOwned, f.objs.VsIfaces, f.objs.VsLease, f.objs.VsVipStats, f.objs.VsIfStats} {
			if err := m.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("unpin map: %w", err))
			}
		}
	}
	f.objs.Close()
	f.unlock()
	if f.pinDir != "" {
		if err := os.Remove(f.pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pin directory %s: %w", f.pinDir, err))
		}
		// The parent too when this was its last agent (it fails, harmlessly,
		// while another agent's directory is in it).
		if parent := filepath.Dir(f.pinDir); onBPFFS(parent) {
			_ = os.Remove(parent)
		}
	}
	return errors.Join(errs...)
}

// existingAncestor returns dir or its nearest ancestor that exists.
func existingAncestor(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// onBPFFS reports whether dir is on a bpf filesystem.
func onBPFFS(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == unix.BPF_FS_MAGIC
}
