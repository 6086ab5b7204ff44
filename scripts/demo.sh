#!/usr/bin/env bash
# The demo on the embedded default: a local MariaDB with a small commerce
# schema under ./cairn-local, backed up to file storage, changed, backed up
# incrementally, then restored to a point in time into a new data directory
# that a second mariadbd serves. Each step is printed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/install.sh
echo "Building cairn (release; the first build takes a few minutes)..."
swift build -c release --product cairn >"$here/.build/demo-build.log" 2>&1 || { cat "$here/.build/demo-build.log"; exit 1; }
cairn="$here/.build/release/cairn"
dir="$here/cairn-local"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
sql() { mariadb --socket="$1" --user=root --table -e "$2"; }

stop_server() {
  local pid
  pid="$(cat "$1" 2>/dev/null)" || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}

start_server() { # datadir socket server-id
  local user_arg=""
  [ "$(id -u)" -eq 0 ] && user_arg="--user=root"
  mariadbd --no-defaults --datadir="$1" --socket="$2" --skip-networking --server-id="$3" \
    --log-bin="$1/binlog" --binlog-format=ROW --gtid-strict-mode=ON --innodb-buffer-pool-size=64M \
    --log-error="$1/mariadbd.err" --pid-file="$1/mariadbd.pid" $user_arg >/dev/null 2>&1 &
  for _ in $(seq 1 300); do
    mariadb --socket="$2" --user=root -e "SELECT 1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "mariadbd on $1 did not start; see $1/mariadbd.err" >&2
  exit 1
}

stop_server "$dir/source/mariadbd.pid"
stop_server "$dir/restored/mariadbd.pid"
rm -rf "$dir"
mkdir -p "$dir/backups"
trap 'stop_server "$dir/source/mariadbd.pid"; stop_server "$dir/restored/mariadbd.pid"' EXIT

step "Starting a local MariaDB under $dir/source"
user_arg=""
[ "$(id -u)" -eq 0 ] && user_arg="--user=root"
mariadb-install-db --no-defaults --datadir="$dir/source" --auth-root-authentication-method=normal --skip-test-db $user_arg >/dev/null
sock="$dir/source.sock"
start_server "$dir/source" "$sock" 1

step "Loading a small commerce schema"
mariadb --socket="$sock" --user=root <<'SQL'
CREATE DATABASE commerce;
USE commerce;
CREATE TABLE product (sku VARCHAR(32) PRIMARY KEY, description VARCHAR(128), price INT);
CREATE TABLE customer (customer_id INT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(128));
CREATE TABLE corder (order_id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT, sku VARCHAR(32), price INT);
INSERT INTO product VALUES ('SKU-1001', 'Monitor', 100), ('SKU-1002', 'Keyboard', 30);
INSERT INTO customer (email) VALUES ('alice@domain.com'), ('bob@domain.com'), ('charlie@domain.com');
INSERT INTO corder (customer_id, sku, price) VALUES (1, 'SKU-1001', 100), (2, 'SKU-1002', 30);
SQL
sql "$sock" "SELECT * FROM commerce.corder"

step "cairn backup commerce/0 --local (full, physical)"
"$cairn" backup commerce/0 --local --mysql-socket "$sock" --mysql-datadir "$dir/source" --storage "file://$dir/backups"

step "Changing data, then cairn backup commerce/0 --local (incremental)"
sql "$sock" "INSERT INTO commerce.corder (customer_id, sku, price) VALUES (3, 'SKU-1001', 100), (1, 'SKU-1002', 30)"
sleep 1.5
before_drop="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
sleep 1.5
step "An accidental DROP TABLE commerce.corder at $(date -u +%H:%M:%S)"
sql "$sock" "DROP TABLE commerce.corder"
"$cairn" backup commerce/0 --local --mysql-socket "$sock" --mysql-datadir "$dir/source" --storage "file://$dir/backups"

step "cairn backups commerce/0"
"$cairn" backups commerce/0 --storage "file://$dir/backups"

step "cairn restore commerce/0 --to-time $before_drop (just before the DROP) --dry-run"
"$cairn" restore commerce/0 --local --target-datadir "$dir/restored" --storage "file://$dir/backups" --to-time "$before_drop" --dry-run

step "cairn restore commerce/0 --to-time $before_drop into $dir/restored"
"$cairn" restore commerce/0 --local --target-datadir "$dir/restored" --storage "file://$dir/backups" --to-time "$before_drop"

step "Starting mariadbd on the restored data directory: the table is back"
start_server "$dir/restored" "$dir/restored.sock" 2
sql "$dir/restored.sock" "SELECT @@gtid_binlog_pos AS restored_position; SELECT * FROM commerce.corder"

step "Done. The data stays under $dir; run this script again to start over."
