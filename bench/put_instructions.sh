#!/usr/bin/env bash
# Instructions per durable `PUT /api/v1/BatchTask/{id}` on SQLite (bench/put.lua's body: a new
# Description each time), counted by valgrind's callgrind: unlike PUTs/s, the count does not
# depend on the load.
#   BATCHD_BIN=/tmp/a N=2000 bench/put_instructions.sh              # serial client, one task
#   BATCHD_BIN=/tmp/a N=2000 CLIENTS=32 bench/put_instructions.sh   # 32 clients, a task each
# The server runs with the default configuration (runner on), as bench/http.sh's does; EXTRA_TOML
# adds to it. One server under callgrind: a task per client created, WARM PUTs first (credential cached,
# statements prepared, pages in), then the counters are zeroed, N PUTs sent, and the counters
# dumped, so the profile (OUT/cg.out.*, for callgrind_annotate) holds the N PUTs only. Prints
# the instructions per PUT and the SQLite calls per PUT (sqlite3_step: statements run;
# sqlite3_prepare*: statements parsed, 0 once the statement cache is warm).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BATCHD_BIN:-target/release/batchd}
N=${N:-2000}
WARM=${WARM:-200}
CLIENTS=${CLIENTS:-1}
PORT=${PORT:-18881}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
printf '%b\n' "${EXTRA_TOML:-}" >"$OUT/b.toml"
BATCHD_ADMIN_PASSWORD=pw BATCHD_LOG=warn BATCHD_CONFIG="$OUT/b.toml" BATCHD_LISTEN=127.0.0.1:$PORT \
  BATCHD_DATABASE="sqlite:$OUT/b.db" valgrind --tool=callgrind --vgdb=yes \
  --callgrind-out-file="$OUT/cg.out.%p" "$BIN" serve 2>"$OUT/valgrind.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do curl -sf http://127.0.0.1:$PORT/api >/dev/null && break; sleep 0.2; done
puts() { # count clients
  timeout 1200 python3 - "$PORT" "$1" "$2" <<'PY'
import base64, http.client, sys, threading
port, n, clients = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
auth = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode(),
        "Content-Type": "application/json", "Accept": "application/json"}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
c.request("GET", "/api/v1/BatchTask/All", headers=auth)
have = c.getresponse().read().count(b'"Id"')
for _ in range(have, clients):
    c.request("POST", "/api/v1/BatchTask", headers=auth,
              body=b'{"Name":"Bench","Description":"benchmark task","ParameterObject":{"k":"v"}}')
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
left, lock = [n], threading.Lock()
def client(i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    k = 0
    while True:
        with lock:
            if left[0] == 0:
                return
            left[0] -= 1
        k += 1
        body = ('{"Description":"bench %d-%d","Response":"r"}' % (i, k)).encode()
        c.request("PUT", "/api/v1/BatchTask/%d" % (i + 1), body=body, headers=auth)
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
[t.start() for t in threads]
[t.join() for t in threads]
PY
}
puts "$WARM" "$CLIENTS"
callgrind_control -z "$pid" >/dev/null
puts "$N" "$CLIENTS"
callgrind_control -d "$pid" >/dev/null
kill -INT "$pid"
wait "$pid" || true
trap - EXIT
dump=$(ls "$OUT"/cg.out.*.1 | head -1)
python3 bench/callgrind_per_request.py "$dump" "$N" "$BIN" "$CLIENTS" put
echo "profile: $dump"
