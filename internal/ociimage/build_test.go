package ociimage

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testSpec builds this module's smallest main package, the image tool
// itself, so the test does not depend on anything another package adds.
func testSpec() Spec {
	return Spec{
		Name:    "vsimg-test",
		Tag:     "t1",
		Main:    "./hack/image",
		Dir:     moduleRoot(),
		LDFlags: []string{"-X main.version=t1"},
		Cmd:     []string{"-h"},
		Labels:  map[string]string{"org.opencontainers.image.version": "t1"},
		Files:   []File{{Path: "/etc/vipspeaker/note", Data: []byte("hello\n")}},
		Created: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC),
	}
}

func moduleRoot() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "../..")
}

var (
	built    *Result
	builtErr error
)

// buildOnce shares one build between the tests of this file (a cross
// build of two platforms takes a while on a loaded machine).
func buildOnce(t *testing.T) *Result {
	t.Helper()
	if built == nil && builtErr == nil {
		built, builtErr = Build(context.Background(), testSpec())
	}
	if builtErr != nil {
		t.Fatal(builtErr)
	}
	return built
}

func TestBuildTwiceSameDigest(t *testing.T) {
	first := buildOnce(t)
	second, err := Build(context.Background(), testSpec())
	if err != nil {
		t.Fatal(err)
	}
	d1, err := first.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d2, err := second.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Fatalf("two builds of one tree: index digests %s and %s differ", d1, d2)
	}
	t.Logf("index digest %s, twice", d1)
}

func TestIndexHasBothPlatforms(t *testing.T) {
	res := buildOnce(t)
	im, err := res.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", im.MediaType, types.OCIImageIndex)
	}
	var got []string
	for _, d := range im.Manifests {
		got = append(got, d.Platform.String())
		img, err := res.Index.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != d.Platform.Architecture || cf.OS != "linux" {
			t.Errorf("%s: config says %s/%s", d.Platform, cf.OS, cf.Architecture)
		}
		if diff := cmp.Diff([]string{"/usr/local/bin/image"}, cf.Config.Entrypoint); diff != "" {
			t.Errorf("%s entrypoint (-want +got):\n%s", d.Platform, diff)
		}
		if cf.Config.User != NonRoot || cf.Config.Labels["org.opencontainers.image.version"] != "t1" {
			t.Errorf("%s: user %q labels %v", d.Platform, cf.Config.User, cf.Config.Labels)
		}
		files := imageFiles(t, img)
		for _, want := range []string{"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "etc/vipspeaker/note", "usr/local/bin/image", "tmp/"} {
			h, ok := files[want]
			if !ok {
				t.Errorf("%s: no %s in the image", d.Platform, want)
				continue
			}
			if !h.ModTime.Equal(testSpec().Created) {
				t.Errorf("%s: %s has mtime %s, want the fixed %s", d.Platform, want, h.ModTime, testSpec().Created)
			}
		}
		if h := files["usr/local/bin/image"]; h != nil && h.Mode&0o111 == 0 {
			t.Errorf("%s: binary mode %o is not executable", d.Platform, h.Mode)
		}
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, got); diff != "" {
		t.Errorf("platforms (-want +got):\n%s", diff)
	}
}

// imageFiles reads the headers of every layer.
func imageFiles(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*tar.Header{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			out[h.Name] = h
		}
		rc.Close()
	}
	return out
}

func TestWriteLayoutAndTarball(t *testing.T) {
	res := buildOnce(t)
	dir := t.TempDir()
	if err := res.WriteLayout(filepath.Join(dir, "oci")); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	top, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := res.Digest()
	if len(top.Manifests) != 1 || top.Manifests[0].Digest != want {
		t.Fatalf("layout index.json lists %+v, want the index %s", top.Manifests, want)
	}
	if got := top.Manifests[0].Annotations["io.containerd.image.name"]; got != "docker.io/library/vsimg-test:t1" {
		t.Errorf("containerd name annotation %q", got)
	}
	tarPath := filepath.Join(dir, "arm64.tar")
	if err := res.WriteTarball(tarPath, "linux/arm64"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if !slices.Contains(names, "manifest.json") {
		t.Errorf("tarball holds %v, no manifest.json (docker-archive)", names)
	}
	if err := res.WriteTarball(tarPath, "linux/s390x"); err == nil || !strings.Contains(err.Error(), "not in the index") {
		t.Errorf("tarball of a platform not built: err %v", err)
	}
}

func TestSpecErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Spec)
		want string
	}{
		{"no name", func(s *Spec) { s.Name = "" }, "spec name"},
		{"no main", func(s *Spec) { s.Main = "" }, "spec main"},
		{"windows", func(s *Spec) { s.Platforms = []string{"windows/amd64"} }, "spec platform"},
		{"relative file", func(s *Spec) { s.Files = []File{{Path: "etc/x"}} }, "spec file"},
		{"missing ca", func(s *Spec) { s.CACertificates = "/nonexistent/ca.crt" }, "spec ca certificates"},
		{"bad main", func(s *Spec) { s.Main = "./no/such/package"; s.Platforms = []string{"linux/amd64"} }, "go build ./no/such/package"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSpec()
			tc.mod(&s)
			_, err := Build(context.Background(), s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one naming %q", err, tc.want)
			}
		})
	}
}
