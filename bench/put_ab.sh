#!/usr/bin/env bash
# Server CPU per durable PUT of two builds, side by side on SQLite: both servers run at once (32
# tasks each, default config), and ROUNDS rounds of wrk (bench/put.lua, -t2 -c32, SECS s a run)
# alternate between them, so both see the same load; prints each run's PUT/s and server CPU µs
# per PUT (utime + stime from /proc/PID/stat), then the medians. For a machine too busy for
# bench/http.sh's one run per build. Loopback only, about ROUNDS * 2 * SECS seconds.
#   bench/put_ab.sh /tmp/base-batchd target/release/batchd
#   ROUNDS=20 SECS=3 bench/put_ab.sh A_BIN B_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: bench/put_ab.sh A_BIN B_BIN" >&2; exit 2; }
command -v wrk >/dev/null || { echo "put_ab.sh needs wrk (apt-get install wrk)" >&2; exit 2; }
ROUNDS=${ROUNDS:-10}
SECS=${SECS:-2}
PORT_A=${PORT_A:-18801}
PORT_B=${PORT_B:-18802}
THREADS=2 CONNS=32
dir=$(mktemp -d)
. bench/lib.sh
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for x in A B; do
  if [ $x = A ]; then bin=$1 PORT=$PORT_A; else bin=$2 PORT=$PORT_B; fi
  start_server "$bin" "sqlite:$dir/$x.db" "$dir/$x.log"
  pids+=("$server")
  create_tasks 32
done
cat bench/put.lua bench/report.lua >"$dir/put.lua"
hz=$(getconf CLK_TCK)
echo "put_ab: A=$1 B=$2 rounds=$ROUNDS ${SECS}s each, load $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq 1 "$ROUNDS"); do
  for i in 0 1; do
    x=$([ $i = 0 ] && echo A || echo B) port=$([ $i = 0 ] && echo $PORT_A || echo $PORT_B) pid=${pids[$i]}
    t0=$(awk '{print $14 + $15}' /proc/$pid/stat)
    n=$(wrk -t$THREADS -c$CONNS -d"${SECS}s" -s "$dir/put.lua" "http://127.0.0.1:$port" | sed -nE 's/.*RESULT rps=([0-9]+).*/\1/p')
    t1=$(awk '{print $14 + $15}' /proc/$pid/stat)
    awk -v x=$x -v t=$((t1 - t0)) -v hz="$hz" -v n="$n" -v d="$SECS" \
      'BEGIN{printf "%s rps=%d server_cpu_us_per_put=%.1f\n", x, n, t / hz * 1e6 / (n * d)}'
  done
done | tee "$dir/out"
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
for x in A B; do
  echo "RESULT $x median server_cpu_us_per_put=$(sed -nE "s/^$x .*per_put=//p" "$dir/out" | median)" \
    "rps=$(sed -nE "s/^$x rps=([0-9]+).*/\1/p" "$dir/out" | median)"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
