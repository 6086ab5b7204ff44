#!/usr/bin/env bash
# Cairn against the peer tools, side by side in one run (docs/BENCHMARKS.md):
#
#   issue 2  full backup and restore on file storage
#            vs mariadb-backup --stream=mbstream | zstd -3 -T0, and zstd -d | mbstream -x + --prepare
#   issue 3  an incremental after ~1% of rows changed vs a full backup, and the
#            point-in-time replay of BENCH_TXNS sysbench transactions
#            vs mariadb-binlog <the same binlogs> | mariadb
#   issue 4  full backup and restore on S3 (a local SeaweedFS) at each upload concurrency
#            vs the same stream piped through aws s3 cp
#   issue 11 continuous archiving under full-speed sysbench writes: lag p50/p99,
#            the archiver's CPU and peak RSS, and the replay of what it archived
#   issue 14 full backup and restore with encryption on vs off (file storage)
#   issue 12 the replay of issue 3's transactions through the restore server's SQL thread
#            vs mariadb-binlog --start-position | mariadb into a server with the same durability
#   delta    (issue 12) a physical delta after ~1% of rows changed vs a full backup, and the
#            restore of full + delta vs the full alone; the peer is
#            mariadb-backup --incremental-lsn --stream=mbstream | zstd -3 -T0
#
# Everything lives under ./bench-data (removed and made again on each run).
# Settings (environment):
#   BENCH_PRESET=small      a smoke run: 4 tables x 20,000 rows, 5,000 transactions
#   BENCH_TABLES, BENCH_ROWS  the sysbench dataset (default 8 x 600,000 rows: about 1.2 GiB of InnoDB data)
#   BENCH_TXNS              sysbench transactions replayed in issue 3 (default 100,000)
#   BENCH_ISSUES            which comparisons to run (default "2 3 4 12 delta"; also 11)
#   BENCH_ARCHIVE_SECONDS   issue 11: seconds of full-speed sysbench writes while archiving (default 300)
#   BENCH_ARCHIVE_INTERVAL  issue 11: the archiver's --interval (default 3s)
#   BENCH_CONCURRENCIES     upload/download concurrencies for issue 4 (default "1 4 8")
#   BENCH_BUFFER_POOL       the source server's InnoDB buffer pool (default 1G)
#   SWIFT_SCRATCH_PATH      swift build's --scratch-path (default ./.build)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"

if [ "${BENCH_PRESET:-}" = "small" ]; then
  tables="${BENCH_TABLES:-4}"; rows="${BENCH_ROWS:-20000}"; txns="${BENCH_TXNS:-5000}"
else
  tables="${BENCH_TABLES:-8}"; rows="${BENCH_ROWS:-600000}"; txns="${BENCH_TXNS:-100000}"
fi
issues="${BENCH_ISSUES:-2 3 4 12 14 delta}"
concurrencies="${BENCH_CONCURRENCIES:-1 4 8}"
archive_interval="${BENCH_ARCHIVE_INTERVAL:-3s}"
if [ "${BENCH_PRESET:-}" = "small" ]; then archive_seconds="${BENCH_ARCHIVE_SECONDS:-20}"; else archive_seconds="${BENCH_ARCHIVE_SECONDS:-300}"; fi
buffer_pool="${BENCH_BUFFER_POOL:-1G}"
scratch="${SWIFT_SCRATCH_PATH:-$here/.build}"
part_mib=5          # Cairn's default s3_part_size
range_mib=8         # Cairn's download range size
http_mib=16         # the S3 client itself (AsyncHTTPClient, SwiftNIO, BoringSSL), beyond its buffers
cores="$(nproc)"

bash scripts/install.sh
for tool in mariadbd mariadb mariadb-install-db mariadb-backup mbstream mariadb-binlog zstd sysbench python3 /usr/bin/time; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool is missing; run scripts/install.sh" >&2; exit 1; }
done
aws="$(command -v aws || true)"
[ -z "$aws" ] && [ -x "$here/.venv/bin/aws" ] && aws="$here/.venv/bin/aws"
weed="$here/.venv/bin/weed"
case " $issues " in *" 4 "*)
  [ -n "$aws" ] || { echo "bench: awscli is missing; run scripts/install.sh" >&2; exit 1; }
  [ -x "$weed" ] || { echo "bench: SeaweedFS is missing at $weed; run scripts/install.sh" >&2; exit 1; }
esac

echo "Building cairn (release; the first build takes several minutes)..."
mkdir -p "$scratch"
swift build -c release --product cairn --scratch-path "$scratch" >"$scratch/bench-build.log" 2>&1 \
  || { cat "$scratch/bench-build.log"; exit 1; }
cairn="$scratch/release/cairn"

data="$here/bench-data"
src="$data/source"
sock="$data/source.sock"
work="$data/work"
report="$data/report.txt"
user_arg=""
[ "$(id -u)" -eq 0 ] && user_arg="--user=root"

# ---------------------------------------------------------------- helpers

servers=()
weed_pid=""
stop_server() { # pid-file
  local pid
  pid="$(cat "$1" 2>/dev/null)" || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}
stop_weed() {
  [ -n "$weed_pid" ] || return 0
  kill "$weed_pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$weed_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$weed_pid" 2>/dev/null || true
  wait "$weed_pid" 2>/dev/null || true
  weed_pid=""
}
cleanup() {
  for p in "${servers[@]}"; do stop_server "$p"; done
  stop_weed
}
trap cleanup EXIT

# datadir socket server-id buffer-pool [mariadbd options...]. The options of
# Cairn's own restore server, but with MariaDB's default durability (every
# commit flushed), as the server an operator pipes `mariadb-binlog | mariadb`
# into would have; Cairn's restore server flushes at its clean shutdown
# instead (docs/BENCHMARKS.md). Issue 12 passes $restore_durability to
# compare at the same settings: the same durability and the same I/O path
# (buffered, so reads of the files the restore just wrote come from the page cache).
restore_durability=(--innodb-flush-log-at-trx-commit=0 --sync-binlog=0 --innodb-doublewrite=0 --innodb-flush-method=fsync
                    --innodb-buffer-pool-load-at-startup=OFF --innodb-buffer-pool-dump-at-shutdown=OFF)
start_server() {
  local err="$1.err"
  mariadbd --no-defaults --datadir="$1" --socket="$2" --pid-file="$1.pid" --log-error="$err" --skip-networking \
    --server-id="$3" --innodb-buffer-pool-size="$4" --log-bin="$1/binlog" --binlog-format=ROW \
    --gtid-strict-mode=ON --log-slave-updates=ON --skip-name-resolve --skip-slave-start --event-scheduler=OFF \
    $user_arg "${@:5}" >/dev/null 2>&1 &
  servers+=("$1.pid")
  for _ in $(seq 1 600); do
    mariadb --socket="$2" --user=root -e "SELECT 1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "bench: mariadbd on $1 did not start; see $err" >&2
  exit 1
}

sql() { mariadb --socket="$sock" --user=root -N -B -e "$1"; }

# measure NAME CMD...: runs CMD under /usr/bin/time and sets
#   T    wall-clock seconds,
#   RSS  the peak RSS (KiB) of the largest process of the command (GNU time's %M),
#   OWN  the peak RSS (KiB) of CMD's own process, not its children: its VmHWM,
#        read every 0.1 s while it runs (a peak in its last 0.1 s is missed).
# Output goes to $work/NAME.out and .err.
measure() {
  local name="$1"; shift
  rm -f "$work/$name.pid"
  # The command's pid, written by the shell that then becomes the command.
  /usr/bin/time -f '%e %M' -o "$work/$name.time" bash -c 'echo $$ >"$0"; exec "$@"' "$work/$name.pid" "$@" \
    >"$work/$name.out" 2>"$work/$name.err" &
  local timer=$! child="" key value rest
  OWN=0
  while kill -0 "$timer" 2>/dev/null; do
    [ -n "$child" ] || child="$(cat "$work/$name.pid" 2>/dev/null || true)"
    if [ -n "$child" ] && [ -r "/proc/$child/status" ]; then
      while read -r key value rest; do
        if [ "$key" = "VmHWM:" ] && [ "$value" -gt "$OWN" ]; then OWN="$value"; fi
      done <"/proc/$child/status" 2>/dev/null || true
    fi
    sleep 0.1
  done
  if ! wait "$timer"; then
    echo "bench: $name failed: $*" >&2
    tail -n 20 "$work/$name.err" >&2
    exit 1
  fi
  read -r T RSS < <(tail -n 1 "$work/$name.time")
}

json() { # FILE PYTHON-EXPRESSION over j (the parsed JSON)
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
kib_mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
per_second() { awk -v n="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.0f", n / t; else printf "n/a" }'; }
rate() { awk -v b="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.1f", b / 1048576 / t; else printf "n/a" }'; }
verdict() { awk -v v="$1" -v op="$2" -v lim="$3" 'BEGIN { ok = (op == "<=") ? (v <= lim) : (v < lim); printf "%s", ok ? "ok" : "MISSED" }'; }
du_bytes() { du -sb "$1" | cut -f1; }
gtid_seq() { sed -E 's/^MariaDB\///; s/.*-//' <<<"$1"; }
out() { printf "%s\n" "$*" | tee -a "$report"; }
row() { # label cairn peer ratio bar verdict
  printf "  %-34s %14s %14s %10s   %s %s\n" "$1" "$2" "$3" "$4" "${5:-}" "${6:-}" | tee -a "$report"
}
header() { row "" "cairn" "peer" "cairn/peer" "bar"; }
# Before each measurement: InnoDB has flushed its dirty pages (a fresh load
# leaves gigabytes to write back, which would slow whichever tool runs
# first), everything is on disk, and the data files are in the page cache.
warm() {
  sql "SET GLOBAL innodb_max_dirty_pages_pct_lwm=0.001; SET GLOBAL innodb_max_dirty_pages_pct=0" || true
  for _ in $(seq 1 600); do
    [ "$(sql "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'" | awk '{print $2}')" = "0" ] && break
    sleep 0.5
  done
  sql "SET GLOBAL innodb_max_dirty_pages_pct=90; SET GLOBAL innodb_max_dirty_pages_pct_lwm=0" || true
  sync
  find "$src" -type f -name '*.ibd' -exec cat {} + >/dev/null; cat "$src"/ibdata1 >/dev/null
}
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b ? a : b) }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
fresh() { rm -rf "$1"; }

peer_backup_cmd() { # the peer's backup stream on stdout
  echo "mariadb-backup --backup --stream=mbstream --target-dir=$work/peer-scratch --datadir=$src --socket=$sock --user=root"
}

# ---------------------------------------------------------------- the source

rm -rf "$data"
mkdir -p "$data" "$work" "$work/peer-scratch"
: >"$report"
mariadb-install-db --no-defaults --datadir="$src" --auth-root-authentication-method=normal --skip-test-db $user_arg >/dev/null
start_server "$src" "$sock" 1 "$buffer_pool"
sql "CREATE DATABASE sbtest"
sb=(sysbench oltp_write_only --db-driver=mysql --mysql-socket="$sock" --mysql-user=root --mysql-db=sbtest
    --tables="$tables" --table-size="$rows")
echo "Loading sysbench: $tables tables x $rows rows..."
"${sb[@]}" --threads=$(( tables < 4 ? tables : 4 )) prepare >"$work/prepare.log" 2>&1 \
  || { tail "$work/prepare.log"; exit 1; }
data_bytes="$(du_bytes "$src")"

out "Cairn benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -n): $cores cores, $(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo) GiB RAM"
out "cairn $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?'); $(mariadbd --version | sed 's/ *Source.*//'); zstd $(zstd -V | grep -oE 'v[0-9.]+' | head -1)"
out "dataset: sysbench $tables tables x $rows rows; source data directory $(mib "$data_bytes") MiB"
out "times are wall-clock seconds; peak RSS: the cairn process itself (VmHWM), the largest process of the peer's pipeline (GNU time)"

file_store="$data/file-store"
mkdir -p "$file_store"
cairn_file=(--storage "file://$file_store")
full_name=""
full_time=""

cairn_full_file() {
  warm
  measure cairn-full "$cairn" backup commerce/0 --local --mysql-socket "$sock" --mysql-datadir "$src" "${cairn_file[@]}" --type full --json
  full_time="$T"; full_rss="$OWN"
  full_name="$(json "$work/cairn-full.out" 'j["backup"]["backup_name"]')"
  full_stored="$(json "$work/cairn-full.out" 'sum(f["stored_size"] for f in j["backup"]["files"])')"
  full_raw="$(json "$work/cairn-full.out" 'sum(f["raw_size"] for f in j["backup"]["files"])')"
  full_position="$(json "$work/cairn-full.out" 'j["backup"]["position"]')"
}

# ---------------------------------------------------------------- issue 2

if [[ " $issues " == *" 2 "* ]]; then
  # Each side runs twice, in the order cairn, peer, peer, cairn, and the
  # better run of each counts: whichever runs first meets a colder machine.
  cairn_full_file
  first_time="$full_time"; first_rss="$full_rss"
  peer_full() {
    warm
    measure peer-full bash -c "set -o pipefail; $(peer_backup_cmd) | zstd -3 -T0 -q > $work/peer.mbstream.zst"
  }
  peer_full; peer_time="$T"; peer_rss="$RSS"
  peer_full; peer_time="$(min "$peer_time" "$T")"; peer_rss="$(max "$peer_rss" "$RSS")"
  peer_stored="$(stat -c %s "$work/peer.mbstream.zst")"
  cairn_full_file
  full_time="$(min "$full_time" "$first_time")"; full_rss="$(max "$full_rss" "$first_rss")"

  cairn_restore() {
    fresh "$work/r-cairn"; sync
    cat "$file_store"/commerce/0/"$full_name"/* >/dev/null
    measure cairn-restore "$cairn" restore commerce/0 --local --target-datadir "$work/r-cairn" "${cairn_file[@]}" --backup "$full_name"
    fresh "$work/r-cairn"
  }
  peer_restore() {
    fresh "$work/r-peer"; mkdir -p "$work/r-peer"; sync
    cat "$work/peer.mbstream.zst" >/dev/null
    measure peer-restore bash -c "set -o pipefail; zstd -d -c -q $work/peer.mbstream.zst | mbstream -x -C $work/r-peer && mariadb-backup --prepare --target-dir=$work/r-peer --use-memory=256M"
    fresh "$work/r-peer"
  }
  cairn_restore; restore_time="$T"; restore_rss="$OWN"
  peer_restore; peer_restore_time="$T"; peer_restore_rss="$RSS"
  peer_restore; peer_restore_time="$(min "$peer_restore_time" "$T")"; peer_restore_rss="$(max "$peer_restore_rss" "$RSS")"
  cairn_restore; restore_time="$(min "$restore_time" "$T")"; restore_rss="$(max "$restore_rss" "$OWN")"
  file_baseline=1

  out ""
  out "== issue 2: full backup and restore, file storage (raw stream $(mib "$full_raw") MiB)"
  header
  row "backup time (s)" "$full_time" "$peer_time" "$(ratio "$full_time" "$peer_time")" "<= 1.00" "$(verdict "$(ratio "$full_time" "$peer_time")" "<=" 1.00)"
  row "backup throughput (raw MiB/s)" "$(rate "$full_raw" "$full_time")" "$(rate "$full_raw" "$peer_time")" "$(ratio "$peer_time" "$full_time")" ">= 1.00"
  row "stored size (MiB)" "$(mib "$full_stored")" "$(mib "$peer_stored")" "$(ratio "$full_stored" "$peer_stored")" "<= 1.00" "$(verdict "$(ratio "$full_stored" "$peer_stored")" "<=" 1.00)"
  row "restore time (s)" "$restore_time" "$peer_restore_time" "$(ratio "$restore_time" "$peer_restore_time")" "<= 1.00" "$(verdict "$(ratio "$restore_time" "$peer_restore_time")" "<=" 1.00)"
  row "peak RSS backup (MiB)" "$(kib_mib "$full_rss")" "$(kib_mib "$peer_rss")" "" "< 256" "$(verdict "$(kib_mib "$full_rss")" "<" 256)"
  row "peak RSS restore (MiB)" "$(kib_mib "$restore_rss")" "$(kib_mib "$peer_restore_rss")" "" "< 256" "$(verdict "$(kib_mib "$restore_rss")" "<" 256)"
fi

# ---------------------------------------------------------------- issue 14

if [[ " $issues " == *" 14 "* ]]; then
  # The same full backup and restore on file storage, with and without
  # encryption, each twice in the order plain, encrypted, encrypted, plain;
  # the better run of each counts.
  head -c 32 /dev/urandom | base64 >"$work/master.key"; chmod 600 "$work/master.key"
  printf '{"bucket": "file://%s", "encryption": {"key_file": "%s"}}\n' "$data/crypt-store" "$work/master.key" >"$work/crypt.json"
  mkdir -p "$data/crypt-store"
  crypt_backup() { # NAME STORAGE-ARGS...
    local name="$1"; shift
    warm
    measure "$name" "$cairn" backup commerce/0 --local --mysql-socket "$sock" --mysql-datadir "$src" "$@" --type full --json
  }
  crypt_restore() { # NAME BACKUP STORAGE-ARGS...
    local name="$1" backup="$2"; shift 2
    fresh "$work/r-$name"; sync
    measure "$name" "$cairn" restore commerce/0 --local --target-datadir "$work/r-$name" "$@" --backup "$backup"
    fresh "$work/r-$name"
  }
  plain_args=("${cairn_file[@]}"); crypt_args=(--config "$work/crypt.json")
  crypt_backup plain-full "${plain_args[@]}"; plain_b="$T"; plain_name="$(json "$work/plain-full.out" 'j["backup"]["backup_name"]')"
  crypt_backup crypt-full "${crypt_args[@]}"; crypt_b="$T"
  crypt_backup crypt-full "${crypt_args[@]}"; crypt_b="$(min "$crypt_b" "$T")"; crypt_name="$(json "$work/crypt-full.out" 'j["backup"]["backup_name"]')"
  crypt_backup plain-full "${plain_args[@]}"; plain_b="$(min "$plain_b" "$T")"
  crypt_raw="$(json "$work/crypt-full.out" 'sum(f["raw_size"] for f in j["backup"]["files"])')"
  crypt_restore plain-restore "$plain_name" "${plain_args[@]}"; plain_r="$T"
  crypt_restore crypt-restore "$crypt_name" "${crypt_args[@]}"; crypt_r="$T"; crypt_rss="$OWN"
  crypt_restore crypt-restore "$crypt_name" "${crypt_args[@]}"; crypt_r="$(min "$crypt_r" "$T")"; crypt_rss="$(max "$crypt_rss" "$OWN")"
  crypt_restore plain-restore "$plain_name" "${plain_args[@]}"; plain_r="$(min "$plain_r" "$T")"

  out ""
  out "== issue 14: encryption (AES-256-GCM) on vs off, full backup and restore, file storage (raw stream $(mib "$crypt_raw") MiB)"
  row "" "encrypted" "plain" "enc/plain" "bar"
  row "backup time (s)" "$crypt_b" "$plain_b" "$(ratio "$crypt_b" "$plain_b")" "<= 1.10" "$(verdict "$(ratio "$crypt_b" "$plain_b")" "<=" 1.10)"
  row "restore time (s)" "$crypt_r" "$plain_r" "$(ratio "$crypt_r" "$plain_r")" "<= 1.10" "$(verdict "$(ratio "$crypt_r" "$plain_r")" "<=" 1.10)"
  row "peak RSS encrypted restore (MiB)" "$(kib_mib "$crypt_rss")" "" "" "< 256" "$(verdict "$(kib_mib "$crypt_rss")" "<" 256)"
fi

# ---------------------------------------------------------------- issue 3

# The chain of issues 3 and 12: 1% of rows changed and an incremental, then
# BENCH_TXNS sysbench transactions and a second incremental.
chain_ready=""
prepare_chain() {
  [ -n "$full_name" ] || cairn_full_file
  changed=$(( tables * rows / 100 ))
  for t in $(seq 1 "$tables"); do sql "UPDATE sbtest.sbtest$t SET k = k + 1 WHERE id % 100 = 0"; done
  measure cairn-inc1 "$cairn" backup commerce/0 --local --mysql-socket "$sock" --mysql-datadir "$src" "${cairn_file[@]}" --type incremental --json
  inc1_time="$T"
  inc1_stored="$(json "$work/cairn-inc1.out" 'sum(f["stored_size"] for f in j["backup"]["files"])')"
  inc1_raw="$(json "$work/cairn-inc1.out" 'sum(f["raw_size"] for f in j["backup"]["files"])')"

  echo "Running $txns sysbench transactions..."
  "${sb[@]}" --threads=4 --events="$txns" --time=0 --mysql-ignore-errors=1213,1020,1062,1205 run >"$work/sysbench-run.log" 2>&1 \
    || { tail "$work/sysbench-run.log"; exit 1; }
  measure cairn-inc2 "$cairn" backup commerce/0 --local --mysql-socket "$sock" --mysql-datadir "$src" "${cairn_file[@]}" --type incremental --json
  inc2_time="$T"
  inc2_position="$(json "$work/cairn-inc2.out" 'j["backup"]["position"]')"
  replayed=$(( $(gtid_seq "$inc2_position") - $(gtid_seq "$full_position") ))
  binlogs="$(python3 -c '
import json, sys
names = []
for path in sys.argv[1:]:
    for f in json.load(open(path))["backup"]["files"]:
        if f["binlog_file"] not in names: names.append(f["binlog_file"])
print(" ".join(names))' "$work/cairn-inc1.out" "$work/cairn-inc2.out")"
  binlog_paths=""
  for b in $binlogs; do binlog_paths="$binlog_paths $src/$b"; done
  tablist="$(seq -s, -f 'sbtest.sbtest%g' 1 "$tables")"
  src_sum="$(sql "CHECKSUM TABLE $tablist" | md5sum)"
  chain_ready=1
}
same() { [ "$1" = "$src_sum" ] && echo "equal to source" || echo "DIFFERS from source"; }
sums() { mariadb --socket="$1" --user=root -N -B -e "CHECKSUM TABLE $tablist" | md5sum; }

if [[ " $issues " == *" 3 "* ]]; then
  if [ -z "$chain_ready" ]; then prepare_chain; fi
  fresh "$work/r-full"
  measure cairn-restore-full "$cairn" restore commerce/0 --local --target-datadir "$work/r-full" "${cairn_file[@]}" --backup "$full_name"
  rfull_time="$T"
  fresh "$work/r-chain"
  measure cairn-restore-chain "$cairn" restore commerce/0 --local --target-datadir "$work/r-chain" "${cairn_file[@]}"
  rchain_time="$T"; rchain_rss="$OWN"
  cairn_replay="$(sub "$rchain_time" "$rfull_time")"

  # The peer replays the same binary log files into the same full restore.
  start_server "$work/r-full" "$work/r-full.sock" 2 256M
  measure peer-replay bash -c "set -o pipefail; mariadb-binlog --start-position=${full_position#MariaDB/} $binlog_paths | mariadb --socket=$work/r-full.sock --user=root --binary-mode"
  peer_replay="$T"
  start_server "$work/r-chain" "$work/r-chain.sock" 3 256M
  cairn_sum="$(sums "$work/r-chain.sock")"
  peer_sum="$(sums "$work/r-full.sock")"

  out ""
  out "== issue 3: incremental after $changed changed rows (1%), and replay of $replayed transactions"
  row "" "incremental" "full" "inc/full" "bar"
  row "backup time (s)" "$inc1_time" "$full_time" "$(ratio "$inc1_time" "$full_time")" "~ change (1%) + fixed cost"
  row "stored size (MiB)" "$(mib "$inc1_stored")" "$(mib "$full_stored")" "$(ratio "$inc1_stored" "$full_stored")"
  row "raw size (MiB)" "$(mib "$inc1_raw")" "$(mib "$full_raw")" "$(ratio "$inc1_raw" "$full_raw")"
  out "  (second incremental, $replayed transactions: ${inc2_time} s)"
  header
  row "replay time (s)" "$cairn_replay" "$peer_replay" "$(ratio "$cairn_replay" "$peer_replay")" "<= 1.00" "$(verdict "$(ratio "$cairn_replay" "$peer_replay")" "<=" 1.00)"
  row "replay rate (transactions/s)" "$(per_second "$replayed" "$cairn_replay")" "$(per_second "$replayed" "$peer_replay")" \
      "$(ratio "$peer_replay" "$cairn_replay")" ">= 1.00"
  out "  (cairn replay = restore of full+incrementals ${rchain_time} s - restore of the full alone ${rfull_time} s; peak RSS $(kib_mib "$rchain_rss") MiB)"
  out "  data after replay: cairn $(same "$cairn_sum"), peer $(same "$peer_sum")"
  stop_server "$work/r-full.pid"; stop_server "$work/r-chain.pid"
  fresh "$work/r-full"; fresh "$work/r-chain"
fi

# ---------------------------------------------------------------- issue 12

if [[ " $issues " == *" 12 "* ]]; then
  if [ -z "$chain_ready" ]; then prepare_chain; fi
  # Cairn's replay is the restore of the whole chain minus the restore of the
  # full backup alone (the better of two); it runs through the restore
  # server's SQL thread, and once more through Cairn's client pipe
  # (--binlog-replay client) for reference. The peer pipes the same binary
  # log files into that very full restore, started with the durability
  # settings of Cairn's restore server.
  restore12() { # name target-dir [cairn restore options...]
    fresh "$2"
    measure "$1" "$cairn" restore commerce/0 --local --target-datadir "$2" "${cairn_file[@]}" "${@:3}"
  }
  restore12 cairn12-full "$work/r12-full" --backup "$full_name"; r12_full="$T"
  restore12 cairn12-chain "$work/r12-chain"; r12_chain="$T"; r12_rss="$OWN"
  restore12 cairn12-client "$work/r12-client" --binlog-replay client; r12_client="$T"
  restore12 cairn12-parallel "$work/r12-parallel" --replay-threads 4; r12_parallel="$T"
  restore12 cairn12-full "$work/r12-full" --backup "$full_name"; r12_full="$(min "$r12_full" "$T")"
  sql_replay="$(sub "$r12_chain" "$r12_full")"
  client_replay="$(sub "$r12_client" "$r12_full")"
  parallel_replay="$(sub "$r12_parallel" "$r12_full")"

  start_server "$work/r12-full" "$work/r12-full.sock" 2 256M "${restore_durability[@]}"
  measure peer12-replay bash -c "set -o pipefail; mariadb-binlog --start-position=${full_position#MariaDB/} $binlog_paths | mariadb --socket=$work/r12-full.sock --user=root --binary-mode"
  peer12="$T"
  start_server "$work/r12-chain" "$work/r12-chain.sock" 3 256M
  start_server "$work/r12-client" "$work/r12-client.sock" 4 256M
  start_server "$work/r12-parallel" "$work/r12-parallel.sock" 5 256M
  out ""
  out "== issue 12: replay of $replayed transactions through the restore server's SQL thread, durability of Cairn's restore server on both sides"
  header
  row "replay time (s)" "$sql_replay" "$peer12" "$(ratio "$sql_replay" "$peer12")" "<= 0.20" "$(verdict "$(ratio "$sql_replay" "$peer12")" "<=" 0.20)"
  row "speed-up (peer time / cairn time)" "" "" "$(ratio "$peer12" "$sql_replay")" ">= 5.00"
  row "replay rate (transactions/s)" "$(per_second "$replayed" "$sql_replay")" "$(per_second "$replayed" "$peer12")" "$(ratio "$peer12" "$sql_replay")"
  row "cairn --binlog-replay client (s)" "$client_replay" "$peer12" "$(ratio "$client_replay" "$peer12")"
  row "cairn --replay-threads 4 (s)" "$parallel_replay" "$peer12" "$(ratio "$parallel_replay" "$peer12")"
  out "  (cairn replay = restore of full+incrementals ${r12_chain} s (client pipe ${r12_client} s, 4 applier threads ${r12_parallel} s) - restore of the full alone ${r12_full} s; peak RSS $(kib_mib "$r12_rss") MiB)"
  out "  data after replay: cairn $(same "$(sums "$work/r12-chain.sock")"), cairn client pipe $(same "$(sums "$work/r12-client.sock")"), 4 applier threads $(same "$(sums "$work/r12-parallel.sock")"), peer $(same "$(sums "$work/r12-full.sock")")"
  stop_server "$work/r12-full.pid"; stop_server "$work/r12-chain.pid"; stop_server "$work/r12-client.pid"; stop_server "$work/r12-parallel.pid"
  fresh "$work/r12-full"; fresh "$work/r12-chain"; fresh "$work/r12-client"; fresh "$work/r12-parallel"
fi

# ---------------------------------------------------------------- issue 4

if [[ " $issues " == *" 4 "* ]]; then
  # The memory bar's constant: Cairn's peak RSS for the same backup and restore on
  # file storage, which hold no S3 buffers (issue 2's figures, or measured now).
  if [ -z "${file_baseline:-}" ]; then
    [ -n "$full_name" ] || cairn_full_file
    fresh "$work/r-cairn"
    measure cairn-restore "$cairn" restore commerce/0 --local --target-datadir "$work/r-cairn" "${cairn_file[@]}" --backup "$full_name"
    restore_rss="$OWN"
    fresh "$work/r-cairn"
  fi
  base_backup_mib="$(kib_mib "$full_rss")"
  base_restore_mib="$(kib_mib "$restore_rss")"
  ports=($(python3 -c '
import socket
ss = [socket.socket() for _ in range(8)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])'))
  sw="$data/seaweedfs"
  mkdir -p "$sw/data"
  export AWS_ACCESS_KEY_ID="cairn-bench-admin" AWS_SECRET_ACCESS_KEY="cairn-bench-secret-5b2e" AWS_DEFAULT_REGION="us-east-1"
  cat >"$sw/identities.json" <<EOF
{"identities": [{"name": "admin", "credentials": [{"accessKey": "$AWS_ACCESS_KEY_ID", "secretKey": "$AWS_SECRET_ACCESS_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
  "$weed" server -dir="$sw/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -master.port="${ports[0]}" -master.port.grpc="${ports[1]}" -volume.port="${ports[2]}" -volume.port.grpc="${ports[3]}" \
    -filer -filer.port="${ports[4]}" -filer.port.grpc="${ports[5]}" -s3 -s3.port="${ports[6]}" -s3.port.grpc="${ports[7]}" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$sw/identities.json" -volume.max=20 >"$sw/weed.log" 2>&1 &
  weed_pid=$!
  endpoint="http://127.0.0.1:${ports[6]}"
  bucket="cairn-bench"
  for i in $(seq 1 180); do
    "$aws" --endpoint-url "$endpoint" s3api create-bucket --bucket "$bucket" >/dev/null 2>&1 && break
    kill -0 "$weed_pid" 2>/dev/null || { echo "bench: SeaweedFS stopped; see $sw/weed.log" >&2; exit 1; }
    [ "$i" -eq 180 ] && { echo "bench: SeaweedFS did not answer at $endpoint; see $sw/weed.log" >&2; exit 1; }
    sleep 0.5
  done

  out ""
  out "== issue 4: full backup and restore on S3 (SeaweedFS at $endpoint), part size $part_mib MiB"
  for c in $concurrencies; do
    cfg="$work/cairn-s3-c$c.json"
    printf '{"bucket": "s3://%s/cairn-c%s", "s3_endpoint": "%s", "upload_concurrency": %s, "download_concurrency": %s}\n' \
      "$bucket" "$c" "$endpoint" "$c" "$c" >"$cfg"
    # awscli at the same concurrency, its other settings default (8 MiB chunks).
    export AWS_CONFIG_FILE="$work/aws-c$c.config"
    printf '[default]\ns3 =\n  max_concurrent_requests = %s\n' "$c" >"$AWS_CONFIG_FILE"
    peer_key="s3://$bucket/peer-c$c/backup.mbstream.zst"

    warm
    measure "cairn-s3-backup-c$c" "$cairn" backup commerce/0 --local --mysql-socket "$sock" --mysql-datadir "$src" --config "$cfg" --type full --json
    s3_time="$T"; s3_rss="$OWN"
    s3_stored="$(json "$work/cairn-s3-backup-c$c.out" 'sum(f["stored_size"] for f in j["backup"]["files"])')"
    warm
    measure "peer-s3-backup-c$c" bash -c "set -o pipefail; $(peer_backup_cmd) | zstd -3 -T0 -q | $aws s3 cp - $peer_key --endpoint-url $endpoint --only-show-errors"
    peer_s3_time="$T"; peer_s3_rss="$RSS"
    peer_s3_stored="$("$aws" --endpoint-url "$endpoint" s3api head-object --bucket "$bucket" --key "peer-c$c/backup.mbstream.zst" --query ContentLength --output text)"

    fresh "$work/r-s3"
    measure "cairn-s3-restore-c$c" "$cairn" restore commerce/0 --local --target-datadir "$work/r-s3" --config "$cfg"
    s3_restore_time="$T"; s3_restore_rss="$OWN"
    fresh "$work/r-s3"
    fresh "$work/r-peer"; mkdir -p "$work/r-peer"
    measure "peer-s3-restore-c$c" bash -c "set -o pipefail; $aws s3 cp $peer_key - --endpoint-url $endpoint --only-show-errors | zstd -d -c -q | mbstream -x -C $work/r-peer && mariadb-backup --prepare --target-dir=$work/r-peer --use-memory=256M"
    peer_s3_restore_time="$T"; peer_s3_restore_rss="$RSS"
    fresh "$work/r-peer"
    unset AWS_CONFIG_FILE

    # The S3 writer holds up to c parts in flight and one filling; the reader c ranges
    # in flight and the one it hands out.
    backup_budget=$(( (c + 1) * part_mib + http_mib + base_backup_mib ))
    restore_budget=$(( (c + 1) * range_mib + http_mib + base_restore_mib ))
    out "  -- concurrency $c (cairn upload_concurrency/download_concurrency $c; awscli max_concurrent_requests $c)"
    header
    row "backup time (s)" "$s3_time" "$peer_s3_time" "$(ratio "$s3_time" "$peer_s3_time")" "< 1.00" "$(verdict "$(ratio "$s3_time" "$peer_s3_time")" "<" 1.00)"
    row "stored size (MiB)" "$(mib "$s3_stored")" "$(mib "$peer_s3_stored")" "$(ratio "$s3_stored" "$peer_s3_stored")"
    row "restore time (s)" "$s3_restore_time" "$peer_s3_restore_time" "$(ratio "$s3_restore_time" "$peer_s3_restore_time")" "< 1.00" "$(verdict "$(ratio "$s3_restore_time" "$peer_s3_restore_time")" "<" 1.00)"
    row "peak RSS backup (MiB)" "$(kib_mib "$s3_rss")" "$(kib_mib "$peer_s3_rss")" "" "<= $backup_budget = ($c+1) x $part_mib + $http_mib + $base_backup_mib (file)" "$(verdict "$(kib_mib "$s3_rss")" "<=" "$backup_budget")"
    row "peak RSS restore (MiB)" "$(kib_mib "$s3_restore_rss")" "$(kib_mib "$peer_s3_restore_rss")" "" "<= $restore_budget = ($c+1) x $range_mib + $http_mib + $base_restore_mib (file)" "$(verdict "$(kib_mib "$s3_restore_rss")" "<=" "$restore_budget")"
  done
  stop_weed
fi

# ---------------------------------------------------------------- delta (issue 12)

if [[ " $issues " == *" delta "* ]]; then
  # Its own storage and full backup, so the delta holds exactly the 1% change.
  delta_store="$work/delta-store"
  mkdir -p "$delta_store"
  cairn_delta=(--storage "file://$delta_store")
  warm
  measure cairn-dfull "$cairn" backup commerce/0 --local --mysql-socket "$sock" --mysql-datadir "$src" "${cairn_delta[@]}" --type full --json
  dfull_time="$T"
  dfull_name="$(json "$work/cairn-dfull.out" 'j["backup"]["backup_name"]')"
  dfull_stored="$(json "$work/cairn-dfull.out" 'sum(f["stored_size"] for f in j["backup"]["files"])')"
  dfull_lsn="$(json "$work/cairn-dfull.out" 'j["backup"]["to_lsn"]')"
  dchanged=$(( tables * rows / 100 ))
  for t in $(seq 1 "$tables"); do sql "UPDATE sbtest.sbtest$t SET k = k + 1 WHERE id % 100 = 1"; done
  warm
  measure cairn-delta "$cairn" backup commerce/0 --local --mysql-socket "$sock" --mysql-datadir "$src" "${cairn_delta[@]}" --type delta --json
  delta_time="$T"; delta_rss="$OWN"
  delta_name="$(json "$work/cairn-delta.out" 'j["backup"]["backup_name"]')"
  delta_stored="$(json "$work/cairn-delta.out" 'sum(f["stored_size"] for f in j["backup"]["files"])')"
  delta_raw="$(json "$work/cairn-delta.out" 'sum(f["raw_size"] for f in j["backup"]["files"])')"
  # The peer: the same delta by hand, from the same LSN.
  warm
  measure peer-delta bash -c "set -o pipefail; mariadb-backup --backup --stream=mbstream --incremental-lsn=$dfull_lsn --target-dir=$work/peer-scratch --datadir=$src --socket=$sock --user=root | zstd -3 -T0 -q > $work/peer-delta.mbstream.zst"
  peer_delta_time="$T"
  peer_delta_stored="$(stat -c %s "$work/peer-delta.mbstream.zst")"
  rm -f "$work/peer-delta.mbstream.zst"
  tablist="$(seq -s, -f 'sbtest.sbtest%g' 1 "$tables")"
  src_sum="$(sql "CHECKSUM TABLE $tablist" | md5sum)"

  fresh "$work/rd-full"
  measure cairn-rd-full "$cairn" restore commerce/0 --local --target-datadir "$work/rd-full" "${cairn_delta[@]}" --backup "$dfull_name"
  rd_full="$T"; fresh "$work/rd-full"
  fresh "$work/rd-delta"
  measure cairn-rd-delta "$cairn" restore commerce/0 --local --target-datadir "$work/rd-delta" "${cairn_delta[@]}" --backup "$delta_name"
  rd_delta="$T"; rd_rss="$OWN"
  start_server "$work/rd-delta" "$work/rd-delta.sock" 5 256M
  rd_sum="$(sums "$work/rd-delta.sock")"
  stop_server "$work/rd-delta.pid"; fresh "$work/rd-delta"

  out ""
  out "== issue 12 (delta): a physical delta after $dchanged changed rows (1%)"
  row "" "delta" "full" "delta/full" "bar"
  row "backup time (s)" "$delta_time" "$dfull_time" "$(ratio "$delta_time" "$dfull_time")" "reads every page; writes the change"
  row "stored size (MiB)" "$(mib "$delta_stored")" "$(mib "$dfull_stored")" "$(ratio "$delta_stored" "$dfull_stored")"
  row "raw size (MiB)" "$(mib "$delta_raw")" "" ""
  row "restore time (s)" "$rd_delta" "$rd_full" "$(ratio "$rd_delta" "$rd_full")" "full + delta vs full alone"
  header
  row "delta backup time (s)" "$delta_time" "$peer_delta_time" "$(ratio "$delta_time" "$peer_delta_time")" "<= 1.00" "$(verdict "$(ratio "$delta_time" "$peer_delta_time")" "<=" 1.00)"
  row "delta stored size (MiB)" "$(mib "$delta_stored")" "$(mib "$peer_delta_stored")" "$(ratio "$delta_stored" "$peer_delta_stored")" "<= 1.00" "$(verdict "$(ratio "$delta_stored" "$peer_delta_stored")" "<=" 1.00)"
  out "  (peak RSS: delta backup $(kib_mib "$delta_rss") MiB, restore of full + delta $(kib_mib "$rd_rss") MiB; data after restore: $(same "$rd_sum"))"
fi

# ---------------------------------------------------------------- issue 11

if [[ " $issues " == *" 11 "* ]]; then
  # Its own storage: a full backup, then the archiver while sysbench writes
  # as fast as it can; then the restore of everything archived.
  arch_store="$data/archive-store"
  fresh "$arch_store"; mkdir -p "$arch_store"
  cairn_arch=(--storage "file://$arch_store")
  measure cairn-arch-full "$cairn" backup commerce/0 --local --mysql-socket "$sock" --mysql-datadir "$src" "${cairn_arch[@]}" --type full --json
  arch_full_name="$(json "$work/cairn-arch-full.out" 'j["backup"]["backup_name"]')"
  arch_from="$(json "$work/cairn-arch-full.out" 'j["backup"]["position"]')"

  # GNU time gives the archiver's CPU and peak RSS; its own pid gets the SIGTERM.
  rm -f "$work/archiver.pid"
  /usr/bin/time -f '%e %U %S %M' -o "$work/archiver.time" bash -c 'echo $$ >"$0"; exec "$@"' "$work/archiver.pid" \
    "$cairn" archive commerce/0 --local --mysql-socket "$sock" "${cairn_arch[@]}" --interval "$archive_interval" --log-level warning \
    >"$work/archiver.out" 2>"$work/archiver.err" &
  arch_timer=$!
  sleep 2
  echo "Archiving while sysbench writes as fast as it can for $archive_seconds s..."
  "${sb[@]}" --threads=4 --time="$archive_seconds" --events=0 --mysql-ignore-errors=1213,1020,1062,1205 run >"$work/sysbench-archive.log" 2>&1 \
    || { tail "$work/sysbench-archive.log"; exit 1; }
  arch_end="$(sql "SELECT @@gtid_binlog_pos")"
  newest_seq() {
    python3 - "$arch_store/commerce/0/binlog-archive" <<'EOF'
import glob, json, sys
best = 0
for path in glob.glob(sys.argv[1] + "/*.json"):
    best = max(best, int(json.load(open(path))["position"].split("-")[-1]))
print(best)
EOF
  }
  for _ in $(seq 1 600); do
    [ "$(newest_seq)" -ge "$(gtid_seq "$arch_end")" ] && break
    sleep 0.1
  done
  kill -TERM "$(cat "$work/archiver.pid")"
  wait "$arch_timer" || { echo "bench: the archiver failed" >&2; tail -n 20 "$work/archiver.err" >&2; exit 1; }
  read -r arch_elapsed arch_user arch_sys arch_rss <"$work/archiver.time"
  arch_cpu="$(awk -v u="$arch_user" -v s="$arch_sys" -v e="$arch_elapsed" 'BEGIN { printf "%.1f", 100 * (u + s) / e }')"
  written=$(( $(gtid_seq "$arch_end") - $(gtid_seq "$arch_from") ))
  # Lag of a transaction: from its commit (the GTID event's header time, whole
  # seconds, so up to 1 s too high) to its segment's manifest being stored.
  # A segment's transactions are spread evenly between its first and last event time.
  read -r lag_p50 lag_p99 lag_max segments arch_stored <<<"$(python3 - "$arch_store/commerce/0/binlog-archive" <<'EOF'
import datetime, glob, json, os, sys
def t(s): return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
lags, stored, segs = [], 0, 0
for path in glob.glob(sys.argv[1] + "/*.json"):
    m = json.load(open(path)); segs += 1
    stored += m["file"]["stored_size"] + os.path.getsize(path)
    a, f, l, n = t(m["archived_time"]), t(m["first_event_time"]), t(m["last_event_time"]), m["transaction_count"]
    lags += [a - (f + (l - f) * i / max(1, n - 1)) for i in range(n)]
lags.sort()
q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))] if lags else 0
print("%.2f %.2f %.2f %d %d" % (q(0.50), q(0.99), lags[-1] if lags else 0, segs, stored))
EOF
)"

  fresh "$work/r-arch-full"
  measure cairn-arch-restore-full "$cairn" restore commerce/0 --local --target-datadir "$work/r-arch-full" "${cairn_arch[@]}" --backup "$arch_full_name"
  arch_rfull="$T"
  fresh "$work/r-arch-full"
  fresh "$work/r-arch"
  measure cairn-arch-restore "$cairn" restore commerce/0 --local --target-datadir "$work/r-arch" "${cairn_arch[@]}"
  arch_rall="$T"; arch_restore_rss="$OWN"
  arch_replay="$(sub "$arch_rall" "$arch_rfull")"
  start_server "$work/r-arch" "$work/r-arch.sock" 4 256M
  tablist="$(seq -s, -f 'sbtest.sbtest%g' 1 "$tables")"
  src_sum="$(sql "CHECKSUM TABLE $tablist" | md5sum)"
  arch_sum="$(mariadb --socket="$work/r-arch.sock" --user=root -N -B -e "CHECKSUM TABLE $tablist" | md5sum)"
  stop_server "$work/r-arch.pid"; fresh "$work/r-arch"
  hour_restore="$(awk -v r="$arch_replay" -v s="$archive_seconds" 'BEGIN { printf "%.0f", r * 3600 / s }')"

  out ""
  out "== issue 11: continuous archiving (interval $archive_interval) of $written transactions in $archive_seconds s ($(per_second "$written" "$archive_seconds")/s, sysbench at full speed)"
  row "" "cairn" "" "" "bar"
  row "archive lag p50 (s)" "$lag_p50" "" "" "<= 5" "$(verdict "$lag_p50" "<=" 5)"
  row "archive lag p99 (s)" "$lag_p99" "" "" "<= 5" "$(verdict "$lag_p99" "<=" 5)"
  row "archive lag max (s)" "$lag_max" "" "" ""
  row "archiver CPU (% of one core)" "$arch_cpu" "" "" ""
  row "archiver peak RSS (MiB)" "$(kib_mib "$arch_rss")" "" "" "<= 64" "$(verdict "$(kib_mib "$arch_rss")" "<=" 64)"
  row "segments / stored (MiB)" "$segments / $(mib "$arch_stored")" "" "" ""
  row "replay of the archive (s)" "$arch_replay" "" "" "" ""
  row "replay rate (transactions/s)" "$(per_second "$written" "$arch_replay")" "" "" ""
  row "an hour of this load (s, est.)" "$hour_restore" "" "" "$archive_seconds s of writes x 3600 / $archive_seconds"
  out "  (replay = restore of full + segments ${arch_rall} s - restore of the full alone ${arch_rfull} s; peak RSS $(kib_mib "$arch_restore_rss") MiB; data $([ "$arch_sum" = "$src_sum" ] && echo "equal to source" || echo "DIFFERS from source"))"
  out "  (lag: commit time is the event header's whole second, so figures can be up to 1 s high)"
fi

out ""
out "Report: $report"
