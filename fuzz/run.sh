#!/bin/sh
# Runs every fuzz target for a bounded time each: `fuzz/run.sh [seconds] [target...]`
# (default 60 seconds, every target). New inputs go to fuzz/corpus/<target>, crashes to
# fuzz/artifacts/<target>; the seeds in fuzz/seeds/<target> are read, never written.
#
# libFuzzer with AddressSanitizer needs a nightly toolchain (FUZZ_TOOLCHAIN, default nightly).
# Without one: FUZZ_TOOLCHAIN=stable FUZZ_SANITIZER=none. `fuzz/run.sh 0` only replays the
# seeds and the corpus once, a quick check that every target builds and passes them.
set -eu
cd "$(dirname "$0")"
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-$(cargo fuzz list)}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
sanitizer=${FUZZ_SANITIZER:-address}
status=0
for t in $targets; do
    mkdir -p "corpus/$t"
    if [ "$seconds" = 0 ]; then limit="-runs=0"; else limit="-max_total_time=$seconds"; fi
    echo "== $t ($limit)"
    if ! cargo "+$toolchain" fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- "$limit" -max_len=65536; then
        echo "!! $t failed: see fuzz/artifacts/$t" >&2
        status=1
    fi
done
exit $status
