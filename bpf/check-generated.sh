#!/usr/bin/env bash
# check-generated.sh: regenerate the bpf2go output in a scratch copy of the
# module and compare it with what is committed. Exit 0 when they are the
# same, 1 when they differ (or generation fails), with the difference.
# Needs clang and llvm-strip (Debian: clang llvm), as `make generate` does.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Only what `go generate` needs: the module files and this package.
cp "$root/go.mod" "$root/go.sum" "$tmp/"
mkdir -p "$tmp/bpf"
cp -R "$here/." "$tmp/bpf/"
rm -f "$tmp"/bpf/vip_bpfe[lb].go "$tmp"/bpf/vip_bpfe[lb].o

if ! (cd "$tmp/bpf" && GOFLAGS=-mod=mod go generate ./gen.go); then
	echo "check-generated: go generate failed" >&2
	exit 1
fi

status=0
for f in vip_bpfel.go vip_bpfel.o vip_bpfeb.go vip_bpfeb.o; do
	if ! cmp -s "$here/$f" "$tmp/bpf/$f"; then
		echo "check-generated: bpf/$f differs from a fresh generation; run 'make generate' and commit the result" >&2
		if [[ $f == *.go ]]; then
			diff -u "$here/$f" "$tmp/bpf/$f" >&2 || true
		fi
		status=1
	fi
done
[[ $status -eq 0 ]] && echo "check-generated: bpf2go output is up to date"
exit $status
