"""Predict a list of image files, one at a time, isolated and resumable.

Used by ``tools/predict.py`` and the pipeline's predict stage. Each image is written to
``out/<id>_label.tiff`` and recorded, when done or failed, as one line of
``out/predict.jsonl`` (appended and synced; a torn last line from a crash is skipped). A
re-run skips an image whose latest line is ``ok`` for the same model and the same input file
(name, size, modification time) and whose output exists, so a killed run resumes per image.
An image that cannot be read or predicted is recorded with its error and the others go on.
At the end ``out/predict.json`` holds the summary with every image's latest record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cellfuse.errors import CellfuseError

log = logging.getLogger(__name__)

JOURNAL = "predict.jsonl"
SUMMARY = "predict.json"


def file_key(path: Path) -> list:
    """Cheap identity of an input file: name, size, modification time (ns)."""
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


def model_key(model_file: str | os.PathLike[str], options: Mapping | None = None) -> str:
    """SHA-1 of a model file's bytes (an ONNX file with its sidecar, or a checkpoint) and the
    inference options."""
    h = hashlib.sha1()
    files = [Path(model_file)]
    side = Path(model_file).with_suffix(".json")
    if files[0].suffix == ".onnx" and side.is_file():
        files.append(side)
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    h.update(json.dumps(dict(options or {}), sort_keys=True, default=str).encode())
    return h.hexdigest()


def read_journal(path: Path) -> dict[str, dict]:
    """Latest record per image id; damaged lines (a torn last line) are skipped."""
    out: dict[str, dict] = {}
    if not path.is_file():
        return out
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            out[rec["id"]] = rec
        except (ValueError, KeyError, TypeError):
            log.warning("%s:%d: skipping a damaged line", path, n)
    return out


def _append(path: Path, rec: Mapping) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _shares(split: dict[str, float]) -> dict[str, float]:
    """Summed per-image seconds (read, network, postprocess, other, total) and the
    network's and post-processing's shares of the total."""
    out = {k: round(v, 3) for k, v in split.items()}
    total = split.get("total", 0.0)
    if total > 0:
        out["network_share"] = round(split.get("network", 0.0) / total, 3)
        out["postprocess_share"] = round(split.get("postprocess", 0.0) / total, 3)
    return out


def predict_files(
    predictor,
    files: Sequence[Path],
    out_dir: str | os.PathLike[str],
    *,
    key: str,
    progress: bool = False,
    tile_progress: bool = False,
    outputs: Sequence[str] = ("tiff",),
    stream: bool | None = None,
) -> dict[str, Any]:
    """Predict ``files`` into ``out_dir`` (see the module docstring).

    Args:
        predictor: a :class:`~student.predictor.StudentPredictor` (``predict_file``).
        files: image files; their ids (stems) must be unique.
        out_dir: output folder (created).
        key: the model's identity (:func:`model_key`); records under another key are redone.
        progress: a per-image progress bar.
        tile_progress: a per-tile progress bar inside each image.
        outputs: beyond ``tiff``, per image (``ome-tiff``, ``csv``, ``geojson``:
            :func:`cellfuse.census.slide_outputs`), written after each label TIFF.
        stream: predict every image as a stream (labels band by band into a label pyramid;
            see ``StudentPredictor.predict_file``); None: images above its size threshold.

    Returns:
        ``images``, ``done`` (this run), ``skipped`` (done before), ``failed``, ``failures``
        (``{id: error}``), ``seconds``, ``s_per_mpx`` (this run's images), ``seconds_split``
        (this run's time by part, with the network's and post-processing's shares; see
        ``StudentPredictor.predict_file``) and ``rows`` (every
        image's latest record); also written to ``out_dir/predict.json``.

    Raises:
        CellfuseError: no files, or two files share an id.
    """
    from tqdm.auto import tqdm

    from cellfuse.files import atomic_write_text

    if not files:
        raise CellfuseError(f"{out_dir}: nothing to predict (no input images)")
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise CellfuseError(f"{f}: id {f.stem!r} is also the id of {seen[f.stem].name}")
        seen[f.stem] = f
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / JOURNAL
    latest = read_journal(journal)
    done = skipped = 0
    px, t_all = 0, time.perf_counter()
    split: dict[str, float] = {}
    for f in tqdm(files, desc="predict", unit="img", disable=not progress):
        iid, label = f.stem, out / f"{f.stem}_label.tiff"
        try:
            fkey = file_key(f)
        except OSError as exc:
            fkey = None
            err = f"{f}: cannot access file ({exc.strerror or exc})"
        prev = latest.get(iid)
        if (
            fkey is not None
            and prev
            and prev.get("status") == "ok"
            and prev.get("model") == key
            and prev.get("file") == fkey
            and all(Path(o).is_file() for o in prev.get("outputs") or [label])
        ):
            skipped += 1
            continue
        t0 = time.perf_counter()
        rec: dict[str, Any] = {"id": iid, "image": str(f), "file": fkey, "model": key}
        if fkey is None:
            rec.update(status="failed", error=err)
        else:
            try:
                info = predictor.predict_file(f, label, progress=tile_progress, stream=stream)
                if set(outputs) - {"tiff"}:
                    from cellfuse.census import slide_outputs

                    t1 = time.perf_counter()
                    info.update(slide_outputs(f, label, outputs, pyramid=bool(info.get("stream"))))
                    info["outputs_seconds"] = round(time.perf_counter() - t1, 3)
            except (CellfuseError, MemoryError, OSError, ValueError, RuntimeError) as exc:
                text = str(exc) if isinstance(exc, CellfuseError) else f"{f}: {exc!r}"
                rec.update(status="failed", error=" ".join(text.split()))
                label.unlink(missing_ok=True)  # never leave an older model's labels behind
                log.error("%s", rec["error"])
            else:
                rec.update(status="ok", **info)
                px += info["shape"][0] * info["shape"][1]
                for k, v in (info.get("seconds") or {}).items():
                    split[k] = split.get(k, 0.0) + v
                split["outputs"] = split.get("outputs", 0.0) + info.get("outputs_seconds", 0.0)
                done += 1
                log.info(
                    "%s: %d cells in %.2f s", f.name, info["n_cells"], time.perf_counter() - t0
                )
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        _append(journal, rec)
        latest[iid] = rec
    seconds = time.perf_counter() - t_all
    rows = [latest[f.stem] for f in files if f.stem in latest]
    failures = {r["id"]: r["error"] for r in rows if r.get("status") != "ok"}
    summary = {
        "images": len(files),
        "done": done,
        "skipped": skipped,
        "failed": len(failures),
        "failures": failures,
        "seconds": round(seconds, 2),
        "s_per_mpx": round(seconds / max(px / 1e6, 1e-9), 3) if px else None,
        "seconds_split": _shares(split),
        "rows": rows,
    }
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2, default=str) + "\n")
    return summary
