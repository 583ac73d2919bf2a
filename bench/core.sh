#!/usr/bin/env bash
# Core API benchmark: GET and PUT /api/v1/BatchTask/{id} with Basic auth on SQLite (or on the
# empty PostgreSQL database DATABASE names, e.g. DATABASE=postgres://postgres@127.0.0.1/bench).
# Loopback only, bounded: each run lasts DURATION seconds at CONNS connections.
#   bench/core.sh                # builds release, runs GET then PUT, prints RESULT lines
#   DURATION=20 CONNS=32 bench/core.sh
#   PHASES=put ROUNDS=5 bench/core.sh   # only the PUT run, five times over
#   BATCHD_BIN=/tmp/batchd-a bench/core.sh  # an already built binary (to compare two builds)
#   RATE=12000 PHASES=put bench/core.sh     # paced near 12,000 req/s instead of saturating
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
PORT=${PORT:-18765}
TASKS=${TASKS:-32}
PHASES=${PHASES:-get put}
ROUNDS=${ROUNDS:-1}

. bench/lib.sh
bin=$(bench_binary)
dir=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$dir"' EXIT
start_server "$bin" "${DATABASE:-sqlite:$dir/bench.db}" "${SERVER_LOG:-$dir/server.log}"
create_tasks "$TASKS"

echo "batchd core benchmark: wrk -t$THREADS -c$CONNS -d${DURATION}s, $TASKS tasks, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq 1 "$ROUNDS"); do
  for phase in $PHASES; do run "$phase" "$phase.lua"; done
done
RSS=$(ps -o rss= -p $server); echo "server RSS after the runs: $((RSS / 1024)) MB"
