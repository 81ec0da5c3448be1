#!/usr/bin/env bash
# The GPU path in one command, for the day a GPU is lent:
#
#   bash scripts/gpu-check.sh [--no-setup] [--out FILE] [--mode auto|gpu|cpu] [--model DIR] [--work DIR]
#
# From a fresh clone: the project's setup, then on a machine whose nvidia-smi lists a GPU, a CUDA
# build of torch in .venv when the installed one is the CPU build; then scripts/gpu-check.ts trains
# the default model with LoRA and with full fine-tuning on the whole sample store, kills one training
# mid-run and resumes it, exports, evaluates, gates, and writes gpu-check.json. Without a GPU it says
# so and runs the same check with tiny settings on the CPU. Exit 1 when any step failed (the file is
# written all the same).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
notes=()
# --no-setup: for a caller that has just run it (the test suite, which `npm test` set up).
args=()
setup=yes
for arg in "$@"; do
  if [ "$arg" = --no-setup ]; then setup=no; else args+=("$arg"); fi
done
[ "$setup" = no ] || npm run --silent setup

gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
fi
if [ "$gpus" -gt 0 ]; then
  echo "gpu-check: nvidia-smi lists $gpus GPU(s)"
  torch_cuda() { .venv/bin/python -c 'import torch; print(torch.version.cuda or "")'; }
  if [ -z "$(torch_cuda)" ]; then
    # engine/requirements.txt pins the CPU build (2.13.0), which pip takes from this workplace's disk;
    # on its x86_64 machines pip takes a CUDA build of 2.14.1 from the same disk.
    echo "gpu-check: .venv has a CPU build of torch; installing a CUDA build (torch==2.14.1)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.14.1 || true
    if [ -n "$(torch_cuda)" ]; then
      notes+=(--note "setup replaced the pinned CPU build of torch with torch==2.14.1, built for CUDA $(torch_cuda)")
    else
      echo "gpu-check: no CUDA build of torch could be installed on this machine (pip install torch==2.14.1); the check runs on the CPU" >&2
      notes+=(--note "no CUDA build of torch could be installed (pip install torch==2.14.1), so the check ran on the CPU")
    fi
  fi
else
  echo "gpu-check: no GPU (nvidia-smi lists none): running the CPU mode with tiny settings, which tests the check itself"
fi

setup_seconds=$(($(date +%s) - started))
exec npx tsx scripts/gpu-check.ts --setup-seconds "$setup_seconds" "${notes[@]}" "${args[@]}"
