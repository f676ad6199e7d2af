#!/usr/bin/env bash
# One idempotent setup step: .venv with torch, the mmcv/mmdet stack (mmcv built from source once,
# cached as a wheel), segment-anything, ray, onnxruntime and cellfuse in editable mode.
# Re-running it is cheap: every phase is skipped when its stamp is newer than its inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=$ROOT/.venv
WHEELS=${CELLFUSE_WHEELS:-$HOME/.cache/cellfuse/wheels}
MMCV_VERSION=2.3.6
STAMP=$VENV/.cellfuse-setup
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt tools/setup.sh ]; then
  log "environment up to date ($VENV)"; exit 0
fi

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
PIP="$VENV/bin/python -m pip"
log "installing torch 2.14.1, torchvision 0.29.1 and build tools"
$PIP install -q "pip>=24" "setuptools>=77" wheel ninja "numpy<2.4" \
  torch==2.14.1 torchvision==0.29.1

mkdir -p "$WHEELS"
wheel=$(ls "$WHEELS"/onedl_mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  log "building onedl-mmcv $MMCV_VERSION with ops (once; 25-60 min on 2 cores), cached in $WHEELS"
  tmp=$(mktemp -d)
  mkdir -p "$tmp/bin"
  # torch>=2.10 headers need C++20 but mmcv's setup.py hard-codes -std=c++17.
  for pair in "cc gcc" "c++ g++"; do
    set -- $pair
    cat > "$tmp/bin/$1" <<WRAP
#!/usr/bin/env bash
args=()
for a in "\$@"; do case "\$a" in -std=c++14|-std=c++17) args+=(-std=c++20);; *) args+=("\$a");; esac; done
exec $2 "\${args[@]}"
WRAP
    chmod +x "$tmp/bin/$1"
  done
  $PIP download -q --no-deps --no-binary :all: "onedl-mmcv==$MMCV_VERSION" -d "$tmp/src"
  CC="$tmp/bin/cc" CXX="$tmp/bin/c++" MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} FORCE_CUDA=0 \
    $PIP wheel --no-build-isolation --no-deps "$tmp"/src/onedl*mmcv-*.tar.gz -w "$tmp/wheel"
  mv "$tmp"/wheel/onedl_mmcv-*.whl "$WHEELS"/
  rm -rf "$tmp"
  wheel=$(ls "$WHEELS"/onedl_mmcv-$MMCV_VERSION-*.whl | head -n1)
fi
log "installing mmcv ($wheel), mmengine, mmdetection and cellfuse[ml,dev]"
$PIP install -q "$wheel" "onedl-mmdetection==3.5.1" -e ".[ml,dev]"
"$VENV/bin/python" -c "import mmcv.ops, mmdet, mmengine, segment_anything, ray, onnxruntime, cellfuse; print('mmcv', mmcv.__version__, 'mmdet', mmdet.__version__)"
touch "$STAMP"
log "done"
