// Command image builds a container image of a main package of this module
// with Go alone (no Docker, no registry, no base image) — `make image` runs
// it for the agent:
//
//	go run ./hack/image                        # build/image/vipspeaker-<version>/
//	go run ./hack/image -push REGISTRY/vipspeaker:TAG
//	go run ./hack/image -name httpecho -main ./test/cmd/httpecho -version lab
//
// It writes, under -out/<name>-<version>/, an OCI layout of the
// multi-platform index (oci/) and one docker-archive tarball per platform
// (<name>-<version>-linux-amd64.tar), which `ctr -n k8s.io images import`
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
		version   = flag.String("version", "", "image tag and -X main.version (default: git describe --tags --always --dirty)")
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
	if *commit == "" {
		*commit = git("rev-parse", "HEAD")
	}
	spec := ociimage.Spec{
		Name:           *imgName,
		Tag:            *version,
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
	dir := filepath.Join(*out, *imgName+"-"+*version)
	if err := res.WriteLayout(filepath.Join(dir, "oci")); err != nil {
		return err
	}
	var tars []string
	for _, p := range spec.Platforms {
		tar := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.tar", *imgName, *version, strings.ReplaceAll(p, "/", "-")))
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
		fmt.Printf("push to your registry: go run ./hack/image -version %s -push REGISTRY/%s:%s\n", *version, *imgName, *version)
		return nil
	}
	if err := res.Push(ctx, *push); err != nil {
		return err
	}
	fmt.Printf("pushed %s@%s\n", *push, digest)
	return nil
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
