#!/usr/bin/env bash
# Soak: mixed API traffic (bench/mixed.lua: GETs, PUTs, creates of Noop tasks that the runner
# runs, lists) against the release build on SQLite for MINUTES (default 10), paced at RATE
# requests/s (default 2000, well under saturation on two cores, so latency means something).
# Every INTERVAL seconds (default 30) it prints the interval's rate, p50/p99/max latency, error
# answers and the server's RSS. It fails if any answer was an error or RSS ever passed
# RSS_LIMIT_MB (default 256). Loopback only. Not run in CI: it takes MINUTES.
#   bench/soak.sh
#   MINUTES=2 RATE=4000 bench/soak.sh
#   DATABASE=postgres://postgres@127.0.0.1/soak bench/soak.sh   # an empty PostgreSQL database
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-10}
INTERVAL=${INTERVAL:-30}
RATE=${RATE:-2000}
RSS_LIMIT_MB=${RSS_LIMIT_MB:-256}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
PORT=${PORT:-18766}
TASKS=${TASKS:-32}
DURATION=$INTERVAL
export RATE

command -v wrk >/dev/null || { echo "soak needs wrk (apt-get install wrk)" >&2; exit 2; }
. bench/lib.sh
bin=$(bench_binary)
dir=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$dir"' EXIT
start_server "$bin" "${DATABASE:-sqlite:$dir/soak.db}" "${SERVER_LOG:-$dir/server.log}"
create_tasks "$TASKS"
rss_mb() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' /proc/$server/status; }

echo "batchd soak: $MINUTES min of mixed traffic at $RATE req/s, wrk -t$THREADS -c$CONNS, $(nproc) cores; RSS at start $(rss_mb) MB"
rounds=$(( MINUTES * 60 / INTERVAL ))
worst_rss=0 failed=0
for i in $(seq 1 "$rounds"); do
  line=$(run "t=$((i * INTERVAL))s" mixed.lua)
  rss=$(rss_mb)
  (( rss > worst_rss )) && worst_rss=$rss
  echo "$line rss_mb=$rss"
  if ! grep -q 'errors=0 non2xx=0' <<<"$line"; then failed=1; fi
  if (( rss > RSS_LIMIT_MB )); then failed=1; fi
done
tasks=$(curl -sf -u admin:bench "http://127.0.0.1:$PORT/metrics" | grep '^batchd_tasks' | sed -E 's/batchd_tasks\{state="([A-Za-z]+)"\} /\1=/' | tr '\n' ' ')
echo "soak done: highest RSS $worst_rss MB (limit $RSS_LIMIT_MB MB); tasks by state: $tasks"
exit $failed
