#!/usr/bin/env bash
# What PostgreSQL itself spends on a 20,480-task drain, without batchd: the drain's statements
# replayed serially by psql on one session (40 claims of 512 with their event rows, each
# committed, then 40 finishes of 512 with theirs), on batchd's real schema, against the same
# drain on layouts batchd does not have. Reports the session backend's CPU time (from /proc,
# steadier under load than the wall time) and the summed statement time. Variants:
#   today            batchd's batchtask table (all its indexes and triggers), 2 events per task
#   narrow           the runner's columns in a narrow table of their own (4 indexes), 2 events
#   narrow-noevents  the same without the event rows
#   graphile-like    narrow, no events, and a finish that deletes the row (graphile-worker's way)
# Usage: BATCHD_BIN=target/release/batchd ROUNDS=2 bench/pg_floor.sh
# Loopback only; makes and drops its own database.
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
ROUNDS=${ROUNDS:-2}
. bench/lib.sh
bin=$(bench_binary)
db="batchd_bench_floor_$$"
url="${PG%/*}/$db"
dir=$(mktemp -d)
cleanup() { PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
psql "$PG" -qc "CREATE DATABASE $db"
# batchd's schema, and one task created over HTTP to copy from.
printf '[runner]\nenabled = false\n' > "$dir/cfg.toml"
BATCHD_CONFIG="$dir/cfg.toml" BATCHD_ADMIN_PASSWORD=bench BATCHD_LOG=warn "$bin" serve --listen 127.0.0.1:18897 --database "$url" 2>"$dir/log" &
server=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18897/api >/dev/null && break; sleep 0.1; done
curl -sf -u admin:bench -H 'Content-Type: application/json' -d '{"Name":"Noop"}' http://127.0.0.1:18897/api/v1/BatchTask >/dev/null
kill $server; wait $server || true
here=bench/pg_floor
run() { # NAME STEP [PREPARE]
  psql -q "$url" -f $here/seed.sql
  [ -n "${3:-}" ] && psql -q "$url" -f "$3"
  { printf 'SELECT pg_backend_pid() AS pid \\gset\n\\setenv P :pid\n\\timing on\n'
    for _ in $(seq 40); do cat "$2"; done
    printf '\\timing off\n\\! echo cpu $(awk '"'"'{print $14+$15}'"'"' /proc/$P/stat)\n'; } > "$dir/run.sql"
  local tick; tick=$(getconf CLK_TCK)
  psql -q "$url" -f "$dir/run.sql" | awk -v name="$1" -v tick="$tick" -v ld="$(cut -d' ' -f1 /proc/loadavg)" \
    '/^Time/ {t += $2} /^cpu/ {c = $2} END {printf "%-16s backend CPU %5.0f ms   statements %5.0f ms   (20,480 tasks; load %s)\n", name, c * 1000 / tick, t, ld}'
}
echo "PostgreSQL drain floor: $(nproc) cores, PostgreSQL $(psql "$PG" -tAc 'SHOW server_version')"
for _ in $(seq "$ROUNDS"); do
  run today $here/batchd_today.sql
  run narrow $here/narrow_step.sql $here/narrow_table.sql
  run narrow-noevents $here/narrow_no_events_step.sql $here/narrow_table.sql
  run graphile-like $here/narrow_delete_step.sql $here/narrow_table.sql
done
