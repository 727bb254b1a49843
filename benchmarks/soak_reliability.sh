#!/usr/bin/env bash
# Longer soak of the reliability tests than CI runs: many SIGKILLs of a writer and many
# fuzzed API calls. Usage: bash benchmarks/soak_reliability.sh [kills] [fuzz_examples]
set -euo pipefail
cd "$(dirname "$0")/.."
BIGALIGN_SOAK_KILLS="${1:-200}" BIGALIGN_FUZZ_EXAMPLES="${2:-5000}" \
  .venv/bin/python -m pytest -q tests/test_writer_crash.py tests/test_fuzz.py tests/test_faults.py
