// Command image builds a container image of a main package of this module
// with Go alone (no Docker, no registry, no base image) — `make image` runs
// it for the agent:
//
//	go run ./hack/image                        # build/image/vipspeaker-<tag>/
//	go run ./hack/image -push REGISTRY/vipspeaker:TAG
//	go run ./hack/image -name httpecho -main ./test/cmd/httpecho -tag lab
//
// The tag defaults to the Helm chart's appVersion, the tag deploy/kustomize
// and the chart name the image by. It writes, under -out/<name>-<tag>/, an
// OCI layout of the multi-platform index (oci/) and one docker-archive
// tarball per platform (<name>-<tag>-linux-amd64.tar), which `ctr -n k8s.io images import`
// loads, and prints the index digest. With -push it also uploads the index
// to the given reference with the credentials of ~/.docker/config.json.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/ociimage"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		imgName   = flag.String("name", "vipspeaker", "image name (no registry, no tag)")
		mainPkg   = flag.String("main", "./cmd/vipspeaker", "main package to build")
		tag       = flag.String("tag", "", "image tag (default: the Helm chart's appVersion, the tag deploy/ names)")
		version   = flag.String("version", "", "-X main.version and the version label (default: git describe --tags --always --dirty)")
		commit    = flag.String("commit", "", "-X main.commit (default: git rev-parse HEAD)")
		out       = flag.String("out", "build/image", "output folder")
		platforms = flag.String("platforms", strings.Join(ociimage.DefaultPlatforms, ","), "comma-separated os/arch list")
		user      = flag.String("user", ociimage.NonRoot, "image user (the manifests set the agent's runAsUser)")
		caCerts   = flag.String("ca-certs", ociimage.DefaultCACertificates, `CA bundle to include ("none" leaves it out)`)
		cmdArgs   = flag.String("cmd", "", "comma-separated default arguments (CMD)")
		push      = flag.String("push", "", "also push the index to this reference, e.g. registry.example.com/vipspeaker:v1")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	if *version == "" {
		*version = git("describe", "--tags", "--always", "--dirty")
	}
	if *version == "" {
		*version = "dev"
	}
	if *tag == "" {
		t, err := chartAppVersion(chartFile)
		if err != nil {
			return fmt.Errorf("default tag: %w (or pass -tag)", err)
		}
		*tag = t
	}
	if *commit == "" {
		*commit = git("rev-parse", "HEAD")
	}
	spec := ociimage.Spec{
		Name:           *imgName,
		Tag:            *tag,
		Main:           *mainPkg,
		LDFlags:        []string{"-X main.version=" + *version, "-X main.commit=" + *commit},
		Platforms:      strings.Split(*platforms, ","),
		User:           *user,
		CACertificates: *caCerts,
		Created:        created(),
		Labels: map[string]string{
			"org.opencontainers.image.title":    *imgName,
			"org.opencontainers.image.version":  *version,
			"org.opencontainers.image.revision": *commit,
			"org.opencontainers.image.source":   "https://github.com/vipspeaker/vipspeaker",
		},
	}
	if *imgName == "vipspeaker" && *cmdArgs == "" {
		*cmdArgs = "run"
	}
	if *cmdArgs != "" {
		spec.Cmd = strings.Split(*cmdArgs, ",")
	}
	start := time.Now()
	res, err := ociimage.Build(ctx, spec)
	if err != nil {
		return err
	}
	dir := filepath.Join(*out, *imgName+"-"+*tag)
	if err := res.WriteLayout(filepath.Join(dir, "oci")); err != nil {
		return err
	}
	var tars []string
	for _, p := range spec.Platforms {
		tar := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.tar", *imgName, *tag, strings.ReplaceAll(p, "/", "-")))
		if err := res.WriteTarball(tar, p); err != nil {
			return err
		}
		tars = append(tars, tar)
	}
	digest, err := res.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("image %s (%s) digest %s built in %s\n", res.Ref.String(), strings.Join(spec.Platforms, ", "), digest, time.Since(start).Round(100*time.Millisecond))
	fmt.Printf("  OCI layout: %s\n", filepath.Join(dir, "oci"))
	for _, t := range tars {
		fmt.Printf("  tarball:    %s   (ctr -n k8s.io images import %s)\n", t, t)
	}
	if *push == "" {
		fmt.Printf("push to your registry: go run ./hack/image -push REGISTRY/%s:%s\n", *imgName, *tag)
		return nil
	}
	if err := res.Push(ctx, *push); err != nil {
		return err
	}
	fmt.Printf("pushed %s@%s\n", *push, digest)
	return nil
}

// chartFile holds the release version deploy/ names the image by.
const chartFile = "deploy/helm/vipspeaker/Chart.yaml"

// chartAppVersion reads appVersion from a Chart.yaml.
func chartAppVersion(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "appVersion:"); ok {
			if v = strings.Trim(strings.TrimSpace(v), `"'`); v != "" {
				return v, nil
			}
		}
	}
	return "", fmt.Errorf("%s: no appVersion", path)
}

// created is SOURCE_DATE_EPOCH if set, else the commit time, else the Unix
// epoch: a time that is the same for every build of one commit.
func created() time.Time {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		s = git("log", "-1", "--format=%ct")
	}
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(sec, 0)
	}
	return time.Unix(0, 0)
}

func git(args ...string) string {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
