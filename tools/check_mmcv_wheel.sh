#!/usr/bin/env bash
# Inspect a built onedl-mmcv wheel without installing it and without a GPU: its size, whether its
# _ext library carries CUDA fat binaries (and for which archs), and that mmcv.ops imports from it
# and runs an op on CPU tensors with this venv's torch.
#   bash tools/check_mmcv_wheel.sh [WHEEL]   (default: the cached CUDA wheel of tools/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WHEELS=${CELLFUSE_WHEELS:-$HOME/.cache/cellfuse/wheels}
W=${1:-$(ls "$WHEELS"/cuda*/onedl_mmcv-*.whl 2>/dev/null | head -n1 || true)}
[ -f "$W" ] || { echo "error: no wheel ${W:+at $W }(build one: CELLFUSE_MMCV_CUDA=1 bash tools/setup.sh --mmcv-wheel)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m zipfile -e "$W" "$tmp"
so=$(ls "$tmp"/mmcv/_ext*.so)
echo "wheel: $W ($(du -m "$W" | cut -f1) MB); _ext: $(du -m "$so" | cut -f1) MB"
readelf -SW "$so" | grep -oE "\.nv_fatbin|\.nvFatBinSegment" | sed 's/^/section: /' || echo "section: no CUDA fat binary"
cuobjdump=$(command -v cuobjdump || ls "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"/triton/backends/nvidia/bin/cuobjdump 2>/dev/null || true)
if [ -n "$cuobjdump" ] && readelf -SW "$so" | grep -q nv_fatbin; then
  "$cuobjdump" --list-elf "$so" | grep -oE "sm_[0-9]+" | sort | uniq -c | sed 's/^ */kernels: /'
fi
PYTHONPATH="$tmp${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$so" <<'PY'
import sys
from pathlib import Path

import torch

import mmcv
from cellfuse.nn.preflight import has_cuda_kernels
from mmcv.ops import nms

assert Path(mmcv.__file__).is_relative_to(Path(sys.argv[1]).parents[1]), mmcv.__file__
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
_, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
print(f"has_cuda_kernels: {has_cuda_kernels(Path(sys.argv[1]))}")
print(f"mmcv.ops from the wheel: nms on CPU tensors keeps {keep.tolist()} (expected [0, 2])")
print(f"torch {torch.__version__}, CUDA GPU visible: {torch.cuda.is_available()}")
PY
