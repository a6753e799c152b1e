// Package ociimage builds OCI images of this module's Go programs without
// Docker, a registry or a base image: an empty image plus layers holding a
// static binary (CGO_ENABLED=0, -trimpath, no build ID, no VCS stamp), a
// passwd/group with root and nonroot, and optionally the machine's CA
// certificates. Every file carries the same fixed time, so one commit, one
// Go toolchain and one CA bundle give the same index digest on every build.
//
// Build returns one OCI index with an image per platform; the result is
// written as an OCI layout (WriteLayout), as a docker-archive tarball per
// platform that `ctr -n k8s.io images import` loads (WriteTarball), or
// pushed to a registry (Push).
package ociimage
