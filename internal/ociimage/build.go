package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultPlatforms are the platforms Build makes when Spec.Platforms is empty.
var DefaultPlatforms = []string{"linux/amd64", "linux/arm64"}

// DefaultCACertificates is the CA bundle of Debian and Ubuntu machines.
const DefaultCACertificates = "/etc/ssl/certs/ca-certificates.crt"

// NonRoot is the user "nonroot" of the image's /etc/passwd (uid and gid
// 65532, as distroless images have it).
const NonRoot = "65532:65532"

// File is an extra regular file put into the image.
type File struct {
	Path string // absolute path in the image
	Mode int64  // 0 means 0o644
	Data []byte
}

// Spec says what to build. Name, Tag and Main are required; the zero value
// of every other field means the default named there.
type Spec struct {
	Name string // image name without registry or tag, e.g. "vipspeaker"
	Tag  string // e.g. "v0.3.0"

	// Main is the main package, as `go build` takes it, relative to Dir
	// (e.g. "./cmd/vipspeaker" or "./test/cmd/httpecho").
	Main string
	// Dir is the directory `go build` runs in (default: the current one).
	Dir string
	// LDFlags are added after "-s -w -buildid=" (e.g. "-X main.version=v1").
	LDFlags []string
	// Binary is the binary's path in the image
	// (default /usr/local/bin/<last element of Main>).
	Binary string

	// Platforms are "os/arch" pairs (default DefaultPlatforms); only linux.
	Platforms []string

	Entrypoint []string // default [Binary]
	Cmd        []string
	User       string // default NonRoot
	Env        []string
	Labels     map[string]string
	WorkingDir string

	// CACertificates is the CA bundle copied to
	// /etc/ssl/certs/ca-certificates.crt (default DefaultCACertificates);
	// "none" leaves it out. The digest depends on its content.
	CACertificates string
	Files          []File

	// Created is the time on every file, the config and the history
	// (default: the Unix epoch). Use the commit time for meaningful dates.
	Created time.Time
}

// Result is a built index and the name it was built for.
type Result struct {
	Ref   name.Tag
	Index v1.ImageIndex
}

// Digest is the index digest, the one a registry and containerd show.
func (r *Result) Digest() (v1.Hash, error) { return r.Index.Digest() }

// Build compiles Spec.Main once per platform and assembles the index.
func Build(ctx context.Context, spec Spec) (*Result, error) {
	if err := spec.defaults(); err != nil {
		return nil, err
	}
	ref, err := name.NewTag(spec.Name + ":" + spec.Tag)
	if err != nil {
		return nil, fmt.Errorf("spec name %q tag %q: %w", spec.Name, spec.Tag, err)
	}
	base, err := baseLayer(spec)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "ociimage-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range spec.Platforms {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			return nil, fmt.Errorf("spec platform %q: %w", p, err)
		}
		bin := filepath.Join(tmp, plat.OS+"-"+plat.Architecture)
		if err := goBuild(ctx, spec, *plat, bin); err != nil {
			return nil, err
		}
		img, err := image(spec, *plat, base, bin)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: plat},
		})
	}
	return &Result{Ref: ref, Index: idx}, nil
}

func (s *Spec) defaults() error {
	switch {
	case s.Name == "":
		return errors.New("spec name: empty")
	case s.Tag == "":
		return errors.New("spec tag: empty")
	case s.Main == "":
		return errors.New("spec main: empty (a main package such as ./cmd/vipspeaker)")
	}
	if s.Binary == "" {
		s.Binary = "/usr/local/bin/" + path.Base(filepath.ToSlash(s.Main))
	}
	if !path.IsAbs(s.Binary) {
		return fmt.Errorf("spec binary %q: not an absolute path", s.Binary)
	}
	if len(s.Platforms) == 0 {
		s.Platforms = DefaultPlatforms
	}
	for _, p := range s.Platforms {
		if !strings.HasPrefix(p, "linux/") {
			return fmt.Errorf("spec platform %q: only linux/<arch> is built", p)
		}
	}
	if len(s.Entrypoint) == 0 {
		s.Entrypoint = []string{s.Binary}
	}
	if s.User == "" {
		s.User = NonRoot
	}
	if s.CACertificates == "" {
		s.CACertificates = DefaultCACertificates
	}
	for _, f := range s.Files {
		if !path.IsAbs(f.Path) {
			return fmt.Errorf("spec file %q: not an absolute path", f.Path)
		}
	}
	if s.Created.IsZero() {
		s.Created = time.Unix(0, 0)
	}
	s.Created = s.Created.UTC().Truncate(time.Second)
	return nil
}

// goBuild writes a static binary for plat to out. The environment is fixed
// wherever it changes the output, so two builds of one commit match.
func goBuild(ctx context.Context, spec Spec, plat v1.Platform, out string) error {
	ldflags := strings.Join(append([]string{"-s", "-w", "-buildid="}, spec.LDFlags...), " ")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", ldflags, "-o", out, spec.Main)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(),
		"CGO_ENABLED=0", "GOOS="+plat.OS, "GOARCH="+plat.Architecture,
		"GOAMD64=v1", "GOARM64=v8.0", "GOEXPERIMENT=", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w: %s", spec.Main, plat.OS, plat.Architecture, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// image is one platform's image: the base layer, then the binary's layer.
func image(spec Spec, plat v1.Platform, base v1.Layer, bin string) (v1.Image, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var t tarWriter
	t.dirs(spec.Created, path.Dir(spec.Binary))
	t.file(spec.Created, spec.Binary, 0o755, data)
	binLayer, err := t.layer()
	if err != nil {
		return nil, err
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: spec.Created}, CreatedBy: "ociimage: passwd, group, CA certificates, files"}},
		mutate.Addendum{Layer: binLayer, History: v1.History{Created: v1.Time{Time: spec.Created}, CreatedBy: "ociimage: go build " + spec.Main}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Created = v1.Time{Time: spec.Created}
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Cmd = spec.Cmd
	cf.Config.User = spec.User
	cf.Config.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}, spec.Env...)
	cf.Config.Labels = maps.Clone(spec.Labels)
	cf.Config.WorkingDir = spec.WorkingDir
	return mutate.ConfigFile(img, cf)
}

const passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
const group = "root:x:0:\nnonroot:x:65532:\n"

// baseLayer holds what every image of this module shares: passwd, group,
// /tmp, CA certificates and the Spec's extra files.
func baseLayer(spec Spec) (v1.Layer, error) {
	var t tarWriter
	at := spec.Created
	t.dirs(at, "/etc", "/home/nonroot", "/root")
	t.dir(at, "/tmp", 0o1777)
	t.file(at, "/etc/passwd", 0o644, []byte(passwd))
	t.file(at, "/etc/group", 0o644, []byte(group))
	if spec.CACertificates != "none" {
		ca, err := os.ReadFile(spec.CACertificates)
		if err != nil {
			return nil, fmt.Errorf("spec ca certificates: %w", err)
		}
		t.dirs(at, "/etc/ssl/certs")
		t.file(at, "/etc/ssl/certs/ca-certificates.crt", 0o644, ca)
	}
	files := slices.Clone(spec.Files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	for _, f := range files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		t.dirs(at, path.Dir(f.Path))
		t.file(at, f.Path, mode, f.Data)
	}
	return t.layer()
}

// tarWriter writes a layer's tar with fixed owners and times, each
// directory once, in the order given.
type tarWriter struct {
	buf  bytes.Buffer
	tw   *tar.Writer
	seen map[string]bool
	err  error
}

func (t *tarWriter) header(h *tar.Header, data []byte) {
	if t.tw == nil {
		t.tw = tar.NewWriter(&t.buf)
		t.seen = map[string]bool{}
	}
	if t.err != nil {
		return
	}
	h.Format = tar.FormatPAX
	h.Uname, h.Gname = "root", "root"
	if h.Name == "home/nonroot/" {
		h.Uid, h.Gid, h.Uname, h.Gname = 65532, 65532, "nonroot", "nonroot"
	}
	if t.err = t.tw.WriteHeader(h); t.err == nil && data != nil {
		_, t.err = t.tw.Write(data)
	}
}

// dirs writes every directory on the way to each path, 0o755.
func (t *tarWriter) dirs(at time.Time, paths ...string) {
	for _, p := range paths {
		parts := strings.Split(strings.Trim(p, "/"), "/")
		for i := range parts {
			if parts[i] == "" {
				continue
			}
			t.dir(at, "/"+strings.Join(parts[:i+1], "/"), 0o755)
		}
	}
}

func (t *tarWriter) dir(at time.Time, p string, mode int64) {
	n := strings.TrimPrefix(p, "/") + "/"
	if t.seen[n] {
		return
	}
	t.header(&tar.Header{Typeflag: tar.TypeDir, Name: n, Mode: mode, ModTime: at}, nil)
	t.seen[n] = true
}

func (t *tarWriter) file(at time.Time, p string, mode int64, data []byte) {
	t.header(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: int64(len(data)), ModTime: at}, data)
}

func (t *tarWriter) layer() (v1.Layer, error) {
	if t.tw == nil {
		t.header(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}, nil)
	}
	if t.err != nil {
		return nil, t.err
	}
	if err := t.tw.Close(); err != nil {
		return nil, err
	}
	data := t.buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
