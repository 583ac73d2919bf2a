#!/usr/bin/env bash
# batchd's HTTP paths as a fraction of a bare axum handler (examples/hello.rs) measured by the
# same wrk settings in the same run: GET one task and durable PUT of one task, on SQLite and on a
# fresh PostgreSQL database; the hello run is repeated before each engine so every ratio has a
# neighbour taken under the same load. Then RSS (VmRSS, VmHWM from /proc/PID/status) of a node
# just started, and with RUNNING Sleep tasks running at once, on each engine.
# Loopback only, bounded (DURATION s a wrk run, 10 min at most for the RSS phase). Usage:
#   bench/http.sh                              # builds release; DURATION=10 CONNS=32 THREADS=2
#   DURATION=5 RUNNING=2000 bench/http.sh      # a quick smoke run
#   ENGINES=sqlite PHASES=http bench/http.sh   # PHASES: http rss
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
PORT=${PORT:-18767}
TASKS=${TASKS:-32}
RUNNING=${RUNNING:-10000}
ENGINES=${ENGINES:-sqlite postgres}
PHASES=${PHASES:-http rss}
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
command -v wrk >/dev/null || { echo "http.sh needs wrk (apt-get install wrk)" >&2; exit 2; }
. bench/lib.sh
bin=$(bench_binary)
if [ -z "${HELLO_BIN:-}" ]; then
  cargo build --release -q --example hello
  HELLO_BIN="${CARGO_TARGET_DIR:-target}/release/examples/hello"
fi
dir=$(mktemp -d)
server=
dbs=()
stop() { if [ -n "$server" ]; then kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; server=; fi; }
cleanup() {
  stop
  for db in "${dbs[@]}"; do PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
# database ENGINE NAME: sets $db to a fresh database URL for ENGINE (not in a subshell, so that
# cleanup sees the PostgreSQL databases to drop).
database() {
  if [ "$1" = sqlite ]; then db="sqlite:$dir/$2.db"; return; fi
  local name="batchd_bench_http_$2_$$"
  dbs+=("$name")
  psql "$PG" -qc "CREATE DATABASE $name" >/dev/null
  db="${PG%/*}/$name"
}
rps() { sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$1"; }
status_kib() { awk -v f="$1:" '$1 == f {print $2}' /proc/$server/status; }
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k / 1024}'; }

echo "batchd HTTP benchmark: wrk -t$THREADS -c$CONNS -d${DURATION}s, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
summary=()
if [[ " $PHASES " == *" http "* ]]; then
  for engine in $ENGINES; do
    "$HELLO_BIN" 127.0.0.1:$PORT &
    server=$!
    for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$PORT/ >/dev/null && break; sleep 0.1; done
    hello=$(run "hello" hello.lua)
    echo "$hello"
    stop
    database "$engine" http
    start_server "$bin" "$db" "$dir/$engine.log"
    create_tasks "$TASKS"
    get=$(run "get-$engine" get.lua)
    echo "$get"
    put=$(run "put-$engine" put.lua)
    echo "$put"
    # The variant of before 2026-12-03 14:00: both wrk threads over all ids in step (row waits).
    put_shared=$(run "put-shared-$engine" put.lua SHARED=1)
    echo "$put_shared"
    stop
    summary+=("$(awk -v e="$engine" -v h="$(rps "$hello")" -v g="$(rps "$get")" -v p="$(rps "$put")" \
      -v s="$(rps "$put_shared")" \
      'BEGIN{printf "%-9s hello %6d/s  GET %6d/s = %.2f of hello (target >= 0.5)  PUT %6d/s = %.2f of hello (target >= 0.35; rows shared by threads: %d/s = %.2f)", e, h, g, g / h, p, p / h, s, s / h}')")
  done
fi
if [[ " $PHASES " == *" rss "* ]]; then
  printf '[runner]\nmax_running = %d\nclaim_batch = 1024\n' "$RUNNING" >"$dir/rss.toml"
  for engine in $ENGINES; do
    database "$engine" rss
    BATCHD_CONFIG=$dir/rss.toml start_server "$bin" "$db" "$dir/rss-$engine.log"
    sleep 1
    idle=$(status_kib VmRSS)
    python3 - "$PORT" "$RUNNING" <<'PY'
import base64, json, sys, threading, time, urllib.request
port, n = int(sys.argv[1]), int(sys.argv[2])
auth = "Basic " + base64.b64encode(b"admin:bench").decode()
body = json.dumps({"Name": "Sleep", "ParameterObject": {"Seconds": "120"}}).encode()
left = iter(range(n)); lock = threading.Lock()
def worker():
    while True:
        with lock:
            if next(left, None) is None: return
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/BatchTask", data=body, method="POST",
                                     headers={"Authorization": auth, "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=30).read()
threads = [threading.Thread(target=worker) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
deadline = time.monotonic() + 600
while True:
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": auth}), timeout=30) as r:
        started = sum(float(l.split()[-1]) for l in r.read().decode().splitlines() if l.startswith('batchd_tasks{state="Started"}'))
    if started >= n: break
    assert time.monotonic() < deadline, f"only {started} of {n} running after 10 min"
    time.sleep(0.5)
PY
    sleep 2
    busy=$(status_kib VmRSS) hwm=$(status_kib VmHWM)
    stop
    summary+=("$(printf '%-9s RSS idle %s MiB (target < 30)  %d Sleep tasks running: RSS %s MiB, high-water %s MiB (target < 80)' \
      "$engine" "$(mib "$idle")" "$RUNNING" "$(mib "$busy")" "$(mib "$hwm")")")
  done
fi
echo
printf '%s\n' "${summary[@]}"
