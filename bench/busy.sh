#!/usr/bin/env bash
# The README's test command, run RUNS times in a row on a fresh clone while
# one process spins on every core, as on a working laptop (issue 21: a test
# suite that fails on a busy machine is a broken one).
#
#   bash bench/busy.sh [RUNS] [REPO]      (defaults: 5, this checkout's repository)
#
# It clones REPO's HEAD into a temporary folder with no shared/ beside it,
# installs as the README's test command says (no torch: its tests skip), starts the spinners, and runs `python -m pytest`
# RUNS times, stopping at the first failure. Prints one line per run and the
# load average; exits 1 if any run failed.
set -euo pipefail
runs=${1:-5}
repo=${2:-$(cd "$(dirname "$0")/.." && pwd)}
work=$(mktemp -d)
spinners=()
cleanup() {
    for pid in "${spinners[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

git clone -q "$repo" "$work/rnnpipe"
cd "$work/rnnpipe"
echo "commit $(git rev-parse --short HEAD), $(nproc) cores"
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q '.[test]'

for _ in $(seq "$(nproc)"); do
    python3 -c 'while True: pass' &
    spinners+=($!)
done

failed=0
for run in $(seq "$runs"); do
    start=$SECONDS
    if python -m pytest -q -p no:cacheprovider > "$work/run$run.log" 2>&1; then
        verdict=passed
    else
        verdict=FAILED
        failed=1
    fi
    echo "run $run: $verdict in $((SECONDS - start)) s ($(tail -n 1 "$work/run$run.log" | tr -d '=')); load $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ "$failed" = 1 ]; then
        grep -E '^(FAILED|ERROR)' "$work/run$run.log" || tail -n 40 "$work/run$run.log"
        break
    fi
done
exit "$failed"
