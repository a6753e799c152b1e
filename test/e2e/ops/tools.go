package ops

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// Pinned tool versions, built from the Go module proxy with `go install`
// into the cache folder once per machine (helm: a few minutes cold).
const (
	HelmModule       = "helm.sh/helm/v3/cmd/helm"
	HelmVersion      = "v3.22.0"
	KustomizeModule  = "sigs.k8s.io/kustomize/kustomize/v5"
	KustomizeVersion = "v5.8.1"
)

// ChartNamespace is the namespace the chart is rendered for, as
// deploy/kustomize's.
const ChartNamespace = "vipspeaker-system"

var toolMu sync.Mutex

// CacheDir is where built tools are kept: $VIPSPEAKER_CACHE, else
// $XDG_CACHE_HOME/vipspeaker, else ~/.cache/vipspeaker (as
// test/apiserver/build.sh).
func CacheDir() (string, error) {
	if c := os.Getenv("VIPSPEAKER_CACHE"); c != "" {
		return c, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the cache folder: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "vipspeaker"), nil
}

// Tool installs module@version's command (named bin) into the cache folder
// unless it is there, and returns its path.
func Tool(module, version, bin string) (string, error) {
	toolMu.Lock()
	defer toolMu.Unlock()
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(cache, bin+"-"+version)
	if fi, err := os.Stat(path); err == nil && fi.Mode()&0o111 != 0 {
		return path, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("create cache folder: %w", err)
	}
	gobin, err := os.MkdirTemp(cache, ".install-"+bin+"-")
	if err != nil {
		return "", fmt.Errorf("create install folder: %w", err)
	}
	defer os.RemoveAll(gobin)
	goCmd := "go"
	if _, err := exec.LookPath("go"); err != nil {
		goCmd = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(goCmd, "install", module+"@"+version)
	// The project's GOFLAGS (-mod=mod) do not apply to module@version.
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", module, version, err, out)
	}
	if err := os.Rename(filepath.Join(gobin, bin), path); err != nil {
		return "", fmt.Errorf("install %s: %w", bin, err)
	}
	return path, nil
}

// Helm returns the pinned helm, building it on first use.
func Helm() (string, error) { return Tool(HelmModule, HelmVersion, "helm") }

// Kustomize returns the pinned kustomize, building it on first use.
func Kustomize() (string, error) { return Tool(KustomizeModule, KustomizeVersion, "kustomize") }

// ChartDir is deploy/helm/vipspeaker of the module.
func ChartDir() (string, error) {
	root, err := lab.ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "deploy", "helm", "vipspeaker"), nil
}

// HelmTemplate renders the chart as release "vipspeaker" in
// vipspeaker-system with extra helm arguments (-f, --set ...) and returns
// the YAML stream, ready to apply.
func HelmTemplate(args ...string) (string, error) {
	return helmOnChart(func(helm, dir string) []string {
		return append([]string{helm, "template", "vipspeaker", dir, "--namespace", ChartNamespace}, args...)
	})
}

// KustomizeBuild renders deploy/kustomize.
func KustomizeBuild() (string, error) {
	kz, err := Kustomize()
	if err != nil {
		return "", err
	}
	root, err := lab.ModuleRoot()
	if err != nil {
		return "", err
	}
	return output(kz, "build", filepath.Join(root, "deploy", "kustomize"))
}

// HelmLint runs `helm lint --strict` on the chart with extra arguments and
// returns its report.
func HelmLint(args ...string) (string, error) {
	return helmOnChart(func(helm, dir string) []string { return append([]string{helm, "lint", "--strict", dir}, args...) })
}

// helmOnChart runs the helm command argv builds from the helm binary and
// the chart's folder, and returns its output.
func helmOnChart(argv func(helm, dir string) []string) (string, error) {
	helm, err := Helm()
	if err != nil {
		return "", err
	}
	dir, err := ChartDir()
	if err != nil {
		return "", err
	}
	return output(argv(helm, dir)...)
}

func output(argv ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s%s", strings.Join(argv, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}
