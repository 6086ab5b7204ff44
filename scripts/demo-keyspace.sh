#!/usr/bin/env bash
# The keyspace demo: `cairn up --shards -80,80-` starts a two-shard keyspace
# (each shard with a primary and a replica, each with its own MariaDB) under
# ./cairn-local-keyspace. Then: orders and their payments on two shards, a
# backup of the whole keyspace, a restore point taken while both shards
# write, more writes, a second backup, and both shards restored to the
# point side by side: every payment restored has its order.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
command -v swift >/dev/null 2>&1 || export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/install.sh
echo "Building cairn (release; the first build takes several minutes)..."
mkdir -p .build
swift build -c release --product cairn >"$here/.build/demo-build.log" 2>&1 || { cat "$here/.build/demo-build.log"; exit 1; }
cairn="$here/.build/release/cairn"
dir="$here/cairn-local-keyspace"
server="localhost:15998"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '$ %s\n' "$*"; }
sql() { mariadb --socket="$dir/$1/mysqld.sock" --user=root --table -e "$2"; }

if "$cairn" --server "$server" tablets >/dev/null 2>&1; then
  echo "A Cairn cluster already answers on $server; stop it and run the demo again." >&2
  exit 1
fi
for pidfile in "$dir"/zone1-*/data/mariadbd.pid; do
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
done
sleep 1
rm -rf "$dir"
mkdir -p "$dir"
cleanup() {
  for pid in ${restored_pids:-}; do kill "$pid" 2>/dev/null || true; done
  [ -n "${up_pid:-}" ] && kill -INT "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null || true
}
trap cleanup EXIT

step "cairn up --shards -80,80-: keyspace commerce with two shards under $dir"
"$cairn" up --dir "$dir" --port 15998 --mysql-base-port 17300 --shards -80,80- > "$dir/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 1 900); do
  grep -q "Press Ctrl-C" "$dir/up.log" 2>/dev/null && break
  kill -0 "$up_pid" 2>/dev/null || { cat "$dir/up.log"; exit 1; }
  sleep 0.5
done
cat "$dir/up.log"
export CAIRN_AUTH_TOKEN="$(cat "$dir/ctld/auth-token")" CAIRN_SERVER="$server"

step "Orders live on shard -80 (zone1-100), payments on shard 80- (zone1-200)"
sql zone1-100 "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, item VARCHAR(32))"
sql zone1-200 "CREATE DATABASE shop; CREATE TABLE shop.payments (order_id INT PRIMARY KEY, amount INT)"
say "cairn backup commerce"
"$cairn" backup commerce

step "Orders and then their payments are written, one pair at a time; a restore point is taken meanwhile"
write_pairs() {
  for i in $(seq "$1" "$2"); do
    mariadb --socket="$dir/zone1-100/mysqld.sock" --user=root -e "INSERT INTO shop.orders VALUES ($i, 'item $i')"
    mariadb --socket="$dir/zone1-200/mysqld.sock" --user=root -e "INSERT INTO shop.payments VALUES ($i, $((i * 10)))"
  done
}
write_pairs 1 300 &
writer=$!
sleep 2
say "cairn restore-point commerce before-sale"
"$cairn" restore-point commerce before-sale
wait "$writer"
say "cairn backup commerce"
"$cairn" backup commerce
say "cairn restore-points commerce"
"$cairn" restore-points commerce

step "Both shards restored to the point, side by side"
say "cairn restore commerce --local --target-root $dir/restored --to-restore-point before-sale --storage file://$dir/backups"
"$cairn" restore commerce --local --target-root "$dir/restored" --to-restore-point before-sale --storage "file://$dir/backups"
restored_pids=""
for shard in -80 80-; do
  mariadbd --no-defaults --datadir="$dir/restored/$shard" --socket="$dir/restored/$shard.sock" --skip-networking \
    --skip-slave-start --user="$(id -un)" >"$dir/restored/$shard.log" 2>&1 &
  restored_pids="$restored_pids $!"
done
for shard in -80 80-; do
  for _ in $(seq 1 120); do mariadb --socket="$dir/restored/$shard.sock" --user=root -e "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
done
orders=$(mariadb --socket="$dir/restored/-80.sock" --user=root -N -e "SELECT COUNT(*) FROM shop.orders")
payments=$(mariadb --socket="$dir/restored/80-.sock" --user=root -N -e "SELECT COUNT(*) FROM shop.payments")
max_paid=$(mariadb --socket="$dir/restored/80-.sock" --user=root -N -e "SELECT COALESCE(MAX(order_id), 0) FROM shop.payments")
echo "restored: $orders orders on -80, $payments payments on 80- (of 300 written)"
if [ "$max_paid" -le "$orders" ]; then
  echo "every restored payment has its order: the newest payment is for order $max_paid, and orders 1..$orders are there"
else
  echo "a payment for order $max_paid was restored without its order (only $orders orders): the point is not consistent" >&2
  exit 1
fi
step "Done. Stopping the cluster (the data stays under $dir)."
