#!/usr/bin/env bash
# One idempotent setup step: .venv with torch, the mmcv/mmdet stack (mmcv built from source once,
# cached as a wheel), segment-anything, ray, onnxruntime and cellfuse in editable mode.
# Re-running it is cheap: every phase is skipped when its stamp is newer than its inputs.
#
# mmcv's ops are built for the machine: with CUDA kernels when torch is a CUDA build, `nvcc`
# is found and a GPU is visible (or CELLFUSE_MMCV_CUDA=1 forces it, e.g. to build a GPU
# wheel on a machine without one); CPU-only otherwise (CELLFUSE_MMCV_CUDA=0 forces that).
# Both wheels are cached side by side: the CPU one in $WHEELS, a CUDA one in
# $WHEELS/cuda<version>-sm<archs>/. The log says which one was installed.
#
#   bash tools/setup.sh                  the environment (.venv)
#   bash tools/setup.sh --mmcv-wheel     only build (or find) the mmcv wheel this machine
#                                        needs, with $CELLFUSE_VENV's torch; install nothing
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=${CELLFUSE_VENV:-$ROOT/.venv}
WHEELS=${CELLFUSE_WHEELS:-$HOME/.cache/cellfuse/wheels}
MMCV_VERSION=2.3.6
# A100 (8.0) and H100/H200 (9.0) when no GPU is visible to ask
DEFAULT_CUDA_ARCHS="8.0;9.0"
STAMP=$VENV/.cellfuse-setup
WHEEL_ONLY=0
[ "${1:-}" = "--mmcv-wheel" ] && WHEEL_ONLY=1
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# cpu | cuda: which mmcv this machine needs (see the header)
mmcv_variant() {
  local want=${CELLFUSE_MMCV_CUDA:-auto} torch_cuda gpu
  [ "$want" = "0" ] && { echo cpu; return; }
  torch_cuda=$("$VENV/bin/python" -c 'import torch; print(torch.version.cuda or "")')
  if [ -z "$torch_cuda" ] || ! command -v "${NVCC:-nvcc}" >/dev/null; then
    [ "$want" = "1" ] && { log "CELLFUSE_MMCV_CUDA=1 needs a CUDA build of torch and nvcc" >&2; exit 1; }
    echo cpu; return
  fi
  [ "$want" = "1" ] && { echo cuda; return; }
  gpu=$("$VENV/bin/python" -c 'import torch; print(int(torch.cuda.is_available()))')
  [ "$gpu" = "1" ] && echo cuda || echo cpu
}

# TORCH_CUDA_ARCH_LIST: as given, else the visible GPUs' compute capabilities, else the default
cuda_archs() {
  [ -n "${TORCH_CUDA_ARCH_LIST:-}" ] && { echo "$TORCH_CUDA_ARCH_LIST"; return; }
  local found
  found=$("$VENV/bin/python" -c '
import torch
caps = sorted({"%d.%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}) if torch.cuda.is_available() else []
print(";".join(caps))')
  echo "${found:-$DEFAULT_CUDA_ARCHS}"
}

# Compiler wrappers in $1/bin: torch>=2.10 headers need C++20 but mmcv's setup.py hard-codes
# -std=c++17 (for cc/c++, and for nvcc, whose host side then misses char8_t).
write_wrappers() {
  local dir=$1 pair
  mkdir -p "$dir/bin"
  for pair in "cc gcc" "c++ g++"; do
    set -- $pair
    cat > "$dir/bin/$1" <<WRAP
#!/usr/bin/env bash
args=()
for a in "\$@"; do case "\$a" in -std=c++14|-std=c++17) args+=(-std=c++20);; *) args+=("\$a");; esac; done
exec $2 "\${args[@]}"
WRAP
    chmod +x "$dir/bin/$1"
  done
}

# A CUDA_HOME in $1 whose bin/nvcc rewrites -std=c++17 to c++20 and whose other entries
# link to the real toolkit (mmcv's build finds nvcc as $CUDA_HOME/bin/nvcc).
write_cuda_home() {
  local home=$1 nvcc real entry
  nvcc=$(command -v "${NVCC:-nvcc}")
  # the toolkit nvcc itself runs from (its TOP): `nvcc` on PATH may be a symlink or a shell
  # shim (`exec /usr/local/cuda-13.0/bin/nvcc "$@"` in /usr/local/bin), so no readlink
  real=${CUDA_HOME:-$(cd /tmp && "$nvcc" --dryrun -c /dev/null -x cu -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -n1)}
  real=$(readlink -f "${real:-$(dirname "$(dirname "$(readlink -f "$nvcc")")")}")
  if [ ! -f "$real/include/cuda_runtime_api.h" ]; then
    log "error: no CUDA toolkit headers in $real/include (from $nvcc); set CUDA_HOME to the toolkit" >&2
    exit 1
  fi
  mkdir -p "$home/bin"
  for entry in "$real"/*; do [ "$(basename "$entry")" = bin ] || ln -s "$entry" "$home/"; done
  for entry in "$real"/bin/*; do [ "$(basename "$entry")" = nvcc ] || ln -s "$entry" "$home/bin/"; done
  cat > "$home/bin/nvcc" <<WRAP
#!/usr/bin/env bash
args=()
for a in "\$@"; do case "\$a" in -std=c++14|-std=c++17) args+=(-std=c++20);; *) args+=("\$a");; esac; done
exec $real/bin/nvcc "\${args[@]}"
WRAP
  chmod +x "$home/bin/nvcc"
}

# Build (once) and print the path of the mmcv wheel for variant $1 (cpu|cuda).
mmcv_wheel() {
  local variant=$1 dir archs cuda_version wheel tmp t0 inc
  dir=$WHEELS
  if [ "$variant" = cuda ]; then
    archs=$(cuda_archs)
    cuda_version=$("$VENV/bin/python" -c 'import torch; print(torch.version.cuda)')
    dir=$WHEELS/cuda$cuda_version-sm$(echo "$archs" | tr -d '.' | tr ';' '-')
  fi
  mkdir -p "$dir"
  wheel=$(ls "$dir"/onedl_mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
  if [ -n "$wheel" ]; then echo "$wheel"; return; fi
  tmp=$(mktemp -d)
  write_wrappers "$tmp"
  local env=(CC="$tmp/bin/cc" CXX="$tmp/bin/c++" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}")
  if [ "$variant" = cuda ]; then
    # this torch's CUDA headers (cusparse.h, ...) live in the venv, not in the toolkit
    inc=$(ls -d "$VENV"/lib/python3*/site-packages/nvidia/cu*/include 2>/dev/null | head -n1 || true)
    write_cuda_home "$tmp/cuda"
    env+=(FORCE_CUDA=1 CUDA_HOME="$tmp/cuda" TORCH_CUDA_ARCH_LIST="$archs")
    [ -n "$inc" ] && env+=(CPATH="$inc${CPATH:+:$CPATH}" NVCC_APPEND_FLAGS="-I$inc ${NVCC_APPEND_FLAGS:-}")
    log "building onedl-mmcv $MMCV_VERSION with CUDA $cuda_version ops for sm $archs (once; 54 min measured on 2 quiet cores for sm 8.0;9.0, fewer archs build faster), cached in $dir" >&2
  else
    env+=(FORCE_CUDA=0)
    log "building onedl-mmcv $MMCV_VERSION with CPU ops (once; 25-60 min on 2 cores), cached in $dir" >&2
  fi
  t0=$(date +%s)
  "$VENV/bin/python" -m pip download -q --no-deps --no-binary :all: "onedl-mmcv==$MMCV_VERSION" -d "$tmp/src" >&2 || exit 1
  # set -e does not reach inside $(mmcv_wheel): every failure here exits by hand, with one line
  if ! env "${env[@]}" "$VENV/bin/python" -m pip wheel --no-build-isolation --no-deps \
    "$tmp"/src/onedl*mmcv-*.tar.gz -w "$tmp/wheel" >&2; then
    log "error: building the $variant mmcv wheel failed after $(( ($(date +%s) - t0) / 60 )) min (the compiler's first error is above; sources kept in $tmp)" >&2
    exit 1
  fi
  mv "$tmp"/wheel/onedl_mmcv-*.whl "$dir"/ || exit 1
  rm -rf "$tmp"
  log "built the $variant mmcv wheel in $(( ($(date +%s) - t0) / 60 )) min" >&2
  ls "$dir"/onedl_mmcv-$MMCV_VERSION-*.whl | head -n1
}

if [ "$WHEEL_ONLY" = 1 ]; then
  variant=$(mmcv_variant)
  wheel=$(mmcv_wheel "$variant")
  log "mmcv wheel ($variant ops): $wheel"
  exit 0
fi

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt tools/setup.sh ]; then
  log "environment up to date ($VENV: $(cat "$STAMP"))"; exit 0
fi

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
PIP="$VENV/bin/python -m pip"
log "installing torch 2.14.1, torchvision 0.29.1 and build tools"
$PIP install -q "pip>=24" "setuptools>=77" wheel ninja "numpy<2.4" \
  torch==2.14.1 torchvision==0.29.1

variant=$(mmcv_variant)
wheel=$(mmcv_wheel "$variant")
log "installing mmcv with $variant ops ($wheel), mmengine, mmdetection and cellfuse[ml,dev]"
$PIP install -q --force-reinstall --no-deps "$wheel"
$PIP install -q "$wheel" "onedl-mmdetection==3.5.1" -e ".[ml,dev]"
"$VENV/bin/python" -c "import mmcv.ops, mmdet, mmengine, segment_anything, ray, onnxruntime, cellfuse; print('mmcv', mmcv.__version__, 'ops', mmcv.ops.get_compiling_cuda_version(), 'mmdet', mmdet.__version__)"
echo "mmcv $MMCV_VERSION $variant ops: $wheel" > "$STAMP"
log "done (mmcv with $variant ops)"
