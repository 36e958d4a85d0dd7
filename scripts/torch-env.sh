# Source this file before building or testing the LibTorch engine (cargo feature `tch`):
#
#     source scripts/torch-env.sh && cargo build --release --features tch
#
# It installs torch 2.9.0 (the version tch 0.22 / burn 0.21 bind to) from PyPI into a virtual
# environment outside the repository, reuses it when present, and exports what the build needs:
# torch-sys and burn-tch ask that environment's `python` where libtorch is (LIBTORCH_USE_PYTORCH=1)
# instead of downloading anything. The binary finds libtorch at run time by the rpath build.rs
# writes, so nothing needs to be set to run it. The wheel is PyTorch's CUDA build (about 6.7 GB
# installed with its nvidia-* libraries): the same install serves `libtorch:cpu` and
# `libtorch:cuda:N`; pip keeps no second copy of the wheels in its cache. REPOPT_TORCH_VENV picks
# another folder.

REPOPT_TORCH_VERSION=2.9.0
REPOPT_TORCH_VENV="${REPOPT_TORCH_VENV:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/repopt-tui/torch-$REPOPT_TORCH_VERSION}"

_repopt_torch_ok() {
    "$REPOPT_TORCH_VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$REPOPT_TORCH_VERSION')" 2>/dev/null
}

if ! _repopt_torch_ok; then
    echo "torch-env: installing torch==$REPOPT_TORCH_VERSION into $REPOPT_TORCH_VENV (about 6.7 GB, a few minutes)" >&2
    python3 -m venv "$REPOPT_TORCH_VENV" \
        && "$REPOPT_TORCH_VENV/bin/pip" install --quiet --progress-bar off --no-cache-dir "torch==$REPOPT_TORCH_VERSION" numpy \
        || { echo "torch-env: could not install torch $REPOPT_TORCH_VERSION (needs python3 with venv and access to PyPI)" >&2; return 1 2>/dev/null || exit 1; }
    _repopt_torch_ok || { echo "torch-env: $REPOPT_TORCH_VENV has no working torch $REPOPT_TORCH_VERSION" >&2; return 1 2>/dev/null || exit 1; }
fi

export VIRTUAL_ENV="$REPOPT_TORCH_VENV"
export PATH="$REPOPT_TORCH_VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
unset -f _repopt_torch_ok
