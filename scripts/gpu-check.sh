#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, build the CUDA binary, check the RepOptimizer on
# the GPU, time training steps of B1 and A0 at 224x224 (batch 32) for the target, RepVGG and HS
# models, and probe the max batch size of RepOpt-VGG vs RepVGG. One command, a few minutes:
#
#   scripts/gpu-check.sh [cuda:N]
#
# Needs the NVIDIA driver (libcuda.so.1); no CUDA toolkit and no network (burn-cuda builds
# offline and loads the driver at run time). Prints the figures; probe events go to $RUNS.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${1:-cuda:0}"
RUNS="${RUNS:-/tmp/repopt-gpu-check}"
BIN=target/release/repopt-tui

echo "== GPU"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv 2>/dev/null || echo "(nvidia-smi not found)"

echo "== build (release, --features cuda)"
cargo build --release --features cuda

echo "== verify: CSLA (plain SGD) against RepOpt (RepOptimizer) on $DEVICE"
"$BIN" verify --device "$DEVICE" --steps 20
"$BIN" verify --device "$DEVICE" --optimizer adamw --steps 20
"$BIN" verify --device "$DEVICE" --scales profiles/scales/b1.ron --resolution 64 --batch 8 --steps 10

for V in B1 A0; do
  echo "== training steps: $V at 224x224, batch 32, 1000 classes, on $DEVICE"
  "$BIN" bench model --device "$DEVICE" --variant "$V" --res 224 --batch 32 --classes 1000 \
    --models target,repvgg,hs --steps 10 --warmup 3
done

for V in B1 A0; do
  echo "== max batch size: $V at 224x224 on $DEVICE"
  "$BIN" probe --profile profiles/b1.ron --variant "$V" --device "$DEVICE" --models target,repvgg,hs \
    --max-batch 2048 --steps 2 --runs-dir "$RUNS" --run-id "gpu-check-$V-$(date -u +%Y%m%d-%H%M%S)"
done
