#!/usr/bin/env bash
# The GPU checks issue 20 still needs, as one call on a lent H100 (~8 of the 15 device minutes; session 35 left them):
#   1. the LoRA test that fails on the GPU only (tests/test_lora.py, fresh adapters bitwise equal), with its traceback;
#   2. the 17-frame 2B train step, JAX (blocks unrolled on the GPU since session 35) beside torch.compile and eager,
#      one machine, one call (docs/benchmarks.md compares them across machines so far).
# From the repository root, with the wheels the device's image lacks in .whl/ (diffusers 0.42.1, ml_collections
# 1.1.0, importlib_metadata; the download line is in the device tool's README):
#   run(command="bash scripts/gpu_session.sh", carry=[".whl"], timeout_s=600)
# Rows land in $OUT/train17.jsonl (scripts/gpu_bench.py's format); each step is capped so the call ends in time.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
out="${OUT:-/tmp/gpu_session}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader

JAX_PLATFORMS=cuda XLA_FLAGS= timeout 70 python3 -m pytest -q --tb=short -p no:cacheprovider tests/test_lora.py \
  -k fresh_adapters 2>&1 | tail -40

XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 timeout 100 python3 scripts/gpu_bench.py jax --rows train17 --out "$out/train17.jsonl"
JAX_PLATFORMS=cpu timeout 60 python3 scripts/gpu_bench.py torch --rows train17 --out "$out/train17.jsonl"
JAX_PLATFORMS=cpu timeout 330 python3 scripts/gpu_bench.py torch-compile --rows train17 --out "$out/train17.jsonl"
