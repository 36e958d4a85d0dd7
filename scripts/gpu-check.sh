#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, build one binary with both GPU engines (burn-cuda
# and LibTorch/cuDNN), check the RepOptimizer on each, time B1 training steps at 224x224 (batch 32
# and 64) for the target, RepVGG and HS models beside PyTorch on the same GPU in the same
# invocation (images/s and ratio), and probe the max batch size at the device's memory.
#
#   scripts/gpu-check.sh [N]        # GPU index, default 0
#
# Needs the NVIDIA driver, python3 and PyPI (torch 2.9.0 is installed into a cache folder by
# scripts/torch-env.sh; it is also the PyTorch peer). No CUDA toolkit. Figures go to stdout;
# probe events to $RUNS.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU="${1:-0}"
RUNS="${RUNS:-/tmp/repopt-gpu-check}"
BIN=target/release/repopt-tui
ENGINES=("cuda:$GPU" "libtorch:cuda:$GPU")

echo "== GPU"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv 2>/dev/null || echo "(nvidia-smi not found)"

echo "== build (release, --features cuda,tch)"
# shellcheck source=scripts/torch-env.sh
source scripts/torch-env.sh
cargo build --release --features cuda,tch
PYTHON="$REPOPT_TORCH_VENV/bin/python"

for D in "${ENGINES[@]}"; do
  echo "== verify: CSLA (plain SGD) against RepOpt (RepOptimizer) on $D"
  "$BIN" verify --device "$D" --steps 20
  "$BIN" verify --device "$D" --optimizer adamw --steps 20
done

for BS in 32 64; do
  for D in "${ENGINES[@]}"; do
    echo "== training steps: B1 at 224x224, batch $BS, 1000 classes, on $D, PyTorch on cuda:$GPU in the same run"
    "$BIN" bench model --device "$D" --variant B1 --res 224 --batch "$BS" --classes 1000 \
      --models target,repvgg,hs --steps 10 --warmup 3 --torch "$PYTHON"
  done
done

for D in "${ENGINES[@]}"; do
  echo "== max batch size: B1 at 224x224 on $D"
  "$BIN" probe --profile profiles/b1.ron --variant B1 --device "$D" --models target,repvgg,hs \
    --max-batch 4096 --steps 2 --runs-dir "$RUNS" \
    --run-id "gpu-check-${D//:/-}-$(date -u +%Y%m%d-%H%M%S)"
done
