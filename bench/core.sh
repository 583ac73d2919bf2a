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

if [ -z "${BATCHD_BIN:-}" ]; then
  cargo build --release -q
  BATCHD_BIN="${CARGO_TARGET_DIR:-target}/release/batchd"
fi
dir=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$dir"' EXIT
BATCHD_ADMIN_PASSWORD=bench BATCHD_LOG=warn "$BATCHD_BIN" serve \
  --listen 127.0.0.1:$PORT --database "${DATABASE:-sqlite:$dir/bench.db}" 2>"${SERVER_LOG:-$dir/server.log}" &
server=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$PORT/api >/dev/null && break; sleep 0.1; done

for i in $(seq 1 "$TASKS"); do
  curl -sf -u admin:bench -H 'Content-Type: application/json' \
    -d '{"Name":"Bench","Description":"benchmark task","ParameterObject":{"k":"v"}}' \
    http://127.0.0.1:$PORT/api/v1/BatchTask >/dev/null
done
export AUTH="Basic $(printf admin:bench | base64)" TASKS CONNS

cpu_ticks() { awk '{print $14 + $15}' /proc/$server/stat; }

# Prints wrk's RESULT line plus the server's CPU time per request, which depends far less on
# what else the machine is doing than requests/s does.
run() { # name script
  local name=$1 script=$2
  cat "bench/$script" bench/report.lua > "$dir/$name.lua"
  local before after line rps
  before=$(cpu_ticks)
  line=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$dir/$name.lua" "http://127.0.0.1:$PORT" | grep RESULT)
  after=$(cpu_ticks)
  rps=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$line")
  printf '%-10s %s server_cpu_us_per_req=%s\n' "$name" "$line" \
    "$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$rps" -v d="$DURATION" 'BEGIN{printf "%.1f", t / hz * 1e6 / (n * d)}')"
}

echo "batchd core benchmark: wrk -t$THREADS -c$CONNS -d${DURATION}s, $TASKS tasks, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq 1 "$ROUNDS"); do
  for phase in $PHASES; do run "$phase" "$phase.lua"; done
done
RSS=$(ps -o rss= -p $server); echo "server RSS after the runs: $((RSS / 1024)) MB"
