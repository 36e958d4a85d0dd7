#!/usr/bin/env bash
# The paper at CPU scale on CIFAR-10 (README, "The paper at CPU scale"): every profile of
# profiles/cifar10 in order, then INT8 quantization of each trained model, the MaxBS probe and
# one report.
#
#   scripts/paper-cifar10.sh              the comparison: HS, RepOpt-VGG, RepVGG, plain VGG
#   scripts/paper-cifar10.sh --grid       the comparison, then the other Table 4 cells
#
# Each step is skipped when its result is there (a finished run, a recorded `quantize`), and an
# interrupted run is resumed, so the script can be stopped and started again at any point.
# Needs the data at datasets/cifar10 (see the profiles' header) and a release build
# (cargo build --release). REPOPT_BIN, RUNS_DIR and REPORT_DIR override the defaults below.
set -euo pipefail

BIN=${REPOPT_BIN:-target/release/repopt-tui}
RUNS=${RUNS_DIR:-checkpoints}
REPORT=${REPORT_DIR:-reports/cifar10}
# The heap budget MaxBS is probed at (the paper's Table 2 uses a GPU's memory).
PROBE_MEMORY=${PROBE_MEMORY:-256MiB}

profiles=(cifar10-hs cifar10-repopt cifar10-repvgg cifar10-vgg)
if [[ "${1:-}" == "--grid" ]]; then
    profiles+=(cifar10-ones cifar10-hs-init cifar10-average cifar10-no-reinit cifar10-no-gradmult)
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--grid]" >&2
    exit 2
fi

[[ -x "$BIN" ]] || { echo "$BIN not found: build it with cargo build --release (or set REPOPT_BIN)" >&2; exit 1; }
[[ -d datasets/cifar10/train ]] || { echo "datasets/cifar10/train not found: see profiles/cifar10/cifar10-hs.ron for where to get CIFAR-10" >&2; exit 1; }

# The newest run directory of a profile (run ids are <profile>-<UTC stamp>), or nothing.
newest_run() {
    local dirs=("$RUNS/$1"-2*/)
    [[ -d "${dirs[0]}" ]] && printf '%s\n' "${dirs[@]%/}" | sort | tail -n 1
}

has_event() { grep -q "\"kind\":\"$2\"" "$1/events.jsonl" 2>/dev/null; }

for p in "${profiles[@]}"; do
    run=$(newest_run "$p" || true)
    if [[ -n "$run" ]] && has_event "$run" finished; then
        echo "== $p: finished ($run)"
    elif [[ -n "$run" ]]; then
        echo "== $p: resuming $run"
        "$BIN" --profile "profiles/cifar10/$p.ron" --runs-dir "$RUNS" --resume
    else
        echo "== $p: training"
        "$BIN" --profile "profiles/cifar10/$p.ron" --runs-dir "$RUNS"
    fi
    run=$(newest_run "$p")
    # HS trains the scales; its model is not a deploy model to quantize.
    if [[ "$p" != cifar10-hs ]] && ! has_event "$run" quantize; then
        echo "== $p: INT8 quantization"
        "$BIN" quantize --profile "profiles/cifar10/$p.ron" --weights "$run" \
            --keep-float none,first-and-linear,first-and-last
    fi
done

probe=$(newest_run probe-cifar10-repopt || true)
if [[ -z "$probe" ]] || ! has_event "$probe" probe; then
    echo "== MaxBS at $PROBE_MEMORY"
    "$BIN" probe --profile profiles/cifar10/cifar10-repopt.ron --runs-dir "$RUNS" \
        --memory-limit "$PROBE_MEMORY" --threads 1
    probe=$(newest_run probe-cifar10-repopt)
fi

runs=()
for p in "${profiles[@]}"; do runs+=("$(newest_run "$p")"); done
echo "== report in $REPORT"
"$BIN" report "${runs[@]}" "$probe" -o "$REPORT"
