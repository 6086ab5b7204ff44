#!/usr/bin/env bash
# The scheduler at fleet scale (issue 18, docs/BENCHMARKS.md): the real
# `cairn ctld`, scheduler on, against N simulated tablets (cairn-fleet-sim)
# that register, heartbeat every 2 s, take jobs on their own API, report
# progress and results, and write each backup in the real storage format.
# Strategy: full every 10m, incremental every 1m; retention min_count 1
# (each simulated tablet prunes after its backup, as a real one does, so the
# stored history stops growing after the second full backup).
#
# Settings (environment):
#   BENCH_SCALE_SHARDS    the fleet sizes to run (default "100 1000 10000")
#   BENCH_SCALE_SECONDS   how long each size runs (default 600)
#   SWIFT_SCRATCH_PATH    swift build's --scratch-path (default ./.build)
#   BENCH_SCALE_TOPO      "sqlite" (default) or "etcd": ctld keeps its state in
#                         a one-member etcd started on loopback for each size
#                         (`etcd` from Debian's etcd-server; issue 16), and the
#                         report adds etcd's own CPU and RSS
#   BENCH_SCALE_CTLD_ARGS more arguments for `cairn ctld`, split on spaces, e.g.
#                         "--keep-jobs-per-shard 10 --keep-jobs-days 0" so the
#                         job history stops growing within a soak
# Everything lives under ./bench-data/scale (made anew on each run); the
# report is bench-data/scale/report.txt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"

sizes="${BENCH_SCALE_SHARDS:-100 1000 10000}"
topo="${BENCH_SCALE_TOPO:-sqlite}"
case "$topo" in
  sqlite) ;;
  etcd) command -v etcd >/dev/null 2>&1 || { echo "etcd is not installed: run scripts/install.sh (Debian's etcd-server)" >&2; exit 1; } ;;
  *) echo "BENCH_SCALE_TOPO must be sqlite or etcd, not $topo" >&2; exit 1 ;;
esac
seconds="${BENCH_SCALE_SECONDS:-600}"
scratch="${SWIFT_SCRATCH_PATH:-$here/.build}"

echo "Building cairn and cairn-fleet-sim (release; the first build takes several minutes)..."
mkdir -p "$scratch"
swift build -c release --product cairn --scratch-path "$scratch" >"$scratch/bench-scale-build.log" 2>&1 \
  && swift build -c release --product cairn-fleet-sim --scratch-path "$scratch" >>"$scratch/bench-scale-build.log" 2>&1 \
  || { cat "$scratch/bench-scale-build.log"; exit 1; }
cairn="$scratch/release/cairn"
sim="$scratch/release/cairn-fleet-sim"

data="$here/bench-data/scale"
rm -rf "$data"
mkdir -p "$data"
report="$data/report.txt"
ctld_pid=""
etcd_pid=""
stop_etcd() {
  if [ -n "$etcd_pid" ] && kill -0 "$etcd_pid" 2>/dev/null; then
    kill "$etcd_pid"
    for _ in $(seq 1 100); do kill -0 "$etcd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$etcd_pid" 2>/dev/null || true
  fi
  etcd_pid=""
}
cleanup() {
  # ctld first: it stops cleanly while etcd still answers (stopped the other
  # way round, its last scheduler pass warns that etcd is unreachable).
  if [ -n "$ctld_pid" ] && kill -0 "$ctld_pid" 2>/dev/null; then
    kill "$ctld_pid"
    for _ in $(seq 1 100); do kill -0 "$ctld_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$ctld_pid" 2>/dev/null || true
  fi
  stop_etcd
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

{
  echo "cairn bench-scale: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "strategy: full 10m, incremental 1m, retention min_count 1; heartbeats every 2 s; each simulated job takes 1 s; $seconds s per size; ctld's state in $topo${BENCH_SCALE_CTLD_ARGS:+; ctld $BENCH_SCALE_CTLD_ARGS}"
} | tee "$report"

for n in $sizes; do
  run="$data/$n"
  mkdir -p "$run/ctld" "$run/backups"
  cat >"$run/cairn.json" <<EOF
{
  "bucket": "file://$run/backups",
  "backup_strategy": { "full_backup_interval": "10m", "incremental_backup_interval": "1m" },
  "retention": { "min_count": 1 }
}
EOF
  port="$(free_port)"
  topo_args=()
  if [ "$topo" = etcd ]; then
    client_port="$(free_port)"; peer_port="$(free_port)"
    etcd --name bench --data-dir "$run/etcd" \
      --listen-client-urls "http://127.0.0.1:$client_port" --advertise-client-urls "http://127.0.0.1:$client_port" \
      --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
      --initial-cluster "bench=http://127.0.0.1:$peer_port" >"$run/etcd.log" 2>&1 &
    etcd_pid=$!
    for _ in $(seq 1 100); do
      curl -sf "http://127.0.0.1:$client_port/health" >/dev/null 2>&1 && break; sleep 0.1
    done
    topo_args=(--topo "etcd://127.0.0.1:$client_port/cairn-bench")
  fi
  # shellcheck disable=SC2086 # extra arguments split on spaces, as given
  "$cairn" ctld --port "$port" --data-dir "$run/ctld" --config "$run/cairn.json" "${topo_args[@]}" ${BENCH_SCALE_CTLD_ARGS:-} >"$run/ctld.log" 2>&1 &
  ctld_pid=$!
  for _ in $(seq 1 100); do [ -s "$run/ctld/tablet-token" ] && break; sleep 0.1; done
  sleep 1
  echo | tee -a "$report"
  "$sim" --ctld "127.0.0.1:$port" --tablet-token-file "$run/ctld/tablet-token" --config "$run/cairn.json" \
    --shards "$n" --seconds "$seconds" --ctld-pid "$ctld_pid" --report "$run/report.json" 2>"$run/sim.log" | tee -a "$report"
  if [ -n "$etcd_pid" ]; then
    # etcd's own cost, read before it stops: CPU over its life as a share of one core, and its peak RSS.
    python3 - "$etcd_pid" <<'PY' | tee -a "$report"
import os, sys
pid = sys.argv[1]
ticks = os.sysconf("SC_CLK_TCK")
fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
cpu = (int(fields[11]) + int(fields[12])) / ticks
start = int(fields[19]) / ticks
uptime = float(open("/proc/uptime").read().split()[0])
hwm = next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM"))
print(f"  etcd CPU (share of one core)   {100 * cpu / (uptime - start):.0f}%, peak RSS {int(hwm) // 1024} MiB")
PY
  fi
  cleanup
  ctld_pid=""
  echo "  ctld log lines: $(wc -l <"$run/ctld.log"), warnings: $(grep -c 'warning' "$run/ctld.log" || true)" | tee -a "$report"
done
echo
echo "Report: $report"
