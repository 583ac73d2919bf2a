#!/usr/bin/env bash
# Formats benchmark: XML vs JSON on GET and PUT /api/v1/BatchTask/{id}, and the filtered OData
# list over 100,000 tasks. Loopback only, bounded: each wrk run lasts DURATION seconds.
#   bench/formats.sh                    # builds release, prints RESULT lines
#   DURATION=20 CONNS=32 bench/formats.sh
# Needs wrk and the sqlite3 shell (apt-get install wrk sqlite3) to seed the 100,000 tasks.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
PORT=${PORT:-18766}
TASKS=${TASKS:-32}

. bench/lib.sh
bin=$(bench_binary)
dir=$(mktemp -d)
# A private copy: other builds sharing the target directory cannot swap it mid-run.
cp "$bin" "$dir/batchd"
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$dir"' EXIT
start_server "$dir/batchd" "sqlite:$dir/bench.db" "$dir/server.log"
create_tasks "$TASKS"

echo "batchd formats benchmark: wrk -t$THREADS -c$CONNS -d${DURATION}s, $TASKS tasks, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
run get-json get.lua ACCEPT=application/json
run get-xml get.lua ACCEPT=application/xml
run put-json put.lua CTYPE=application/json
run put-xml put.lua CTYPE=application/xml

# The list over 100,000 more tasks, seeded straight into the database with the server stopped,
# then a restart: the server refreshes the planner's statistics when it opens the database.
kill $server; wait $server 2>/dev/null || true
sqlite3 "$dir/bench.db" ".read bench/seed_100k.sql"
echo "tasks: $(sqlite3 "$dir/bench.db" 'SELECT COUNT(*) FROM batchtask')"
start_server "$dir/batchd" "sqlite:$dir/bench.db" "$dir/server.log"
# Each filter alone, one request at a time: the latency a client sees.
while read -r q; do
  [ -z "$q" ] && continue
  times=$(for _ in $(seq 1 15); do
    curl -s -o /dev/null -w '%{time_total}\n' -u admin:bench "http://127.0.0.1:$PORT/api/v1/BatchTask?$q"
  done | sort -n)
  printf 'list-1 median_ms=%s max_ms=%s %s\n' \
    "$(awk '{a[NR]=$1} END{printf "%.1f", a[int((NR+1)/2)]*1000}' <<<"$times")" \
    "$(tail -1 <<<"$times" | awk '{printf "%.1f", $1*1000}')" "$q"
done < <(sed -nE "s/^  \"(.*)\",$/\1/p" bench/list.lua)
CONNS=4 run list-json list.lua ACCEPT=application/json
CONNS=4 run list-xml list.lua ACCEPT=application/xml
RSS=$(ps -o rss= -p $server); echo "server RSS after the runs: $((RSS / 1024)) MB"
