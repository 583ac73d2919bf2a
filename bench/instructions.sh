#!/usr/bin/env bash
# Instructions per authenticated `GET /api/v1/BatchTask/1`, counted by valgrind's callgrind.
# Unlike requests/s, the count does not depend on what else the machine is doing, so it can tell
# apart two builds whose difference is within the VM's noise (a middleware layer, a metric).
#   bench/instructions.sh                      # the release build, 1000 requests
#   BATCHD_BIN=/tmp/batchd-a N=2000 bench/instructions.sh
# Runs the server twice under callgrind (N and 2N requests on one keep-alive connection) and
# divides the difference, so start-up and shutdown cancel out. Needs valgrind and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
PORT=${PORT:-18877}
if [ -z "${BATCHD_BIN:-}" ]; then
  cargo build --release -q
  BATCHD_BIN="${CARGO_TARGET_DIR:-target}/release/batchd"
fi

total_instructions() { # requests
  local dir pid
  dir=$(mktemp -d)
  BATCHD_ADMIN_PASSWORD=bench BATCHD_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
    "$BATCHD_BIN" serve --listen 127.0.0.1:$PORT --database "sqlite:$dir/b.db" 2>"$dir/valgrind.log" &
  pid=$!
  for _ in $(seq 1 300); do curl -sf http://127.0.0.1:$PORT/api >/dev/null && break; sleep 0.2; done
  python3 - "$PORT" "$1" <<'PY'
import base64, http.client, json, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
auth = {"Authorization": "Basic " + base64.b64encode(b"admin:bench").decode()}
c = http.client.HTTPConnection("127.0.0.1", port)
body = json.dumps({"Name": "Bench", "Description": "d", "ParameterObject": {"k": "v"}})
c.request("POST", "/api/v1/BatchTask", body=body, headers={**auth, "Content-Type": "application/json"})
c.getresponse().read()
for _ in range(n):
    c.request("GET", "/api/v1/BatchTask/1", headers={**auth, "Accept": "application/json"})
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
PY
  kill -INT "$pid"
  wait "$pid" || true
  awk '/^(summary|totals):/ {print $2; exit}' "$dir/cg.out"
  rm -rf "$dir"
}

a=$(total_instructions "$N")
b=$(total_instructions $((N * 2)))
echo "RESULT instructions_per_get=$(((b - a) / N)) binary=$BATCHD_BIN"
