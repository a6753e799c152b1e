package realnodes

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/ociimage"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// BinaryImage builds a main package of this module as an image named ref
// (internal/ociimage: empty base, static binary, for this machine's
// platform) and writes it into dir as a docker-archive tarball, the form
// `ctr images import` loads. It returns the tarball's path.
func BinaryImage(dir, pkg, ref string) (string, error) {
	root, err := lab.ModuleRoot()
	if err != nil {
		return "", err
	}
	return imageTarball(dir, ref, ociimage.Spec{Main: pkg, Dir: root})
}

// imageTarball builds spec (Main built in spec.Dir) as the image ref for
// this machine's platform and writes it into dir as a docker-archive
// tarball. It returns the tarball's path.
func imageTarball(dir, ref string, spec ociimage.Spec) (string, error) {
	spec.Name, spec.Tag = ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		spec.Name, spec.Tag = ref[:i], ref[i+1:]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	platform := "linux/" + runtime.GOARCH
	spec.Platforms = []string{platform}
	res, err := ociimage.Build(ctx, spec)
	if err != nil {
		return "", fmt.Errorf("image %s of %s: %w", ref, spec.Main, err)
	}
	out := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := res.WriteTarball(out, platform); err != nil {
		return "", err
	}
	return out, nil
}
