package ociimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// WriteLayout writes the index as an OCI image layout in dir (created; an
// existing layout there is replaced). index.json names the index with the
// annotations containerd and skopeo read the image's name from.
func (r *Result) WriteLayout(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("oci layout %s: %w", dir, err)
	}
	err = p.AppendIndex(r.Index, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": r.Ref.TagStr(),
		"io.containerd.image.name":          r.ContainerdName(),
	}))
	if err != nil {
		return fmt.Errorf("oci layout %s: %w", dir, err)
	}
	return nil
}

// ContainerdName is the name containerd and the kubelet give the image:
// docker.io/library/NAME:TAG for a name without registry.
func (r *Result) ContainerdName() string {
	reg := r.Ref.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + r.Ref.RepositoryStr() + ":" + r.Ref.TagStr()
}

// Image is the index's image for one platform ("linux/arm64").
func (r *Result) Image(platform string) (v1.Image, error) {
	want, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, err
	}
	im, err := r.Index.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Satisfies(*want) {
			return r.Index.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("platform %s: not in the index", platform)
}

// WriteTarball writes one platform's image as a docker-archive tarball
// tagged with the Result's name, the format `ctr -n k8s.io images import`
// and `docker load` take. containerd names it docker.io/library/NAME:TAG,
// which is what a Pod's `image: NAME:TAG` resolves to.
func (r *Result) WriteTarball(path, platform string) error {
	img, err := r.Image(platform)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := tarball.Write(r.Ref, img, f); err != nil {
		f.Close()
		return fmt.Errorf("tarball %s: %w", path, err)
	}
	return f.Close()
}

// Push uploads the index (every platform) to ref, e.g.
// "registry.example.com/vipspeaker:v0.3.0", with the credentials of
// ~/.docker/config.json (as `docker login` or `crane auth login` wrote them).
func (r *Result) Push(ctx context.Context, ref string, opts ...remote.Option) error {
	dst, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("push %q: %w", ref, err)
	}
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	if err := remote.WriteIndex(dst, r.Index, opts...); err != nil {
		return fmt.Errorf("push %s: %w", dst, err)
	}
	return nil
}
