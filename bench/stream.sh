#!/usr/bin/env bash
# Event-stream benchmark: SUBSCRIBERS idle subscribers to GET /api/v1/BatchTask/Events/stream,
# the server's RSS and CPU while they sit idle, then the fan-out latency of EVENTS changes (one
# PUT at a time) to all of them, measured by examples/stream_fanout.rs. Loopback only, bounded:
# one server, SUBSCRIBERS connections, IDLE_SECONDS idle, EVENTS changes.
#   bench/stream.sh                                  # release builds, SQLite
#   SUBSCRIBERS=1000 EVENTS=50 IDLE_SECONDS=10 bench/stream.sh
#   DATABASE=postgres://postgres@127.0.0.1/streambench bench/stream.sh   # an empty PostgreSQL database
#   BATCHD_BIN=/tmp/batchd-x CLIENT_BIN=/tmp/stream_fanout bench/stream.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-18790}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
EVENTS=${EVENTS:-50}
IDLE_SECONDS=${IDLE_SECONDS:-10}
# Loopback only: the server listens on 127.0.0.1 and the client talks to it there.
[ "$SUBSCRIBERS" -le 20000 ] || { echo "SUBSCRIBERS is at most 20000" >&2; exit 2; }
[ "$EVENTS" -le 10000 ] || { echo "EVENTS is at most 10000" >&2; exit 2; }
ulimit -n $((SUBSCRIBERS * 2 + 512)) 2>/dev/null || true

. bench/lib.sh
bin=$(bench_binary)
if [ -n "${CLIENT_BIN:-}" ]; then
  client=$CLIENT_BIN
else
  cargo build --release -q --example stream_fanout
  client=${CARGO_TARGET_DIR:-target}/release/examples/stream_fanout
fi
dir=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$dir"' EXIT
cat >"$dir/batchd.toml" <<CONF
[http]
max_connections = $((SUBSCRIBERS + 128))
max_stream_subscribers = $((SUBSCRIBERS + 16))
CONF
export BATCHD_CONFIG="$dir/batchd.toml"
start_server "$bin" "${DATABASE:-sqlite:$dir/bench.db}" "${SERVER_LOG:-$dir/server.log}"
task=$(curl -sf -u admin:bench -H 'Content-Type: application/json' -d '{"Name":"Bench","Description":"fan-out"}' \
  http://127.0.0.1:$PORT/api/v1/BatchTask)
rss=$(ps -o rss= -p $server)
echo "batchd event-stream benchmark: $SUBSCRIBERS subscribers, $EVENTS changes, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), ${DATABASE:-sqlite}"
echo "server RSS before any subscriber: $((rss / 1024)) MiB"
BASE=http://127.0.0.1:$PORT AUTH=admin:bench SUBSCRIBERS=$SUBSCRIBERS EVENTS=$EVENTS IDLE_SECONDS=$IDLE_SECONDS \
  SERVER_PID=$server TASK=$task "$client"
