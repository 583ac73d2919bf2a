#!/usr/bin/env bash
# The fault suite, full version: every case in tests/api/faults.rs, one at a time, including a
# real restart of the machine's PostgreSQL under load. Loopback only; each case is bounded in
# time (a few seconds to 40 s) and in count. Needs root (a tmpfs for the full-volume case) and a
# PostgreSQL it may restart (BATCHD_TEST_PG, default the local one).
#
#   faults/run.sh            # every case once
#   ROUNDS=5 faults/run.sh   # every case five times
#
# `cargo test` runs the quick version (everything but the restart) as part of the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export BATCHD_TEST_PG="${BATCHD_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
export BATCHD_REQUIRE_PG=1 BATCHD_REQUIRE_FAULTS=1 BATCHD_FAULTS_FULL=1
rounds="${ROUNDS:-1}"
cargo test --test api --no-run
for round in $(seq 1 "$rounds"); do
  echo "== fault suite, round $round of $rounds"
  cargo test --test api -- faults:: process:: runner_process:: --test-threads=1 --nocapture 2>&1 \
    | grep -E '^test |test result|PostgreSQL restart|full volume|terminated connections|panicked|SKIPPED'
done
