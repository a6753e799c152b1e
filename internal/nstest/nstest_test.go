package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

func exists(name string) bool {
	_, err := os.Stat("/var/run/netns/" + name)
	return err == nil
}

// A namespace left by a test process that died is removed; one of a live
// process (this one) is not.
func TestSweepStaleRemovesOnlyDeadProcessesNamespaces(t *testing.T) {
	RequireRoot(t)
	mine := New(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("vst%d-1", dead.Process.Pid)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // thrown away with its namespace
		h, err := netns.NewNamed(stale)
		if err == nil {
			h.Close()
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(stale) })

	sweepStale(t)
	if exists(stale) {
		t.Errorf("namespace %s of dead pid %d survived the sweep", stale, dead.Process.Pid)
	}
	if !exists(mine.Name) {
		t.Errorf("this process's namespace %s was swept", mine.Name)
	}
}
