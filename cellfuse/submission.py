"""Write and check a challenge submission: ``submission.csv`` plus one label mask per test image.

Layout (NeurIPS 2022 CellSeg / Med-MLE-bench)::

    out_dir/submission.csv                   image_id,predicted_mask_path
    out_dir/predictions/<image_id>_label.tiff  HxW uint16/uint32, 0 = background, 1..N = cells

Paths in the csv are relative to ``out_dir``. :func:`write_submission` builds the whole folder
under a temporary sibling ``out_dir.tmp-XXXX``, checks it, and only then swaps it in, so a run
that fails or dies leaves the previous submission as it was.
"""

from __future__ import annotations

import csv
import logging
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import fastremap
import numpy as np
from tqdm import tqdm

from cellfuse.errors import CellfuseError, SubmissionError
from cellfuse.instances import check_labels
from cellfuse.io import image_shape, read_labels, write_labels
from cellfuse.layout import find_label, image_id, list_images

logger = logging.getLogger(__name__)

COLUMNS = ("image_id", "predicted_mask_path")
CSV_NAME = "submission.csv"
PRED_FOLDER = "predictions"
MAX_LISTED = 10

MaskSource = str | os.PathLike | Mapping[str, Any]


def _fail(problems: list[str], what: str) -> SubmissionError:
    listed = "\n  ".join(problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return SubmissionError(f"{what}: {len(problems)} problem(s):\n  {listed}{more}")


def _default_path(image_id: str) -> str:
    return f"{PRED_FOLDER}/{image_id}_label.tiff"


def _relative_ok(rel: str) -> bool:
    """A csv path must be relative and stay inside the submission folder."""
    p = PurePosixPath(rel.replace("\\", "/"))
    return bool(rel) and not p.is_absolute() and ".." not in p.parts and ":" not in rel


def read_sample_submission(path: str | Path) -> list[tuple[str, str | None]]:
    """Rows of a sample submission: ``(image_id, predicted_mask_path or None)`` in file order.

    The path is kept only when it is a relative path inside the submission folder.

    Raises:
        SubmissionError: the file is missing or has no ``image_id`` column.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "image_id" not in reader.fieldnames:
                raise SubmissionError(
                    f"{path}: no 'image_id' column (columns: {reader.fieldnames})"
                )
            rows = []
            for row in reader:
                rel = (row.get("predicted_mask_path") or "").strip()
                rows.append(((row["image_id"] or "").strip(), rel if _relative_ok(rel) else None))
    except OSError as e:
        raise SubmissionError(f"{path}: cannot read sample submission ({e})") from e
    return rows


def _test_images(test_images_dir: str | Path, problems: list[str]) -> dict[str, Path]:
    folder = Path(test_images_dir)
    if not folder.is_dir():
        raise SubmissionError(f"{folder}: test image folder does not exist")
    images: dict[str, Path] = {}
    for path in list_images(folder):
        key = image_id(path)
        if key in images:
            problems.append(
                f"{key}: two test images with this id ({images[key].name}, {path.name})"
            )
        images[key] = path
    if not images:
        raise SubmissionError(f"{folder}: no test images found")
    return images


def _shape_problem(key: str, mask: np.ndarray, image: Path) -> str | None:
    """The one line when ``mask`` is not the test image's HxW (or the image is unreadable)."""
    try:
        want = tuple(image_shape(image))
    except CellfuseError as e:
        return f"{key}: test image unreadable: {e}"
    if mask.shape != want:
        return f"{key}: mask is HxW {mask.shape}, test image is {want}"
    return None


def _mask_getter(predictions: MaskSource) -> Callable[[str], Any]:
    """id -> path, array or ``Instances``-like, or None when there is no prediction."""
    if isinstance(predictions, Mapping):
        return predictions.get
    folder = Path(predictions)
    if not folder.is_dir():
        raise SubmissionError(f"{folder}: prediction folder does not exist")
    return lambda key: find_label(folder, key)


def _load_mask(obj: Any) -> np.ndarray:
    """Read/validate one mask and renumber it 1..N as uint16/uint32."""
    if isinstance(obj, str | os.PathLike):
        arr = read_labels(obj)
    else:
        arr = obj
    arr = check_labels(arr, "mask")
    arr, _ = fastremap.renumber(np.ascontiguousarray(arr), preserve_zero=True, in_place=False)
    n = int(arr.max()) if arr.size else 0
    return arr.astype(np.uint16 if n <= np.iinfo(np.uint16).max else np.uint32, copy=False)


def _plan_rows(
    images: Mapping[str, Path], sample_submission: str | Path | None, problems: list[str]
) -> list[tuple[str, str]]:
    """The (image_id, relative mask path) rows, in output order."""
    if sample_submission is None:
        return [(key, _default_path(key)) for key in sorted(images)]
    rows = []
    seen_ids: set[str] = set()
    seen_paths: set[str] = set()
    for key, rel in read_sample_submission(sample_submission):
        rel = rel or _default_path(key)
        if not key:
            problems.append(f"{sample_submission}: a row has an empty image_id")
            continue
        if key in seen_ids:
            problems.append(f"{key}: listed twice in the sample submission")
            continue
        if rel in seen_paths:
            problems.append(f"{key}: mask path {rel} is used by another row")
        if key not in images:
            problems.append(f"{key}: in the sample submission but there is no such test image")
        seen_ids.add(key)
        seen_paths.add(rel)
        rows.append((key, rel))
    unlisted = sorted(set(images) - seen_ids)
    if unlisted:
        logger.warning(
            "%d test images are not in the sample submission and are skipped: %s",
            len(unlisted),
            unlisted[:5],
        )
    return rows


def write_submission(
    predictions: MaskSource,
    test_images_dir: str | Path,
    out_dir: str | Path,
    *,
    sample_submission: str | Path | None = None,
) -> Path:
    """Build ``out_dir/submission.csv`` and ``out_dir/predictions/<id>_label.tiff``.

    Every mask is read, checked (same HxW as its test image, non-negative integer ids),
    renumbered 1..N and written as uint16/uint32. The folder is built as a temporary sibling,
    checked with :func:`check_submission`, then swapped in; entries of an existing ``out_dir``
    other than ``submission.csv`` and ``predictions/`` are carried over.

    Args:
        predictions: a folder of predicted labels (``<id>_label.tiff``, ``<id>.tif``, ...), or
            a mapping id -> label path, HxW array or ``Instances``.
        test_images_dir: the test images; one row per image.
        out_dir: the submission folder.
        sample_submission: optional csv whose ``image_id`` column gives the rows and their
            order (and whose ``predicted_mask_path``, when relative, the mask paths).

    Returns:
        Path of the written ``submission.csv``.

    Raises:
        SubmissionError: listing up to 10 problems (missing mask, wrong shape, duplicate id,
            bad label values, ...); nothing in ``out_dir`` has changed then.
    """
    from cellfuse.durable import clean_siblings

    out_dir = Path(out_dir)
    clean_siblings(out_dir)  # a swap a crash interrupted is undone; stale temp folders go
    if out_dir.exists() and not out_dir.is_dir():
        raise SubmissionError(f"{out_dir}: exists and is not a folder")
    problems: list[str] = []
    images = _test_images(test_images_dir, problems)
    rows = _plan_rows(images, sample_submission, problems)
    if problems:
        raise _fail(problems, f"cannot build submission in {out_dir}")
    get = _mask_getter(predictions)
    if isinstance(predictions, Mapping):
        extra = sorted(set(predictions) - {k for k, _ in rows})
        if extra:
            logger.warning(
                "%d predictions are not test images and are skipped: %s", len(extra), extra[:5]
            )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_sibling(out_dir, "tmp")
    try:
        for key, rel in tqdm(rows, desc="submission", unit="mask", disable=not sys.stderr.isatty()):
            src = get(key)
            if src is None:
                problems.append(f"{key}: no predicted mask")
                continue
            try:
                mask = _load_mask(src)
            except CellfuseError as e:
                problems.append(f"{key}: {e}")
                continue
            problem = _shape_problem(key, mask, images[key])
            if problem:
                problems.append(problem)
                continue
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            write_labels(target, mask)
        if problems:
            raise _fail(problems, f"cannot build submission in {out_dir}")
        with open(tmp / CSV_NAME, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            writer.writerows(rows)
        problems = check_submission(tmp, test_images_dir, sample_submission=sample_submission)
        if problems:
            raise _fail(problems, f"submission built in {tmp} failed its check")
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote %s (%d masks)", out_dir / CSV_NAME, len(rows))
    return out_dir / CSV_NAME


def _new_sibling(out_dir: Path, tag: str) -> Path:
    """Create an empty folder ``<out_dir>.<tag>-XXXXXXXX`` next to ``out_dir``.

    Unlike ``tempfile.mkdtemp`` (mode 0700) it gets the umask's usual mode, which the
    submission folder keeps after the swap.
    """
    for _ in range(100):
        path = out_dir.parent / f"{out_dir.name}.{tag}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{out_dir.parent}: cannot create a temporary folder")


def _swap_in(new: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``new``; the old folder is renamed away first and deleted last.

    On Linux the two folders are exchanged atomically (``renameat2``); elsewhere a crash
    between the two renames leaves the old submission whole in ``out_dir.old-XXXX``, which
    the next :func:`write_submission` restores (:func:`cellfuse.durable.recover_swap`).
    """
    from cellfuse.durable import swap_dirs

    old = _new_sibling(out_dir, "old") if out_dir.exists() else None
    if old is not None:
        old.rmdir()  # only its unique name is needed
    # one atomic exchange on Linux (out_dir never missing); else two renames (recover_swap)
    old = swap_dirs(new, out_dir, old or new)
    if old is not None:
        # Carry over what is not ours (an eval/ folder, notes); paths the csv names were rewritten.
        for entry in old.iterdir():
            if entry.name not in (CSV_NAME, PRED_FOLDER) and not (out_dir / entry.name).exists():
                os.replace(entry, out_dir / entry.name)
        shutil.rmtree(old, ignore_errors=True)


def check_submission(
    out_dir: str | Path,
    test_images_dir: str | Path | None = None,
    *,
    sample_submission: str | Path | None = None,
) -> list[str]:
    """List what is wrong with a submission folder (an empty list means it is valid).

    Checks: ``submission.csv`` exists with exactly the columns ``image_id,predicted_mask_path``;
    ids are non-empty and unique; every path is relative, exists and reads as a label image
    with non-negative ids; and, when given, that the masks have the HxW of their test images,
    every test image has a row and no row names an unknown image, and the ids match the
    sample submission's.

    Args:
        out_dir: the submission folder.
        test_images_dir: the test images, to check coverage and shapes.
        sample_submission: a sample csv whose ids must all be present.

    Returns:
        Problems, one human-readable line each.
    """
    out_dir = Path(out_dir)
    csv_path = out_dir / CSV_NAME
    if not csv_path.is_file():
        return [f"{csv_path}: missing"]
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        table = list(csv.reader(f))
    if not table or tuple(c.strip() for c in table[0]) != COLUMNS:
        head = ",".join(table[0]) if table else "(empty file)"
        return [f"{csv_path}: columns are '{head}', expected exactly '{','.join(COLUMNS)}'"]
    problems: list[str] = []
    images: dict[str, Path] | None = None
    if test_images_dir is not None:
        images = _test_images(test_images_dir, problems)
    rows = table[1:]
    if not rows:
        problems.append(f"{csv_path}: no rows")
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):
        if len(row) != len(COLUMNS):
            problems.append(f"{csv_path} line {n}: {len(row)} fields, expected {len(COLUMNS)}")
            continue
        key, rel = row[0].strip(), row[1].strip()
        if not key:
            problems.append(f"{csv_path} line {n}: empty image_id")
            continue
        if key in seen:
            problems.append(f"{key}: duplicate image_id (line {n})")
            continue
        seen.add(key)
        if not _relative_ok(rel):
            problems.append(
                f"{key}: mask path '{rel}' must be relative to {out_dir} and stay inside it"
            )
            continue
        mask_path = out_dir / rel
        if not mask_path.is_file():
            problems.append(f"{key}: mask {rel} does not exist")
            continue
        try:
            mask = read_labels(mask_path)
        except (CellfuseError, OSError, ValueError) as e:
            problems.append(f"{key}: mask {rel} is not a readable label image ({e})")
            continue
        if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
            problems.append(
                f"{key}: mask {rel} is {mask.dtype} {mask.shape}, expected HxW integer ids"
            )
            continue
        if mask.size and np.issubdtype(mask.dtype, np.signedinteger) and mask.min() < 0:
            problems.append(f"{key}: mask {rel} has negative ids")
            continue
        if images is not None and key in images:
            problem = _shape_problem(key, mask, images[key])
            if problem:
                problems.append(problem)
    if images is not None:
        problems += [
            f"{k}: test image has no row in {CSV_NAME}" for k in sorted(set(images) - seen)
        ]
        problems += [f"{k}: row names no test image" for k in sorted(seen - set(images))]
    if sample_submission is not None:
        try:
            wanted = [k for k, _ in read_sample_submission(sample_submission)]
        except SubmissionError as e:
            problems.append(str(e))
        else:
            problems += [
                f"{k}: in the sample submission but not in {CSV_NAME}"
                for k in wanted
                if k not in seen
            ]
            problems += [f"{k}: not in the sample submission" for k in sorted(seen - set(wanted))]
    return problems
