#!/usr/bin/env bash
# The whole test suite, fastest tier first: type check, unit tests, engine tests, integration tests
# against real Temporal dev servers. Run through `npm test`, which runs setup first.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== type check"
npx tsc --noEmit
echo "== unit tests"
npx vitest run --project unit
echo "== engine tests"
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q engine/tests
echo "== integration tests"
npx vitest run --project integration
