package ociimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
)

// The per-platform tarball loads into containerd 1.6 (Debian's, what the
// lab's nodes run) with `ctr -n k8s.io images import`, under the name a
// Pod's `image: NAME:TAG` resolves to, with all its content present and
// unpacked for the host. A containerd of the test's own (own root, state
// and socket, CRI off) is started, so nothing on the machine is touched.
func TestTarballImportsIntoContainerd(t *testing.T) {
	nstest.RequireRoot(t)
	for _, tool := range []string{"containerd", "ctr"} {
		if _, err := exec.LookPath(tool); err != nil {
			nstest.Skip(t, "%s not installed (scripts/deps.sh installs Debian's containerd)", tool)
		}
	}
	res := buildOnce(t)
	dir, err := os.MkdirTemp("/tmp", "vsimg-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "containerd.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ctr := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", sock, "-n", "k8s.io"}, args...)...).CombinedOutput()
		return string(out), err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := ctr("version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			t.Fatalf("containerd did not answer on %s within 30 s:\n%s", sock, log)
		}
		time.Sleep(100 * time.Millisecond)
	}

	tarPath := filepath.Join(dir, "image.tar")
	if err := res.WriteTarball(tarPath, "linux/"+hostArch()); err != nil {
		t.Fatal(err)
	}
	if out, err := ctr("images", "import", tarPath); err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	name := res.ContainerdName()
	out, err := ctr("images", "check", "name=="+name)
	if err != nil {
		t.Fatalf("ctr images check: %v\n%s", err, out)
	}
	if !strings.Contains(out, name) || !strings.Contains(out, "complete") {
		t.Fatalf("containerd does not hold %s complete:\n%s", name, out)
	}
	img, err := res.Image("linux/" + hostArch())
	if err != nil {
		t.Fatal(err)
	}
	cfgDigest, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	// The image's config (its ID for the kubelet) is ours, and its layers
	// were unpacked into a snapshot (a Pod could start from it).
	if out, err := ctr("content", "get", cfgDigest.String()); err != nil || !strings.Contains(out, `"User":"65532:65532"`) {
		t.Errorf("config %s in containerd's store: %v\n%s", cfgDigest, err, out)
	}
	if out, err := ctr("snapshots", "ls"); err != nil || strings.Count(out, "Committed") < 2 {
		t.Errorf("want the two layers unpacked as committed snapshots: %v\n%s", err, out)
	}
}

func hostArch() string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		return "amd64"
	}
	return strings.TrimSpace(string(out))
}
