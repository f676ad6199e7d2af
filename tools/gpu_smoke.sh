#!/usr/bin/env bash
# GPU smoke test of the full profile's flow networks, for a machine with torch, torchvision,
# onnxruntime, tifffile and scikit-image but no mmcv, mmdet, mmengine, segment-anything or
# ray: run from the repository root, it needs nothing else from this checkout's venv.
#
#   bash tools/gpu_smoke.sh [--device cuda] [--size 10000] [--steps 5] [--out smoke.json]
#   bash tools/gpu_smoke.sh --device cpu --size 1024 --steps 1      (a CPU check, tiny sizes)
#
# 1. a training step of the flow U-Net teacher and of the student at their full-profile
#    sizes (configs/teachers/flowunet_full.py, configs/student/distill_full.py, read without
#    mmengine; bf16 autocast as configured), timed, with the peak GPU memory (to compare
#    with `cellfuse check --profile full`'s estimate);
# 2. a timed prediction of a SIZE x SIZE slide generated on the fly (bright discs tiled over
#    the canvas), and s/Mpx against the NeurIPS-CellSeg limit of 10 s/Mpx: by a trained
#    student (--checkpoint best.pth, e.g. from `make demo`: the real post-processing load),
#    else by the full-profile student with random weights (the network's time is the real
#    one, but it finds few or no cells, so flow-following costs less than on real output:
#    the JSON's "cells" says how many it found).
# Prints one JSON object (and writes it to --out). Modules this machine lacks that cellfuse's
# core imports (fastremap, tqdm, zarr, imagecodecs, PIL) are installed from --wheels DIR
# when given (pip --no-index), else reported in the JSON "missing" list.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS=$2; shift 2;;
    *) ARGS+=("$1"); shift;;
  esac
done
if [ -n "$WHEELS" ]; then
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" fastremap tqdm zarr imagecodecs pillow || true
fi
PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} exec "$PY" - "${ARGS[@]}" <<'PYEOF'
import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

ap = argparse.ArgumentParser(prog="gpu_smoke.sh")
ap.add_argument("--device", default="cuda")
ap.add_argument("--size", type=int, default=10000, help="slide side (px)")
ap.add_argument("--steps", type=int, default=5, help="timed training steps per network")
ap.add_argument("--crop", type=int, help="training crop (default: the config's)")
ap.add_argument("--batch-size", type=int, help="training batch (default: the config's)")
ap.add_argument("--out", type=Path)
ap.add_argument("--checkpoint", type=Path, help="a trained student's best.pth for the slide")
args = ap.parse_args()
LIMIT_S_PER_MPX = 10.0
missing = [m for m in ("fastremap", "tqdm", "zarr", "imagecodecs", "PIL", "scipy", "skimage")
           if importlib.util.find_spec(m) is None]
result = {"device": args.device, "missing": missing}
if missing:
    print(json.dumps(result | {"error": f"missing modules: {missing} (pass --wheels DIR)"}))
    sys.exit(2)

import numpy as np  # noqa: E402
import torch  # noqa: E402


def config_dict(path: str, key: str) -> dict:
    """``key`` of an MMEngine-style config file, its ``_base_`` files merged under it
    (plain dicts; enough for these configs, which hold no variable references)."""
    ns: dict = {}
    exec(Path(path).read_text(), ns)
    merged: dict = {}
    for base in ns.get("_base_", []):
        merged = merge(merged, config_dict(str(Path(path).parent / base), key))
    return merge(merged, ns.get(key, {}))


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def sync() -> None:
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()


def train_steps(trainer, name: str) -> dict:
    if args.crop:
        trainer.crop = args.crop
    if args.batch_size:
        trainer.batch_size = args.batch_size
    torch.manual_seed(0)
    trainer.net = trainer.build_net().to(trainer.device).train()
    opt = torch.optim.AdamW(trainer.net.parameters(), lr=1e-3)
    b, s = trainer.batch_size, trainer.crop
    x = torch.rand(b, 3, s, s, device=trainer.device)
    y = torch.rand(b, 3, s, s, device=trainer.device)
    y[:, 1:] = y[:, 1:] * 2 - 1
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for i in range(args.steps + 1):  # the first step warms up (cuDNN autotuning, allocator)
        sync()
        t0 = time.perf_counter()
        with trainer.autocast():
            loss = trainer.train_loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        if i:
            times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    out = {
        "batch": b,
        "crop": s,
        "amp": trainer.amp if args.device.startswith("cuda") else None,
        "s_per_step": round(float(np.median(times)), 4),
        "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)],
        "finite": bool(np.isfinite(losses).all()),
    }
    if args.device.startswith("cuda"):
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


from student.distill import StudentTrainer  # noqa: E402
from teachers.flowunet import FlowUNetTeacher  # noqa: E402

t_cfg = config_dict("configs/teachers/flowunet_full.py", "teacher")
t_cfg.pop("type", None)
t_cfg.update(device=args.device, num_threads=0 if args.device == "cpu" else 16)
result["flowunet_train"] = train_steps(FlowUNetTeacher(**t_cfg), "flowunet")
s_cfg = config_dict("configs/student/distill_full.py", "student")
s_cfg.update(device=args.device, pseudo=None, num_threads=0 if args.device == "cpu" else 4)
student = StudentTrainer(**s_cfg)
result["student_train"] = train_steps(student, "student")

# the slide: 10k x 10k RGB uint8 of bright discs (about the demo's nuclei size)
from student.predictor import StudentPredictor  # noqa: E402

yy, xx = np.mgrid[:40, :40]
cell = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 12**2).astype(np.uint8) * 190 + 20
rng = np.random.default_rng(0)
t0 = time.perf_counter()
slide = np.tile(cell, (args.size // 40 + 1, args.size // 40 + 1))[: args.size, : args.size]
slide = np.clip(slide + rng.integers(0, 12, slide.shape, dtype=np.uint8), 0, 255)
slide = np.repeat(slide[..., None], 3, axis=2)
make_s = time.perf_counter() - t0
net = student.net.eval().float()
with torch.no_grad():
    net.head[-1].bias[0] = 0.5  # some pixels over the threshold: the post-processing works
ckpt = Path(args.out or "gpu_smoke.json").with_suffix(".student.pth")
torch.save(
    dict(
        state_dict=net.state_dict(),
        net=net.config(),
        variant=student.variant,
        nominal_diameter=student.nominal_diameter,
        postprocess=dict(prob_threshold=0.5, min_size=15, flow_threshold=None),
        predictor=dict(tile=student.tile, overlap=student.overlap, batch=student.infer_batch,
                       diameter=24.0),
        metrics={},
    ),
    ckpt,
)
pred = StudentPredictor.from_checkpoint(
    args.checkpoint or ckpt, device=args.device, backend="torch"
)
sync()
t0 = time.perf_counter()
inst = pred.predict(slide)
sync()
seconds = time.perf_counter() - t0
mpx = args.size * args.size / 1e6
result["slide_predict"] = {
    "size": args.size,
    "mpx": round(mpx, 2),
    "seconds": round(seconds, 2),
    "s_per_mpx": round(seconds / mpx, 4),
    "limit_s_per_mpx": LIMIT_S_PER_MPX,
    "within_limit": seconds / mpx <= LIMIT_S_PER_MPX,
    "cells": int(inst.n),
    "student": str(args.checkpoint) if args.checkpoint else "random weights (flow_m)",
    "slide_generated_s": round(make_s, 2),
}
ckpt.unlink()
if args.device.startswith("cuda"):
    result["gpu"] = torch.cuda.get_device_name(0)
result["torch"] = torch.__version__
text = json.dumps(result, indent=2)
if args.out:
    args.out.write_text(text + "\n")
print(text)
PYEOF
