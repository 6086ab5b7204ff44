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
# Everything lives under ./bench-data/scale (made anew on each run); the
# report is bench-data/scale/report.txt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"

sizes="${BENCH_SCALE_SHARDS:-100 1000 10000}"
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
cleanup() {
  if [ -n "$ctld_pid" ] && kill -0 "$ctld_pid" 2>/dev/null; then
    kill "$ctld_pid"
    for _ in $(seq 1 100); do kill -0 "$ctld_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$ctld_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

{
  echo "cairn bench-scale: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "strategy: full 10m, incremental 1m, retention min_count 1; heartbeats every 2 s; each simulated job takes 1 s; $seconds s per size"
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
  "$cairn" ctld --port "$port" --data-dir "$run/ctld" --config "$run/cairn.json" >"$run/ctld.log" 2>&1 &
  ctld_pid=$!
  for _ in $(seq 1 100); do [ -s "$run/ctld/tablet-token" ] && break; sleep 0.1; done
  sleep 1
  echo | tee -a "$report"
  "$sim" --ctld "127.0.0.1:$port" --tablet-token-file "$run/ctld/tablet-token" --config "$run/cairn.json" \
    --shards "$n" --seconds "$seconds" --ctld-pid "$ctld_pid" --report "$run/report.json" 2>"$run/sim.log" | tee -a "$report"
  cleanup
  ctld_pid=""
  echo "  ctld log lines: $(wc -l <"$run/ctld.log"), warnings: $(grep -c 'warning' "$run/ctld.log" || true)" | tee -a "$report"
done
echo
echo "Report: $report"
