#!/bin/sh
# Runner benchmark: builds batchd in release mode and runs bench/runner.rs against it.
# Figures go to stdout; see docs/BENCHMARKS.md ("Runner") for what they mean. For the drain
# phase alone against a built binary, without compiling anything: bench/drain.py.
set -eu
cd "$(dirname "$0")/.."
exec cargo bench --bench runner "$@"
