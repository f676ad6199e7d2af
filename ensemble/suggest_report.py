"""Writing ``cellfuse suggest``'s answer: ``suggestions.csv``, the contact sheet, the
section of ``cellfuse run``'s report, and the command line. The ranking itself is
:func:`ensemble.suggest.suggest`."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cellfuse.errors import LayoutError
from ensemble.suggest import CSV_COLUMNS, ImageUncertainty, Suggestions, suggest

log = logging.getLogger(__name__)

UNDECIDED = np.array([1.0, 0.2, 1.0])  # magenta: pixels the vote left undecided (ignore mask)
CONFIDENT = np.array([1.0, 0.85, 0.0])  # yellow: confident pseudo-label outlines
TEACHER_COLORS = [(0.2, 0.6, 1.0), (1.0, 0.3, 0.3), (0.0, 1.0, 1.0), (0.3, 1.0, 0.3)]


# ----------------------------------------------------------------------------- writing


def write_csv(result: Suggestions, path: str | Path) -> Path:
    """``suggestions.csv``: one row per candidate, the picks first (:data:`CSV_COLUMNS`)."""
    from cellfuse.io import atomic_write_text

    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(CSV_COLUMNS)
    for rank, it in enumerate(result.ranked, 1):
        row = asdict(it) | {"rank": rank, "picked": int(it.picked)}
        row["kind"] = "" if it.kind is None else it.kind + 1
        wr.writerow([row[c] for c in CSV_COLUMNS])
    return atomic_write_text(path, buf.getvalue())


def _shrink(arr: np.ndarray, max_side: int) -> np.ndarray:
    """Nearest-neighbour downscale (labels stay labels) so the long side is <= max_side."""
    h, w = arr.shape[:2]
    f = max(h, w) / max_side
    if f <= 1:
        return arr
    ys = np.minimum((np.arange(int(h / f)) * f).astype(int), h - 1)
    xs = np.minimum((np.arange(int(w / f)) * f).astype(int), w - 1)
    return arr[ys][:, xs]


def teacher_outputs(pseudo_dir: Path, iid: str) -> dict[str, np.ndarray]:
    """Each teacher's cached labels of one image (the identity view of each; views such as
    ``flowunet@hflip`` are folded into the fused outputs and not shown)."""
    from cellfuse.io import read_labels

    cache = pseudo_dir / "cache"
    if not cache.is_dir():
        return {}
    out = {}
    for d in sorted(cache.iterdir()):
        f = d / f"{iid}_label.tiff"
        if "@" not in d.name and f.is_file():
            out[d.name] = read_labels(f)
    return out


def _panel(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` (already at most ``side`` px) centred on a white ``side x side`` square."""
    out = np.ones((side, side, 3))
    h, w = rgb.shape[:2]
    y, x = (side - h) // 2, (side - w) // 2
    out[y : y + h, x : x + w] = rgb
    return out


def contact_sheet(
    picks: Sequence[ImageUncertainty], pseudo_dir: str | Path, path: str | Path, side: int = 280
) -> Path:
    """One row per pick: the image (rank, id, modality, score), each teacher's outlines, and the
    ensemble (confident pseudo-labels in yellow, the undecided = ignored pixels in magenta).

    Panels are composed in numpy at ``side`` px (labels downscaled nearest-neighbour, so
    outlines stay one display pixel wide) and drawn as one image with text: fast (about a
    second for 8 rows), where a matplotlib grid of axes takes ten.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import tifffile
    from skimage.segmentation import find_boundaries

    from cellfuse.io import atomic_write, read_image, read_labels
    from cellfuse.report import display_image

    pseudo_dir = Path(pseudo_dir)
    rows = []
    for it in picks:
        teachers = {n: _shrink(v, side) for n, v in teacher_outputs(pseudo_dir, it.id).items()}
        fused = _shrink(read_labels(pseudo_dir / f"{it.id}_label.tiff"), side)
        ignore = _shrink(tifffile.imread(pseudo_dir / f"{it.id}_ignore.tiff") > 0, side)
        img = Path(it.image)
        raw = read_image(img, allow_constant=True) if img.is_file() else None
        rgb = display_image(_shrink(raw, side)) if raw is not None else np.zeros((*fused.shape, 3))
        rows.append((it, teachers, fused, ignore, rgb))
    names = sorted({n for r in rows for n in r[1]})
    cols, band, top, gap = 2 + len(names), 30, 24, 6  # band: titles above a row of panels
    slot = side + gap
    sheet = np.ones((top + max(len(rows), 1) * (side + band), cols * slot - gap, 3))
    texts = []  # (x, y, text, ha)
    for r, (it, teachers, fused, ignore, rgb) in enumerate(rows):
        y0 = top + r * (side + band) + band
        panels = [rgb]
        texts.append((4, y0 - 3, f"#{r + 1} {it.id}\n{it.modality}, score {it.score:.2f}", "left"))
        for c, n in enumerate(names, 1):
            shown = rgb.copy()
            if n in teachers:
                shown[find_boundaries(teachers[n], mode="inner")] = TEACHER_COLORS[(c - 1) % 4]
                cells = int(len(np.unique(teachers[n])) - 1)
                texts.append((c * slot + side / 2, y0 - 3, f"{n}: {cells} cells", "center"))
            panels.append(shown)
        shown = 0.6 * rgb
        shown[ignore] = 0.35 * rgb[ignore] + 0.65 * UNDECIDED
        shown[find_boundaries(fused, mode="inner")] = CONFIDENT
        panels.append(np.clip(shown, 0, 1))
        texts.append(
            (
                (cols - 1) * slot + side / 2,
                y0 - 3,
                f"ensemble: {it.cells} sure cells (yellow)\nundecided {it.ignored:.0%} "
                f"(magenta), {it.clusters - it.cells}/{it.clusters} unconfirmed",
                "center",
            )
        )
        for c, p in enumerate(panels):
            sheet[y0 : y0 + side, c * slot : c * slot + side] = _panel(p, side)
    dpi, (h, w) = 100, sheet.shape[:2]
    fig = plt.figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    fig.figimage((sheet * 255).round().astype(np.uint8), origin="upper")  # 1:1, no resampling
    fig.text(4 / w, 1 - 16 / h, "Images to label next (cellfuse suggest)", fontsize=9)
    for x, y, text, ha in texts:
        fig.text(x / w, 1 - y / h, text, fontsize=7, ha=ha, va="bottom", linespacing=1.1)
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi, pil_kwargs={"compress_level": 3})
    plt.close(fig)
    return path


def write_outputs(result: Suggestions, out_dir: str | Path) -> dict[str, Path]:
    """``suggestions.csv``, ``suggestions.png`` and ``suggestions.json`` in ``out_dir``."""
    from cellfuse.io import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files = {
        "csv": write_csv(result, out / "suggestions.csv"),
        "png": contact_sheet(result.picks, result.params["pseudo"], out / "suggestions.png"),
    }
    summary = {
        **result.params,
        "rank_seconds": result.seconds,
        "sheet_seconds": round(time.perf_counter() - t0, 2),
        "picks": [
            {k: v for k, v in asdict(it).items() if k != "descriptor"} for it in result.picks
        ],
    }
    files["json"] = atomic_write_text(out / "suggestions.json", json.dumps(summary, indent=2))
    return files


def report_section(
    pseudo_dir: str | Path, report_dir: str | Path, k: int = 8
) -> tuple[tuple[list[str], list[list]], Path] | None:
    """For ``cellfuse run``'s report: (table header + rows of the top ``k``, contact sheet),
    written into ``report_dir``; None (and a warning) when there is nothing to rank: the
    report of a long run must not fail on its last, optional section."""
    from cellfuse.errors import CellfuseError

    if not (Path(pseudo_dir) / "manifest.jsonl").is_file():
        return None
    try:
        res = suggest(pseudo_dir, k)
        files = write_outputs(res, report_dir)
    except (CellfuseError, OSError, ValueError) as exc:
        log.warning("report: no suggestions (%s)", exc)
        return None
    rows = [[i, it.id, it.score, it.modality, it.reasons] for i, it in enumerate(res.picks, 1)]
    return (["rank", "image", "score", "modality", "why"], rows), files["png"]


# ----------------------------------------------------------------------------- command line


def _read_ids(path: Path) -> list[str]:
    """Candidate ids: a text file (one per line) or a JSON list."""
    if not path.is_file():
        raise LayoutError(f"{path}: no such candidates file")
    text = path.read_text().strip()
    if text.startswith("["):
        return [str(x) for x in json.loads(text)]
    return [x.strip() for x in text.splitlines() if x.strip()]


def suggest_main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="cellfuse suggest",
        description="Rank the unlabeled images by the teacher ensemble's disagreement and pick "
        "K diverse ones to label next (suggestions.csv + a contact sheet).",
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--pseudo", type=Path, help="pseudo-label folder (with manifest.jsonl)")
    src.add_argument("--work", type=Path, help="a `cellfuse run` work folder (uses WORK/pseudo)")
    ap.add_argument("--n", type=int, default=8, help="images to suggest (default 8)")
    ap.add_argument(
        "--out", type=Path, help="output folder (default: WORK/suggest, or PSEUDO/../suggest)"
    )
    ap.add_argument(
        "--candidates", type=Path, help="only these image ids (text, one a line, or JSON list)"
    )
    ap.add_argument(
        "--beta", type=float, default=5.0, help="pick among the beta*N most uncertain (1 = top-N)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.work is not None:
        if not args.work.is_dir():
            raise LayoutError(f"{args.work}: no such folder")
        pseudo, default_out = args.work / "pseudo", args.work / "suggest"
    else:
        pseudo, default_out = args.pseudo, args.pseudo.parent / "suggest"
    ids = _read_ids(args.candidates) if args.candidates else None
    res = suggest(pseudo, args.n, ids=ids, beta=args.beta, seed=args.seed)
    files = write_outputs(res, args.out or default_out)
    for i, it in enumerate(res.picks, 1):
        print(f"{i:2d}  {it.id}  {it.score:.3f}  {it.reasons}")
    print(f"ranked {len(res.ranked)} images in {res.seconds:.1f} s")
    print(f"csv: {files['csv']}\ncontact sheet: {files['png']}")
    return 0
