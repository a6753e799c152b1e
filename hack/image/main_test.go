package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The tag `make image` gives the image by default is the one deploy/ names:
// the chart's appVersion, which values.yaml falls back to, and the newTag
// of deploy/kustomize for the image "vipspeaker" with no other name.
func TestDefaultTagIsWhatDeployNames(t *testing.T) {
	root := filepath.Join("..", "..")
	tag, err := chartAppVersion(filepath.Join(root, chartFile))
	if err != nil {
		t.Fatal(err)
	}
	kust, err := os.ReadFile(filepath.Join(root, "deploy/kustomize/kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := "images:\n  - name: vipspeaker\n    newTag: \"" + tag + "\"\n"
	if !strings.Contains(string(kust), want) {
		t.Errorf("deploy/kustomize/kustomization.yaml does not name the image make image builds; want\n%s", want)
	}
	values, err := os.ReadFile(filepath.Join(root, "deploy/helm/vipspeaker/values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(values), "  repository: vipspeaker\n  tag: \"\" ") {
		t.Errorf("values.yaml: want image.repository vipspeaker and an empty tag (the appVersion %s)", tag)
	}
	if _, err := os.Stat(filepath.Join(root, "deploy/kustomize/Dockerfile")); err == nil {
		t.Error("deploy/kustomize/Dockerfile is back: the image users get is the one make image builds (docs/decisions.md)")
	}
}
