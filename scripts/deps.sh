#!/usr/bin/env bash
# Installs what the lab, the tests and the demo need on Debian 12, skipping
# whatever is already there. Safe to run again and again.
set -euo pipefail

pkgs=(iproute2 iputils-ping frr bird2 clang llvm libbpf-dev iptables arping ndisc6 tcpdump procps psmisc prometheus-node-exporter etcd-server
  containerd runc containernetworking-plugins conntrack socat nftables)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Installing FRR, BIRD or containerd must not leave system-wide daemons
  # running: the lab starts its own inside network namespaces (containerd:
  # one per real node, test/lab/realnodes).
  for s in frr bird prometheus-node-exporter etcd containerd; do
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$s" >/dev/null 2>&1 || true; fi
    if [ -x "/etc/init.d/$s" ] && command -v service >/dev/null 2>&1; then
      service "$s" stop >/dev/null 2>&1 || true
      command -v update-rc.d >/dev/null 2>&1 && update-rc.d "$s" disable >/dev/null 2>&1 || true
    fi
  done
fi

if ! command -v go >/dev/null 2>&1; then
  echo "deps: Go is not on PATH (want Go 1.26 at /usr/local/go/bin)" >&2
  exit 1
fi
go mod download
