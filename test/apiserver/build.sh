#!/usr/bin/env bash
# Build the Kubernetes v1.37.2 components the e2e tests run into a cache
# folder and print their paths, one a line. Skips a build when the binary is
# already there.
#   build.sh              kube-apiserver (the API-only suites)
#   build.sh all          kube-apiserver, kubelet, kube-proxy,
#                         kube-controller-manager, kube-scheduler, kubectl
#                         (the real-node suites, test/lab/realnodes)
#   build.sh NAME...      those components
#   VIPSPEAKER_CACHE      cache folder (default: $XDG_CACHE_HOME/vipspeaker or ~/.cache/vipspeaker)
# etcd comes from Debian's etcd-server package (scripts/deps.sh). Cold on two
# cores: kube-apiserver and kubelet about 4 minutes each, the rest well under.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VIPSPEAKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vipspeaker}
version=v1.37.2
all=(kube-apiserver kubelet kube-proxy kube-controller-manager kube-scheduler kubectl)
if [ $# -eq 0 ]; then
	set -- kube-apiserver
elif [ "$1" = all ]; then
	set -- "${all[@]}"
fi
export PATH=/usr/local/go/bin:$PATH
mkdir -p "$cache"
for name in "$@"; do
	case " ${all[*]} " in *" $name "*) ;; *) echo "build.sh: unknown component $name (want one of: ${all[*]})" >&2; exit 2 ;; esac
	out=$cache/$name-$version
	if [ ! -x "$out" ]; then
		# One build of a component at a time: test processes started
		# together on a cold machine wait for the first build and use it
		# (seen: five concurrent kube-apiserver builds on two cores).
		exec 9>"$cache/.$name-$version.lock"
		flock 9
		if [ ! -x "$out" ]; then
			start=$(date +%s)
			# -mod=mod: go.sum is filled from the module proxy on first use.
			# CGO_ENABLED=0: static binaries; kubelet and kube-proxy work without cgo.
			(cd "$here" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$out.tmp.$$" "k8s.io/kubernetes/cmd/$name" 1>&2)
			mv "$out.tmp.$$" "$out"
			echo "build.sh: built $name $version in $(( $(date +%s) - start )) s" >&2
		fi
		exec 9>&-
	fi
	echo "$out"
done
