#!/usr/bin/env bash
# Build KWOK's controller (sigs.k8s.io/kwok/cmd/kwok) into the test cache
# folder and print its path; beside it, <path>-stages.yaml holds the
# project's own stages the lab runs it with (node: initialize, heartbeat
# with Lease; pod: fast). Skips the build when the binary is there.
#   VIPSPEAKER_CACHE   cache folder (default: $XDG_CACHE_HOME/vipspeaker or ~/.cache/vipspeaker)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VIPSPEAKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vipspeaker}
version=$(awk '{for (i = 1; i < NF; i++) if ($i == "sigs.k8s.io/kwok") {print $(i + 1); exit}}' "$here/go.mod")
export PATH=/usr/local/go/bin:$PATH
mkdir -p "$cache"
out=$cache/kwok-$version
if [ ! -x "$out" ]; then
	exec 9>"$cache/.kwok-$version.lock"
	flock 9
	if [ ! -x "$out" ]; then
		start=$(date +%s)
		(cd "$here" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$out.tmp.$$" sigs.k8s.io/kwok/cmd/kwok 1>&2)
		src=$(cd "$here" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
		for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
			pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
			echo "---"
			cat "$src/kustomize/stage/$f"
		done >"$out-stages.yaml"
		mv "$out.tmp.$$" "$out"
		echo "build.sh: built kwok $version in $(( $(date +%s) - start )) s" >&2
	fi
	exec 9>&-
fi
echo "$out"
