#!/usr/bin/env bash
# Two nodes on one PostgreSQL database: node A serves the API with its runner off, node B runs
# the tasks. Measures, over the change feed (polls slowed to 5 s so that they cannot help):
#   create-to-start: a Noop created on A, LastStarted - Created (stored times), SAMPLES tasks
#                    created one at a time with 5-25 ms gaps;
#   stop-to-end:     a running Sleep on B stopped through A, from the stop's answer until the
#                    task reads Failed on A (polled every 2 ms), STOPS tasks.
# Loopback only, bounded. Usage:
#   bench/nodes.sh                                   # builds release, uses the local PostgreSQL
#   SAMPLES=500 STOPS=50 PG=postgres://postgres@127.0.0.1:5432/postgres bench/nodes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${SAMPLES:-500}
STOPS=${STOPS:-50}
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
. bench/lib.sh
bin=$(bench_binary)
dir=$(mktemp -d)
db="batchd_bench_nodes_$$"
psql "$PG" -qc "CREATE DATABASE $db" >/dev/null
url="${PG%/*}/$db"
cleanup() {
  kill $a $b 2>/dev/null || true
  wait $a $b 2>/dev/null || true
  psql "$PG" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
printf '[runner]\npoll = "5s"\nstop_poll = "5s"\nenabled = false\n' >"$dir/a.toml"
printf '[runner]\npoll = "5s"\nstop_poll = "5s"\n' >"$dir/b.toml"
BATCHD_CONFIG=$dir/a.toml BATCHD_ADMIN_PASSWORD=bench BATCHD_LOG=warn "$bin" serve --listen 127.0.0.1:18801 --database "$url" 2>>"$dir/a.log" &
a=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18801/api >/dev/null && break; sleep 0.1; done
BATCHD_CONFIG=$dir/b.toml BATCHD_ADMIN_PASSWORD=bench BATCHD_LOG=warn "$bin" serve --listen 127.0.0.1:18802 --database "$url" 2>>"$dir/b.log" &
b=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18802/api >/dev/null && break; sleep 0.1; done
echo "batchd two-node feed benchmark: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), PostgreSQL $(psql "$PG" -tAc 'SHOW server_version')"
python3 - "$SAMPLES" "$STOPS" <<'PY'
import base64, json, random, sys, time, urllib.request
samples, stops = int(sys.argv[1]), int(sys.argv[2])
A = "http://127.0.0.1:18801"
auth = "Basic " + base64.b64encode(b"admin:bench").decode()
def call(method, path, body=None):
    req = urllib.request.Request(A + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": auth, "Content-Type": "application/json", "Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")
def at(s):  # 2026-12-02T16:35:53.3210200+00:00 -> seconds
    from datetime import datetime
    head, frac = s[:19], s[20:27]
    return datetime.fromisoformat(head + "+00:00").timestamp() + int(frac) / 1e7
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
ids = []
for _ in range(samples):
    ids.append(call("POST", "/api/v1/BatchTask", {"Name": "Noop"}))
    time.sleep(random.uniform(0.005, 0.025))
time.sleep(1)
waits = []
for i in ids:
    t = call("GET", f"/api/v1/BatchTask/{i}")
    assert t["LastStarted"], t
    waits.append((at(t["LastStarted"]) - at(t["Created"])) * 1000)
print(f"create on A -> start on B, {samples} tasks: p50 {pct(waits,50):.2f} ms, p99 {pct(waits,99):.2f} ms, max {max(waits):.2f} ms")
ends = []
for _ in range(stops):
    i = call("POST", "/api/v1/BatchTask", {"Name": "Sleep", "ParameterObject": {"Seconds": "60"}})
    while call("GET", f"/api/v1/BatchTask/{i}")["State"] != "Started":
        time.sleep(0.002)
    call("POST", f"/api/v1/BatchTask/{i}/Stop")
    asked = time.monotonic()
    while call("GET", f"/api/v1/BatchTask/{i}")["State"] != "Failed":
        time.sleep(0.002)
    ends.append((time.monotonic() - asked) * 1000)
if ends:
    print(f"stop on A -> run ended on B, {stops} tasks: p50 {pct(ends,50):.1f} ms, p99 {pct(ends,99):.1f} ms, max {max(ends):.1f} ms")
PY
