// Package metallb builds MetalLB v0.15.2 — the release test/metallb pins —
// from the Go module proxy for the labs that measure vipspeaker beside it:
// its speaker and controller binaries (test/e2e/sidebyside runs them as
// processes) and its source folder (CRDs and config/manifests, which
// test/lab/realnodes applies). Nothing of MetalLB is copied into this
// repository.
package metallb

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// Version and Module are the release test/metallb's go.mod pins.
const (
	Version = "v0.15.2"
	Module  = "go.universe.tf/metallb"
)

// UnavailableError is a build that failed because this machine lacks what
// it needs (the go tool, the module proxy), not because of the code.
type UnavailableError struct{ Err error }

func (u UnavailableError) Error() string { return u.Err.Error() }
func (u UnavailableError) Unwrap() error { return u.Err }

// IsUnavailable says whether err (from Source or Binaries) means the
// machine cannot build MetalLB, so a test skips rather than fails.
func IsUnavailable(err error) bool {
	var u UnavailableError
	return errors.As(err, &u)
}

// Build is what Binaries returns: the two binaries and the module's source
// folder.
type Build struct {
	Speaker, Controller, Src string
}

var once struct {
	src, bin       sync.Once
	srcDir, goBin  string
	b              Build
	srcErr, binErr error
}

// ModDir is test/metallb, the module that pins MetalLB and its
// dependencies (they never enter vipspeaker's go.mod).
func ModDir() (string, error) {
	root, err := lab.ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "test", "metallb"), nil
}

// GoCmd is the go tool run in test/metallb with its go.mod and go.sum
// read-only and no workspace.
func GoCmd(args ...string) (*exec.Cmd, error) {
	modDir, err := ModDir()
	if err != nil {
		return nil, err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		if goBin, err = exec.LookPath("/usr/local/go/bin/go"); err != nil {
			return nil, UnavailableError{fmt.Errorf("build MetalLB %s: no go tool: %w", Version, err)}
		}
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOWORK=off")
	return cmd, nil
}

// Source returns the module's source folder (config/crd/bases,
// config/manifests), downloading the module if needed.
func Source() (string, error) {
	once.src.Do(func() {
		cmd, err := GoCmd("mod", "download", "-json", Module)
		if err != nil {
			once.srcErr = err
			return
		}
		out, err := cmd.Output()
		var dl struct{ Dir, Error string }
		if jerr := json.Unmarshal(out, &dl); jerr != nil || err != nil || dl.Dir == "" {
			once.srcErr = UnavailableError{fmt.Errorf("download %s@%s from the module proxy: %v %s", Module, Version, err, dl.Error)}
			return
		}
		once.srcDir = dl.Dir
	})
	return once.srcDir, once.srcErr
}

// Binaries builds MetalLB's speaker and controller from the module proxy
// with test/metallb's go.mod and go.sum, once per machine: the binaries
// are cached in <user cache>/vipspeaker-lab/metallb-<version>/.
func Binaries() (Build, error) {
	once.bin.Do(func() { once.b, once.binErr = build() })
	return once.b, once.binErr
}

func build() (Build, error) {
	var b Build
	var err error
	if b.Src, err = Source(); err != nil {
		return b, err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "vipspeaker-lab", "metallb-"+Version)
	b.Speaker, b.Controller = filepath.Join(dir, "speaker"), filepath.Join(dir, "controller")
	if isExec(b.Speaker) && isExec(b.Controller) {
		return b, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return b, fmt.Errorf("build MetalLB %s: %w", Version, err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return b, fmt.Errorf("build MetalLB %s: %w", Version, err)
	}
	defer os.RemoveAll(tmp)
	cmd, err := GoCmd("build", "-o", tmp+"/", Module+"/speaker", Module+"/controller")
	if err != nil {
		return b, err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		err = fmt.Errorf("build MetalLB %s in %s: %w: %s", Version, cmd.Dir, err, strings.TrimSpace(string(out)))
		if NetworkTrouble(string(out)) {
			return b, UnavailableError{err}
		}
		return b, err
	}
	// Renames are atomic: a concurrent build elsewhere at worst replaces an
	// identical binary.
	for _, n := range []string{"speaker", "controller"} {
		if err := os.Rename(filepath.Join(tmp, n), filepath.Join(dir, n)); err != nil {
			return b, fmt.Errorf("build MetalLB %s: %w", Version, err)
		}
	}
	return b, nil
}

// NetworkTrouble says whether go build's output blames the module proxy or
// the network rather than the code.
func NetworkTrouble(out string) bool {
	for _, s := range []string{"dial tcp", "no such host", "proxy.golang.org", "GOPROXY", "i/o timeout", "connection refused", "403 Forbidden", "404 Not Found", "410 Gone", "missing go.sum entry"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// ReadCRD reads one CRD file and widens its 32-bit integers whose declared
// maximum does not fit 32 bits (WidenInt32).
func ReadCRD(path string) (*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CRD: %w", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("CRD %s: %w", filepath.Base(path), err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		return nil, fmt.Errorf("CRD %s: %w", filepath.Base(path), err)
	}
	WidenInt32(u.Object)
	return u, nil
}

// WidenInt32 walks a decoded schema and turns `format: int32` into int64
// where the node's maximum exceeds math.MaxInt32. It returns how many
// nodes it changed.
//
// MetalLB declares the ASNs (BGPPeer myASN, peerASN) `format: int32` with
// `maximum: 4294967295`, the unsigned 32-bit ASN range. kube-apiserver 1.37
// accepts that CRD but then refuses every BGPPeer, whatever its ASNs:
// "Maximum boundary value must be of type integer with format int32 in
// spec.myASN" (it checks the bound against the format when validating
// objects; measured here). int64 holds the range and is what the schema
// means; MetalLB's own Go types (uint32) are not affected. The fix is made
// in memory: nothing of MetalLB is copied.
func WidenInt32(v any) int {
	n := 0
	switch v := v.(type) {
	case map[string]any:
		if v["format"] == "int32" {
			if max, ok := asFloat(v["maximum"]); ok && max > math.MaxInt32 {
				v["format"] = "int64"
				n++
			}
		}
		for _, c := range v {
			n += WidenInt32(c)
		}
	case []any:
		for _, c := range v {
			n += WidenInt32(c)
		}
	}
	return n
}

func asFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case int64:
		return float64(v), true
	case float64:
		return v, true
	case int:
		return float64(v), true
	}
	return 0, false
}

// NativeManifest is the module's config/manifests/metallb-native.yaml —
// what MetalLB's documentation has users apply for the FRR-less native
// mode — with every CRD's too-narrow integers widened (WidenInt32), as one
// YAML stream for kubectl apply. Nothing else is changed.
func NativeManifest() (string, error) {
	src, err := Source()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(filepath.Join(src, "config", "manifests", "metallb-native.yaml"))
	if err != nil {
		return "", err
	}
	docs := strings.Split(string(data), "\n---\n")
	for i, doc := range docs {
		if !strings.Contains(doc, "\nkind: CustomResourceDefinition\n") {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return "", fmt.Errorf("metallb-native.yaml document %d: %w", i+1, err)
		}
		var obj map[string]any
		if err := json.Unmarshal(js, &obj); err != nil {
			return "", fmt.Errorf("metallb-native.yaml document %d: %w", i+1, err)
		}
		WidenInt32(obj)
		out, err := yaml.Marshal(obj)
		if err != nil {
			return "", err
		}
		docs[i] = string(out)
	}
	return strings.Join(docs, "\n---\n"), nil
}
