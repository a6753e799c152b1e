package lab

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// modulePath is the project's Go module.
const modulePath = "github.com/vipspeaker/vipspeaker"

// defaultGoBGPVersion is used when go.mod names no GoBGP v4 version.
const defaultGoBGPVersion = "v4.8.0"

// ModuleRoot finds the project's module root by walking up from the working
// folder to the go.mod of github.com/vipspeaker/vipspeaker.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && moduleLine(string(b)) == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find module root: no go.mod of %s above the working folder", modulePath)
		}
		dir = parent
	}
}

func moduleLine(gomod string) string {
	sc := bufio.NewScanner(strings.NewReader(gomod))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// binRoot holds per-process build output: binRoot()/<pid>/...
func binRoot() string { return filepath.Join(os.TempDir(), "vipspeaker-lab-bin") }

type buildResult struct {
	once sync.Once
	path string
	err  error
}

var (
	builds   sync.Map // key -> *buildResult
	buildSeq atomic.Int64
)

// BuildBinary builds a package of this module (e.g. "./cmd/vipspeaker")
// once per process and returns the binary's path. Extra go build flags
// (e.g. "-race") are part of the cache key. The binaries live in
// /tmp/vipspeaker-lab-bin/<pid>/ and are swept once the process is gone.
func BuildBinary(pkg string, flags ...string) (string, error) {
	key := pkg + "\x00" + strings.Join(flags, "\x00")
	v, _ := builds.LoadOrStore(key, &buildResult{})
	r := v.(*buildResult)
	r.once.Do(func() {
		root, err := ModuleRoot()
		if err != nil {
			r.err = err
			return
		}
		n := buildSeq.Add(1)
		out := filepath.Join(binRoot(), strconv.Itoa(os.Getpid()), fmt.Sprintf("%d-%s", n, path.Base(pkg)))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			r.err = fmt.Errorf("build %s: %w", pkg, err)
			return
		}
		args := append([]string{"build", "-o", out}, flags...)
		args = append(args, pkg)
		cmd := exec.Command(goTool(), args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		if b, err := cmd.CombinedOutput(); err != nil {
			r.err = fmt.Errorf("build %s: %w: %s", pkg, err, strings.TrimSpace(string(b)))
			return
		}
		r.path = out
	})
	return r.path, r.err
}

// GoBGPVersion is the GoBGP v4 version the module requires (go.mod), so
// the lab's gobgpd matches the library vipspeaker embeds.
func GoBGPVersion() string {
	root, err := ModuleRoot()
	if err != nil {
		return defaultGoBGPVersion
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return defaultGoBGPVersion
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && f[0] == "github.com/osrg/gobgp/v4" && strings.HasPrefix(f[1], "v") {
			return f[1]
		}
	}
	return defaultGoBGPVersion
}

var gobgpBuild struct {
	once        sync.Once
	gobgpd, cli string
	err         error
}

// GoBGPBinaries returns gobgpd and the gobgp CLI at GoBGPVersion, built from
// the Go module proxy with `go install ...@version` (GoBGP's own go.mod, so
// this project's go.mod is untouched). They are cached across processes in
// <user cache>/vipspeaker-lab/gobgp-<version>/: the first build takes
// minutes, later ones nothing. VIPSPEAKER_GOBGPD and VIPSPEAKER_GOBGP
// override the paths.
func GoBGPBinaries() (gobgpd, gobgp string, err error) {
	g := &gobgpBuild
	g.once.Do(func() {
		if d, c := os.Getenv("VIPSPEAKER_GOBGPD"), os.Getenv("VIPSPEAKER_GOBGP"); d != "" && c != "" {
			g.gobgpd, g.cli = d, c
			return
		}
		ver := GoBGPVersion()
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "vipspeaker-lab", "gobgp-"+ver)
		d, c := filepath.Join(dir, "gobgpd"), filepath.Join(dir, "gobgp")
		if isExecutable(d) && isExecutable(c) {
			g.gobgpd, g.cli = d, c
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			g.err = fmt.Errorf("build gobgpd %s: %w", ver, err)
			return
		}
		tmp, err := os.MkdirTemp(dir, "build-")
		if err != nil {
			g.err = fmt.Errorf("build gobgpd %s: %w", ver, err)
			return
		}
		defer os.RemoveAll(tmp)
		cmd := exec.Command(goTool(), "install",
			"github.com/osrg/gobgp/v4/cmd/gobgpd@"+ver,
			"github.com/osrg/gobgp/v4/cmd/gobgp@"+ver)
		cmd.Dir = os.TempDir() // outside any module
		cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=", "GOWORK=off")
		if b, err := cmd.CombinedOutput(); err != nil {
			g.err = fmt.Errorf("build gobgpd %s: %w: %s", ver, err, strings.TrimSpace(string(b)))
			return
		}
		// Renames are atomic: a concurrent builder in another process
		// at worst replaces an identical binary.
		for _, n := range []string{"gobgpd", "gobgp"} {
			if err := os.Rename(filepath.Join(tmp, n), filepath.Join(dir, n)); err != nil {
				g.err = fmt.Errorf("build gobgpd %s: %w", ver, err)
				return
			}
		}
		g.gobgpd, g.cli = d, c
	})
	return g.gobgpd, g.cli, g.err
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

var errNotInstalled = errors.New("not installed")
