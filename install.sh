#!/usr/bin/env bash
# Install policy-rag into ./.venv (Python 3.11). CPU torch by default; see README for GPU.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: the CPU wheel (an unpinned torch pulls a multi-GB CUDA build).
# Set TORCH_SPEC (e.g. "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128") for a GPU build.
# shellcheck disable=SC2086
.venv/bin/python -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
.venv/bin/python -m pip install -q -e ".[${RAG_EXTRAS:-dev,ray}]"
echo "installed: $(.venv/bin/rag --help >/dev/null && echo 'rag command ready in .venv/bin/rag')"
