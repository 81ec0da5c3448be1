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
# The chat page's test drives Debian's chromium (playwright-core downloads no browser here).
if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing Debian's chromium for the browser test"
  as_root=""
  [ "$(id -u)" = 0 ] || as_root="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $as_root apt-get install -y --no-install-recommends chromium >/dev/null ||
    { $as_root apt-get update >/dev/null && $as_root apt-get install -y --no-install-recommends chromium >/dev/null; }
fi
npx vitest run --project integration
