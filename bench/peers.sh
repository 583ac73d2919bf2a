#!/usr/bin/env bash
# batchd beside graphile-worker and pg-boss on the same PostgreSQL, same protocol, same run
# (bench/peers/peers.mjs): TASKS no-op jobs enqueued in batches of 1,000 with no worker, ANALYZE,
# one worker started, jobs/s until all are completed; then SAMPLES jobs enqueued one at a time
# with 5-25 ms gaps, enqueue-to-start p50/p99. Each system gets a fresh database, dropped after.
# Then the two-node case (bench/nodes.sh): created on an API-only node, run on another.
# The peers come from npm at the versions of bench/peers/package-lock.json (`npm ci`, once).
# Loopback only; every phase is bounded (10 min). Usage:
#   bench/peers.sh                                  # TASKS=20000 SAMPLES=500, builds release
#   TASKS=2000 SAMPLES=100 bench/peers.sh           # a quick smoke run
#   SYSTEMS="batchd graphile" BATCHD_BIN=/tmp/batchd-a bench/peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${TASKS:-20000}
SAMPLES=${SAMPLES:-500}
SYSTEMS=${SYSTEMS:-batchd graphile pgboss}
NODES=${NODES:-1}
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
. bench/lib.sh
bin=$(bench_binary)
[ -d bench/peers/node_modules ] || (cd bench/peers && npm ci --no-audit --no-fund --loglevel=error)
out=$(mktemp)
dbs=()
cleanup() {
  for db in "${dbs[@]}"; do PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true; done
  rm -f "$out" /tmp/batchd-peers-*.toml
}
trap cleanup EXIT
echo "peers benchmark: $TASKS jobs, $SAMPLES latency samples; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); PostgreSQL $(psql "$PG" -tAc 'SHOW server_version'); node $(node --version)"
for system in $SYSTEMS; do
  db="batchd_bench_peers_${system}_$$"
  dbs+=("$db")
  psql "$PG" -qc "CREATE DATABASE $db" >/dev/null
  timeout 1800 node bench/peers/peers.mjs "$system" "${PG%/*}/$db" "$TASKS" "$SAMPLES" "$bin" | tee -a "$out"
  psql "$PG" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"\n{'system':<24} {'drain jobs/s':>12} {'drain s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
for r in rows:
    name = r["system"] + (" " + r["version"] if "version" in r else "")
    print(f"{name:<24} {r['drain_per_s']:>12} {r['drain_s']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8}")
by = {r["system"]: r for r in rows}
if "batchd" in by:
    b = by["batchd"]
    print(f"batchd drain, first start to last finish (stored times): {b['first_start_to_last_finish_per_s']} tasks/s")
    if "graphile" in by:
        print(f"batchd / graphile-worker drain: {b['drain_per_s'] / by['graphile']['drain_per_s']:.2f} (target >= 1.2)")
for r in rows:
    print(f"settings {r['system']}: {json.dumps(r['settings'])}")
PY
if [ "$NODES" = 1 ]; then SAMPLES=$SAMPLES STOPS=0 PG=$PG BATCHD_BIN=$bin bench/nodes.sh | tail -n +2; fi
