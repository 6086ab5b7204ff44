#!/usr/bin/env bash
# The demo on the embedded default: `cairn up` starts a local cluster under
# ./cairn-local (ctld, a primary and a replica of commerce/0, each with its
# own MariaDB, file storage, the scheduler on). Then: load a small commerce
# schema, Backup commerce/0 (full), change data, Backup (incremental), an
# accidental DROP TABLE at a moment T, restore to just before T into a new
# tablet, and show the table back. Each step is printed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/install.sh
echo "Building cairn (release; the first build takes several minutes)..."
mkdir -p .build
swift build -c release --product cairn >"$here/.build/demo-build.log" 2>&1 || { cat "$here/.build/demo-build.log"; exit 1; }
cairn="$here/.build/release/cairn"
dir="$here/cairn-local"
server="localhost:15999"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '$ %s\n' "$*"; }
primary_sql() { mariadb --socket="$dir/zone1-100/mysqld.sock" --user=root --table -e "$1"; }

if "$cairn" --server "$server" tablets >/dev/null 2>&1; then
  echo "A Cairn cluster already answers on $server; stop it (Ctrl-C in its terminal) and run the demo again." >&2
  exit 1
fi
for pidfile in "$dir"/zone1-*/data/mariadbd.pid; do
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
done
sleep 1
rm -rf "$dir"
mkdir -p "$dir"

cleanup() {
  [ -n "${tablet_pid:-}" ] && kill "$tablet_pid" 2>/dev/null && wait "$tablet_pid" 2>/dev/null || true
  [ -n "${up_pid:-}" ] && kill -INT "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null || true
}
trap cleanup EXIT

step "cairn up: ctld, a primary (zone1-100) and a replica (zone1-101) of commerce/0 under $dir"
"$cairn" up --dir "$dir" > "$dir/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 1 600); do
  grep -q "Press Ctrl-C" "$dir/up.log" 2>/dev/null && break
  kill -0 "$up_pid" 2>/dev/null || { cat "$dir/up.log"; exit 1; }
  sleep 0.5
done
cat "$dir/up.log"
export CAIRN_AUTH_TOKEN="$(cat "$dir/ctld/auth-token")"
say "cairn --server $server tablets"
"$cairn" --server "$server" tablets

# The scheduler may be taking its first backup; the demo's own jobs wait for it.
wait_for_idle() {
  local jobs
  for _ in $(seq 1 600); do
    jobs="$("$cairn" --server "$server" jobs commerce/0 --json)"
    # Every job listed has a result: nothing is running.
    [ "$(grep -c '"id"' <<<"$jobs")" = "$(grep -c '"result"' <<<"$jobs")" ] && return 0
    sleep 0.5
  done
}

step "Loading a small commerce schema into the primary"
mariadb --socket="$dir/zone1-100/mysqld.sock" --user=root <<'SQL'
CREATE DATABASE commerce;
USE commerce;
CREATE TABLE product (sku VARCHAR(32) PRIMARY KEY, description VARCHAR(128), price INT);
CREATE TABLE customer (customer_id INT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(128));
CREATE TABLE corder (order_id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT, sku VARCHAR(32), price INT);
INSERT INTO product VALUES ('SKU-1001', 'Monitor', 100), ('SKU-1002', 'Keyboard', 30);
INSERT INTO customer (email) VALUES ('alice@domain.com'), ('bob@domain.com'), ('charlie@domain.com');
INSERT INTO corder (customer_id, sku, price) VALUES (1, 'SKU-1001', 100), (2, 'SKU-1002', 30);
SQL
primary_sql "SELECT * FROM commerce.corder"

step "A full backup, with the seed's command"
wait_for_idle
say "cairn --server $server Backup commerce/0 --type full"
"$cairn" --server "$server" Backup commerce/0 --type full

step "Changing data, then an incremental backup"
primary_sql "INSERT INTO commerce.corder (customer_id, sku, price) VALUES (3, 'SKU-1001', 100), (1, 'SKU-1002', 30)"
wait_for_idle
say "cairn --server $server Backup commerce/0"
"$cairn" --server "$server" Backup commerce/0

sleep 1.5
before_drop="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
sleep 1.5
step "An accidental DROP TABLE commerce.corder at $(date -u +%H:%M:%S); the next backup records it"
primary_sql "DROP TABLE commerce.corder"
wait_for_idle
"$cairn" --server "$server" Backup commerce/0
say "cairn backups commerce/0"
"$cairn" --server "$server" backups commerce/0

step "Restoring to $before_drop (just before the DROP) into a new tablet, zone1-102"
say "cairn restore commerce/0 --to-time $before_drop --dry-run"
"$cairn" --server "$server" restore commerce/0 --to-time "$before_drop" --dry-run
say "cairn tablet --alias zone1-102 --keyspace commerce --shard 0 --type replica --restore-from-backup --to-time $before_drop ..."
mkdir -p "$dir/zone1-102"
"$cairn" tablet --alias zone1-102 --keyspace commerce --shard 0 --type replica \
  --mysql-socket "$dir/zone1-102/mysqld.sock" --mysql-datadir "$dir/zone1-102/data" --mysql-port 17102 \
  --ctld "$server" --config "$dir/config.json" --tablet-token-file "$dir/ctld/tablet-token" \
  --restore-from-backup --to-time "$before_drop" > "$dir/logs/zone1-102.log" 2>&1 &
tablet_pid=$!
for _ in $(seq 1 600); do
  "$cairn" --server "$server" tablets | grep -q "zone1-102.*serving" && break
  kill -0 "$tablet_pid" 2>/dev/null || { tail -20 "$dir/logs/zone1-102.log"; exit 1; }
  sleep 0.5
done
say "cairn tablets"
"$cairn" --server "$server" tablets

step "The table is back on zone1-102"
mariadb --socket="$dir/zone1-102/mysqld.sock" --user=root --table -e "SELECT @@gtid_binlog_pos AS restored_position; SELECT * FROM commerce.corder"

step "Done. Stopping the cluster (the data stays under $dir; cairn up --dir $dir starts it again)."
