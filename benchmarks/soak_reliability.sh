#!/usr/bin/env bash
# Longer soak of the reliability tests than CI runs: many SIGKILLs of a writer (with each
# durability level) and many fuzzed API calls. The slow tests are selected explicitly (the
# default pytest options deselect them).
#
# Usage: bash benchmarks/soak_reliability.sh [kills per durability level] [fuzz_examples]
# Environment: PYTHON (default .venv/bin/python), BIGALIGN_SOAK_SEED (random schedule),
# SOAK_OUT (default benchmarks/results/soak_reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
KILLS="${1:-200}"
FUZZ="${2:-5000}"
OUT="${SOAK_OUT:-benchmarks/results/soak_reliability.md}"
LOG="$(mktemp)"
start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(date +%s)
set +e
BIGALIGN_SOAK_KILLS="$KILLS" BIGALIGN_FUZZ_EXAMPLES="$FUZZ" \
  /usr/bin/time -f "cpu_s=%U+%S wall_s=%e" -o "$LOG.time" \
  "$PY" -m pytest -q -s -p no:cacheprovider -m "slow or not slow" \
  tests/test_writer_crash.py tests/test_fuzz.py tests/test_faults.py 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
{
  echo "# Reliability soak"
  echo
  echo "\`bash benchmarks/soak_reliability.sh $KILLS $FUZZ\` — started $start, $(( $(date +%s) - t0 )) s wall;"
  echo "$(cat "$LOG.time"); load average $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end ($(nproc) CPUs)."
  echo
  echo "SIGKILL soak: $KILLS kills of a writer child per durability level (random moments: start-up and"
  echo "recovery, after an acknowledgement, mid-append, inside flush()); after every kill the store must"
  echo "open with every acknowledged batch, bit for bit, nothing half-written, and resume. Fuzz: $FUZZ"
  echo "hypothesis examples per fuzzed API call. Exit status $rc."
  echo
  echo '```text'
  grep -E "crash soak|passed|failed|error" "$LOG" | grep -v "^tests/" | tail -n 20
  echo '```'
} > "$OUT"
rm -f "$LOG" "$LOG.time"
cat "$OUT"
exit "$rc"
