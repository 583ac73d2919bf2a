#!/usr/bin/env bash
# Identity benchmark: GET /api/v1/BatchTask/{id} throughput with Basic, SOTicket and Bearer
# credentials against one server, in interleaved rounds so drift hits all three alike.
#
#   cargo build --release && bench/identity.sh            # defaults: 3 rounds x 10 s, 16 connections
#   ROUNDS=5 DURATION=15 CONNECTIONS=32 bench/identity.sh
#
# Loopback only; bounded in time. Needs wrk, curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BATCHD_BIN:-${CARGO_TARGET_DIR:-target}/release/batchd}
PORT=${PORT:-18480}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}
BASE="http://127.0.0.1:$PORT"

dir=$(mktemp -d)
export BATCHD_DATABASE="sqlite:$dir/bench.db" BATCHD_ADMIN_USER=admin BATCHD_ADMIN_PASSWORD=bench-password
unset BATCHD_CONFIG
BATCHD_LOG=warn BATCHD_LISTEN="127.0.0.1:$PORT" "$BIN" serve 2>"$dir/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do curl -fs "$BASE/api" >/dev/null && break; sleep 0.1; done

basic="Basic $(printf 'admin:bench-password' | base64)"
id=$(curl -fs -H "Authorization: $basic" -H 'Content-Type: application/json' \
  -d '{"Name":"bench","Description":"identity benchmark"}' "$BASE/api/v1/BatchTask")
ticket=$(curl -fs -X POST -H "Authorization: $basic" "$BASE/api/v1/Ticket" | jq -r .Ticket)
token=$("$BIN" token create --associate admin --scope read --name bench 2>/dev/null)
export BATCHD_PATH="/api/v1/BatchTask/$id"

declare -A auth=([basic]="$basic" [soticket]="SOTicket $ticket" [bearer]="Bearer $token")
declare -A results
kinds=(basic soticket bearer)
for k in "${kinds[@]}"; do   # warm-up: fills the credential cache, checks the credential works
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: ${auth[$k]}" "$BASE$BATCHD_PATH")
  [ "$code" = 200 ] || { echo "$k: GET answered $code" >&2; exit 1; }
done
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)  cores: $(nproc)"
for r in $(seq 1 "$ROUNDS"); do
  for k in "${kinds[@]}"; do
    out=$(BATCHD_AUTH="${auth[$k]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s bench/auth-get.lua "$BASE")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    lat=$(awk '$1=="Latency" {print $2}' <<<"$out")
    results[$k]+="$rps "
    printf 'round %d  %-9s %10s req/s  (mean latency %s)\n' "$r" "$k" "$rps" "$lat"
  done
done
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
b=$(median <<<"${results[basic]}")
for k in "${kinds[@]}"; do
  m=$(median <<<"${results[$k]}")
  printf '%-9s median %10s req/s  = %5.1f%% of Basic\n' "$k" "$m" "$(awk -v m="$m" -v b="$b" 'BEGIN {print 100*m/b}')"
done
