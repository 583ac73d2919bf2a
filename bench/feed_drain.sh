#!/usr/bin/env bash
# What the task notices (migrations/postgres/0008_task_notices.sql) cost a PostgreSQL drain:
# TASKS Noop tasks are inserted into a fresh database, then a server with the runner on drains
# them; throughput = TASKS / (last finish - first start), from the rows' own timestamps. Each
# round runs twice on the same binary: once with the 0008 triggers dropped ("without"), once
# with them ("with"); WATCHERS=1 adds a run with one stream subscriber attached, so the hub
# re-reads every task it is told of. Loopback only, bounded by TASKS and ROUNDS.
#   PG=postgres://postgres@127.0.0.1:5432/postgres TASKS=5000 ROUNDS=3 bench/feed_drain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
TASKS=${TASKS:-5000}
ROUNDS=${ROUNDS:-3}
WATCHERS=${WATCHERS:-0}
PORT=${PORT:-18791}
[ "$TASKS" -le 100000 ] || { echo "TASKS is at most 100000" >&2; exit 2; }
. bench/lib.sh
bin=$(bench_binary)
dir=$(mktemp -d)
db=feed_drain_$$
url="${PG%/*}/$db"
server=
cleanup() {
  [ -n "$server" ] && { kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; }
  [ -n "${watcher:-}" ] && { kill $watcher 2>/dev/null || true; }
  psql "$PG" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
printf '[runner]\nenabled = true\nmax_running = 1024\nclaim_batch = 512\n\n[retention]\nsucceeded = "never"\nfailed = "never"\n' >"$dir/batchd.toml"
export BATCHD_CONFIG="$dir/batchd.toml"
echo "batchd PostgreSQL drain, task notices off and on: $TASKS Noop tasks, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), PostgreSQL $(psql "$PG" -tAc 'SHOW server_version')"

# drain LABEL TRIGGERS(on|off) WATCH(0|1)
drain() {
  psql "$PG" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  psql "$PG" -qc "CREATE DATABASE $db" >/dev/null
  # A first start migrates (runner off, no tasks yet), then the tasks go in behind its back.
  start_server "$bin" "$url" "$dir/server.log"
  kill $server; wait $server 2>/dev/null || true; server=
  if [ "$2" = off ]; then
    psql "$url" -qc "DROP TRIGGER batchtask_created_notify ON batchtask; DROP TRIGGER batchtask_changed_notify ON batchtask; DROP TRIGGER batchtask_deleted_notify ON batchtask"
  fi
  psql "$url" -qc "INSERT INTO batchtask (name, associate_id, state, registered, updated) SELECT 'Noop', 1, 1, now(), now() FROM generate_series(1, $TASKS)"
  start_server "$bin" "$url" "$dir/server.log"
  if [ "$3" = 1 ]; then
    curl -sN -u admin:bench http://127.0.0.1:$PORT/api/v1/BatchTask/Events/stream >"$dir/watched" &
    watcher=$!
  fi
  for _ in $(seq 1 600); do
    left=$(psql "$url" -tAc "SELECT count(*) FROM batchtask WHERE state <> 4")
    [ "$left" = 0 ] && break
    sleep 0.2
  done
  psql "$url" -tAc "SELECT round($TASKS / extract(epoch FROM max(updated) - min(laststarted))) || ' tasks/s (' || round(extract(epoch FROM max(updated) - min(laststarted))::numeric, 2) || ' s)' FROM batchtask" | sed "s/^/$1: /"
  if [ "$3" = 1 ]; then
    kill $watcher 2>/dev/null || true; watcher=
    echo "$1: the subscriber read $(grep -c '^event:' "$dir/watched" || true) events"
  fi
  kill $server; wait $server 2>/dev/null || true; server=
}

for _ in $(seq 1 "$ROUNDS"); do
  drain "without notices" off 0
  drain "with notices   " on 0
  [ "$WATCHERS" = 1 ] && drain "with a watcher " on 1
done
