#!/usr/bin/env bash
# Instructions per `POST /api/v1/BatchTask` on SQLite (runner off, bench/drain.py's body),
# counted by valgrind's callgrind: unlike creates/s, the count does not depend on the load.
#   BATCHD_BIN=/tmp/a N=2000 bench/create_instructions.sh            # serial client
#   BATCHD_BIN=/tmp/a N=2000 CLIENTS=32 bench/create_instructions.sh  # drain.py's 32 clients
#   EXTRA_TOML='[http]\ntask_cache_entries = 0' ...                  # more config
# One server under callgrind: WARM creates first (credential cached, statements prepared,
# pages in), then the counters are zeroed, N creates sent, and the counters dumped, so the
# profile (OUT/cg.out.*, for callgrind_annotate) holds the N creates only. Prints the
# instructions per create and the SQLite calls per create (sqlite3_step: statements run;
# sqlite3_prepare*: statements parsed, 0 once the statement cache is warm).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BATCHD_BIN:-target/release/batchd}
N=${N:-2000}
WARM=${WARM:-200}
CLIENTS=${CLIENTS:-1}
PORT=${PORT:-18879}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
printf '[runner]\nenabled = false\n\n[retention]\nsucceeded = "never"\nfailed = "never"\n%b\n' "${EXTRA_TOML:-}" >"$OUT/b.toml"
BATCHD_ADMIN_PASSWORD=pw BATCHD_LOG=warn BATCHD_CONFIG="$OUT/b.toml" BATCHD_LISTEN=127.0.0.1:$PORT \
  BATCHD_DATABASE="sqlite:$OUT/b.db" valgrind --tool=callgrind --vgdb=yes \
  --callgrind-out-file="$OUT/cg.out.%p" "$BIN" serve 2>"$OUT/valgrind.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do curl -sf http://127.0.0.1:$PORT/api >/dev/null && break; sleep 0.2; done
creates() { # count clients
  timeout 1200 python3 - "$PORT" "$1" "$2" <<'PY'
import base64, http.client, sys, threading
port, n, clients = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
auth = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode(), "Content-Type": "application/json"}
left, lock = [n], threading.Lock()
def client():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    while True:
        with lock:
            if left[0] == 0:
                return
            left[0] -= 1
        c.request("POST", "/api/v1/BatchTask", body=b'{"Name":"Noop"}', headers=auth)
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
threads = [threading.Thread(target=client) for _ in range(clients)]
[t.start() for t in threads]
[t.join() for t in threads]
PY
}
creates "$WARM" 1
callgrind_control -z "$pid" >/dev/null
creates "$N" "$CLIENTS"
callgrind_control -d "$pid" >/dev/null
kill -INT "$pid"
wait "$pid" || true
trap - EXIT
dump=$(ls "$OUT"/cg.out.*.1 | head -1)
python3 bench/callgrind_per_request.py "$dump" "$N" "$BIN" "$CLIENTS" create
echo "profile: $dump"
