#!/usr/bin/env bash
# Build kube-apiserver v1.37.2 for the e2e tests into a cache folder and
# print its path. Skips the build when the binary is already there.
#   VIPSPEAKER_CACHE  cache folder (default: $XDG_CACHE_HOME/vipspeaker or ~/.cache/vipspeaker)
# etcd comes from Debian's etcd-server package (scripts/deps.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VIPSPEAKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vipspeaker}
version=v1.37.2
out=$cache/kube-apiserver-$version
if [ -x "$out" ]; then
	echo "$out"
	exit 0
fi
mkdir -p "$cache"
export PATH=/usr/local/go/bin:$PATH
cd "$here"
# -mod=mod: go.sum is filled from the module proxy on first use.
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$out.tmp.$$" k8s.io/kubernetes/cmd/kube-apiserver 1>&2
mv "$out.tmp.$$" "$out"
echo "$out"
