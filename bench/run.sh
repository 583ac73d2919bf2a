#!/bin/sh
# Runner benchmark: builds batchd in release mode and runs bench/runner.rs against it.
# Figures go to stdout; see docs/BENCHMARKS.md ("Runner") for what they mean.
set -eu
cd "$(dirname "$0")/.."
exec cargo bench --bench runner "$@"
