#!/usr/bin/env bash
# kdjax on a GPU (or TPU) against PyTorch on the same ImageNet DKD step, in one run of under 8 minutes.
#
#   benchmarks/accelerator.sh [--smoke] [extra benchmarks/accelerator.py flags, e.g. --batches=256 --steps=30]
#
# What it runs (benchmarks/accelerator.py has the details), each measurement in its own process:
#   (a) kdjax's configs/dkd.py:imagenet train step, ResNet34 -> ResNet18, 224x224, synthetic batch on the device,
#       float32 and bfloat16, batch 256 and 128: img/s, XLA FLOPs, MFU against the chip's published peak
#   (c) benchmarks/torch_reference.py --model=imagenet: the same step in PyTorch, channels-last, float32 and AMP
#   (b) (a) again with config.kernels=cpu_tuned forced (the CPU-tuned BatchNorm and conv VJP), to confirm that
#       'auto' picks the faster set on this backend
# One JSON line per measurement (also appended to $OUT, default benchmarks/results/accelerator-<time>.jsonl), then
# a ratio table. No run starts after BUDGET_S seconds (default 400) and the last one is stopped 40 s later, so the
# whole script stays under 8 minutes.
#
# It installs nothing. On the GPU machine, once (CUDA 12 wheels; torch's own CUDA runtime comes with it):
#   pip install "jax[cuda12]==0.10.2" torch==2.13.0
#
# --smoke: on the CPU, tiny sizes (the default config's small CNNs, batch 8, 2 steps; torch's part is skipped
# when torch is not installed). Tests run it (tests/e2e/test_accelerator_smoke.py).
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=0
ARGS=()
for a in "$@"; do
  if [[ $a == --smoke ]]; then SMOKE=1; else ARGS+=("$a"); fi
done
BUDGET_S=${BUDGET_S:-400}
mkdir -p benchmarks/results
OUT=${OUT:-benchmarks/results/accelerator-$( ((SMOKE)) && echo smoke- )$(date +%Y%m%d-%H%M%S).jsonl}

if ((SMOKE)); then
  export JAX_PLATFORMS=cpu
  BACKEND=cpu
else
  # which accelerator jax sees (without grabbing its memory: this process only asks)
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  fi
  probe=$(XLA_PYTHON_CLIENT_PREALLOCATE=false python -c 'import jax; d = jax.devices()[0]; print(jax.default_backend(), "|", d.device_kind, "|", jax.device_count())' 2>/dev/null) || {
    echo "accelerator.sh: jax does not start here; install it (see this script's header)" >&2; exit 2; }
  BACKEND=${probe%% *}
  echo "jax backend: $probe"
  if [[ $BACKEND == cpu ]]; then
    echo "accelerator.sh: jax sees no GPU/TPU (backend cpu). Install jax[cuda12] (see the header), or run with --smoke" >&2
    exit 2
  fi
fi
TORCH=()
if ! python -c 'import torch' >/dev/null 2>&1; then
  echo "torch is not installed: skipping the PyTorch measurements" >&2
  TORCH=(--no_torch)
elif ((!SMOKE)) && [[ $BACKEND == gpu ]] && ! python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "torch sees no CUDA device: skipping the PyTorch measurements (install a CUDA build of torch)" >&2
  TORCH=(--no_torch)
elif [[ $BACKEND == tpu ]]; then
  TORCH=(--no_torch)  # the PyTorch twin is written for CUDA
fi
echo "writing $OUT"
smoke_flag=()
((SMOKE)) && smoke_flag=(--smoke)
python benchmarks/accelerator.py "${smoke_flag[@]}" --backend="$BACKEND" --budget_s="$BUDGET_S" --out="$OUT" \
  "${TORCH[@]}" "${ARGS[@]}"
