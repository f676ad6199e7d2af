"""The slide path on a 10k mosaic, several students side by side (``benchmark.py --parts mosaic``).

For each exported student (``--mosaic-onnx A.onnx [B.onnx ...]``; default: the pipeline's):

1. the val images are predicted one by one and pasted into the mosaic
   (``tools/make_mosaic.py --paste``): the per-image reference;
2. the mosaic (``tools/make_mosaic.py``: fluorescence val images of median diameter 10-30 px
   packed into ``--mosaic-size`` px, the same for every student) is predicted by the slide
   path in one process with ``--threads``, ``--mosaic-rounds`` times, the students
   interleaved (A, B, A, B) so that a change of machine load hits all of them alike;
3. both label images are scored against the mosaic's truth in the challenge's 2000 x 2000
   ROIs (:func:`cellfuse.metric.evaluate_image`).

Reported per student: F1@0.5 of the slide path and of the pasted reference, the wall of
every round and its split (read / network / post-processing / other), s/Mpx of the fastest
round, and each student's time relative to the first one's (a ratio of one run).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("benchmark")


def _f1(truth: Path, pred: Path) -> dict[str, float]:
    from cellfuse.io import read_labels
    from cellfuse.metric import evaluate_image

    s = evaluate_image(read_labels(truth), read_labels(pred), (0.5,))["scores"][0.5]
    return {k: round(float(s[k]), 4) for k in ("f1", "precision", "recall")}


def part_mosaic(
    data: Path, work: Path, onnx: list[str], threads: int, size: int = 10000, rounds: int = 2
) -> dict[str, Any]:
    import make_mosaic

    from cellfuse.layout import list_images
    from student.batch import model_key, predict_files
    from student.predictor import StudentPredictor

    root = work / "mosaic"
    mosaic = root / f"mosaic{size}"  # (a mosaic of another --mosaic-size is not reused)
    if not (mosaic / "mosaic.tif").is_file():
        make_mosaic.main(["--split", str(data / "val"), "--size", str(size), "--out", str(mosaic)])
    names = [Path(o).parent.name + "_" + Path(o).stem for o in onnx]
    if len(set(names)) != len(names):
        names = [f"m{i}" for i in range(len(onnx))]
    res: dict[str, Any] = {"size": size, "threads": threads, "rounds": rounds, "models": {}}
    for name, path in zip(names, onnx, strict=True):
        # the per-image reference: val images predicted alone, pasted where the mosaic has them
        pred = StudentPredictor.from_onnx(path, threads=threads)
        val = root / name / "val"
        predict_files(pred, list_images(data / "val" / "images"), val, key=model_key(path))
        ref = root / name / "ref"
        make_mosaic.main(
            ["--split", str(data / "val"), "--size", str(size), "--out", str(ref)]
            + ["--paste", str(val)]
        )
        res["models"][name] = {
            "onnx": str(path),
            "pasted_f1": _f1(mosaic / "mosaic_label.tiff", ref / "pasted" / "mosaic_label.tiff"),
            "rounds": [],
        }
    for r in range(rounds):
        for name, path in zip(names, onnx, strict=True):
            pred = StudentPredictor.from_onnx(path, threads=threads)
            out = root / name / f"slide{r}" / "mosaic_label.tiff"
            info = pred.predict_file(mosaic / "mosaic.tif", out, progress=False)
            log.info("mosaic %s round %d: %s", name, r, info["seconds"])
            res["models"][name]["rounds"].append(
                {"seconds": info["seconds"], "s_per_mpx": info["s_per_mpx"], "scale": info["scale"]}
            )
            if r == 0:
                res["models"][name]["slide_f1"] = _f1(mosaic / "mosaic_label.tiff", out)
                res["models"][name]["n_cells"] = info["n_cells"]
    first = None
    for m in res["models"].values():
        best = min(m["rounds"], key=lambda x: x["seconds"]["total"])
        m["best"] = best
        m["s_per_mpx"] = best["s_per_mpx"]
        m["gap_f1"] = round(m["slide_f1"]["f1"] - m["pasted_f1"]["f1"], 4)
        first = first or best["seconds"]["total"]
        m["time_vs_first"] = round(best["seconds"]["total"] / first, 3)
    return res
