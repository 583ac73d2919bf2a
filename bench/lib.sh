# Shared by core.sh and formats.sh (sourced, not run): the server they load, its seed tasks, and
# one wrk run reported with the server's CPU time per request. Expects PORT, THREADS, CONNS,
# DURATION and a scratch directory in $dir.

# The batchd to measure: $BATCHD_BIN, or the release build (built first).
bench_binary() {
  if [ -n "${BATCHD_BIN:-}" ]; then
    echo "$BATCHD_BIN"
  else
    cargo build --release -q
    echo "${CARGO_TARGET_DIR:-target}/release/batchd"
  fi
}

# start_server BINARY DATABASE LOG: starts batchd (admin:bench) in the background, sets $server,
# and returns once it answers `GET /api`.
start_server() {
  BATCHD_ADMIN_PASSWORD=bench BATCHD_LOG=warn "$1" serve --listen 127.0.0.1:$PORT --database "$2" 2>>"$3" &
  server=$!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$PORT/api >/dev/null && break; sleep 0.1; done
}

# create_tasks N: N tasks with a ParameterObject (so every GET also reads the blob), ids 1..N on
# a fresh database; exports what the wrk scripts read.
create_tasks() {
  for _ in $(seq 1 "$1"); do
    curl -sf -u admin:bench -H 'Content-Type: application/json' \
      -d '{"Name":"Bench","Description":"benchmark task","ParameterObject":{"k":"v"}}' \
      http://127.0.0.1:$PORT/api/v1/BatchTask >/dev/null
  done
  export AUTH="Basic $(printf admin:bench | base64)" TASKS="$1" CONNS THREADS
}

cpu_ticks() { awk '{print $14 + $15}' /proc/$server/stat; }

# run NAME SCRIPT [VAR=value...]: one wrk run of bench/SCRIPT (with report.lua), printing wrk's
# RESULT line plus the server's CPU time per request, which depends far less on what else the
# machine is doing than requests/s does.
run() {
  local name=$1 script=$2
  shift 2
  cat "bench/$script" bench/report.lua >"$dir/$name.lua"
  local before after line rps
  before=$(cpu_ticks)
  line=$(env "$@" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$dir/$name.lua" "http://127.0.0.1:$PORT" | grep RESULT)
  after=$(cpu_ticks)
  rps=$(sed -E 's/.*rps=([0-9]+).*/\1/' <<<"$line")
  printf '%-12s %s server_cpu_us_per_req=%s\n' "$name" "$line" \
    "$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$rps" -v d="$DURATION" 'BEGIN{printf "%.1f", t / hz * 1e6 / (n * d)}')"
}
