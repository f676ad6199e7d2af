"""Check an input folder before any training: ``cellfuse check INPUT [--work DIR]``.

Every problem a run would meet hours later is looked for at once, in seconds:

- the layout: ``train/images``, ``train/labels`` and ``test/images`` exist and hold images;
  no two images of a split share an id; every training image has a label; when the input
  ships test labels (``test_labels/`` or ``test/labels/``), every test image has one;
- every image: its header is read first (shape), then its pixels are decoded (truncated,
  corrupt, empty, degenerate, mostly NaN files fail here); a constant training image is an
  error (training refuses it), a constant test or unlabeled image a warning;
- every label: read and validated (integer ids, non-negative, one channel) against its
  image's shape; a label with no cells, or one id spread over separate regions (a semantic
  mask, not instances), is a warning;
- the work folder's disk: free space for the run's outputs.

Files are read in parallel (a thread pool; the decoders release the GIL). Each problem is
one line, ``error: <file>: <what>`` or ``warning: <file>: <what>``; errors make ``cellfuse
check`` exit 2 and make :func:`cellfuse.app.pipeline.run` stop before its first stage.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cellfuse.errors import CellfuseError, LayoutError

GIB = 2**30
# Free space the work folder needs beyond a multiple of the input's size (checkpoints, logs).
MIN_FREE_BYTES = 1 * GIB
FREE_PER_INPUT_BYTE = 3  # predictions, pseudo-labels, teacher caches, votes
TEST_LABEL_DIRS = ("test_labels", "test/labels")


@dataclass(frozen=True)
class Problem:
    """One finding: ``level`` error|warning, ``text`` ``<file>: <what>``."""

    level: str
    text: str

    @property
    def line(self) -> str:
        return f"{self.level}: {self.text}"


@dataclass
class CheckReport:
    """What :func:`check_input` found and what it read."""

    problems: list[Problem] = field(default_factory=list)
    images: int = 0
    labels: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    def summary(self) -> str:
        return (
            f"checked {self.images} images and {self.labels} labels "
            f"({self.bytes / 2**20:.1f} MiB) in {self.seconds:.1f} s: "
            f"{len(self.errors)} errors, {len(self.warnings)} warnings"
        )

    def as_dict(self) -> dict:
        return {
            "images": self.images,
            "labels": self.labels,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "errors": [p.text for p in self.errors],
            "warnings": [p.text for p in self.warnings],
        }


class InputCheckError(LayoutError):
    """The input folder failed :func:`check_input`; ``report`` holds every problem.

    Its message is every error, one per line, so that ``error: {exc}`` prints them all in
    the ``error: <file>: <what>`` form.
    """

    def __init__(self, report: CheckReport) -> None:
        self.report = report
        lines = [p.text for p in report.errors]
        super().__init__("\n".join(lines[:1] + [f"error: {t}" for t in lines[1:]]))


@dataclass(frozen=True)
class _Item:
    split: str  # train | test | unlabeled
    image: Path
    label: Path | None
    truth: bool = False  # the label is the test truth (read by the evaluation only)


def check_input(
    input_dir: str | os.PathLike[str],
    work_dir: str | os.PathLike[str] | None = None,
    *,
    unlabeled_folders: Sequence[str] = ("unlabeled/images",),
    threads: int | None = None,
    min_free_bytes: int = MIN_FREE_BYTES,
) -> CheckReport:
    """Check an input folder (Med-MLE-bench layout) as described in the module docstring.

    Args:
        input_dir: the folder ``cellfuse run --input`` gets.
        work_dir: the run's work folder, for the free-space check (None: not checked).
        unlabeled_folders: folders of unlabeled images, relative to ``input_dir``; those
            that do not exist are skipped (the pool is optional).
        threads: reader threads (default: twice the CPUs, at most 16).
        min_free_bytes: free space needed beyond ``FREE_PER_INPUT_BYTE`` x the input size.

    Returns:
        The :class:`CheckReport`; it never raises on bad input (see :func:`require_valid`).
    """
    from cellfuse.layout import find_label

    t0 = time.perf_counter()
    root = Path(input_dir)
    report = CheckReport()
    problems = report.problems
    if not root.is_dir():
        problems.append(Problem("error", f"{root}: input folder does not exist"))
        report.seconds = round(time.perf_counter() - t0, 2)
        return report

    items: list[_Item] = []
    train = _split_images(root / "train" / "images", problems, required=True)
    labels_dir = root / "train" / "labels"
    if not labels_dir.is_dir():
        problems.append(
            Problem(
                "error", f"{labels_dir}: folder does not exist (every training image needs a label)"
            )
        )
    for img in train:
        lab = find_label(labels_dir, img.stem) if labels_dir.is_dir() else None
        if lab is None and labels_dir.is_dir():
            problems.append(
                Problem(
                    "error",
                    f"{img}: no label file in {labels_dir} (expected {img.stem}_label.tiff)",
                )
            )
        items.append(_Item("train", img, lab))
    if labels_dir.is_dir():
        _orphan_labels(labels_dir, {p.stem for p in train}, problems)

    test = _split_images(root / "test" / "images", problems, required=True)
    truth_dir = next((root / d for d in TEST_LABEL_DIRS if (root / d).is_dir()), None)
    for img in test:
        lab = find_label(truth_dir, img.stem) if truth_dir is not None else None
        if truth_dir is not None and lab is None:
            problems.append(
                Problem(
                    "error",
                    f"{img}: no label file in {truth_dir} (the final evaluation needs one per "
                    f"test image; expected {img.stem}_label.tiff)",
                )
            )
        items.append(_Item("test", img, lab, truth=True))
    if truth_dir is not None:
        _orphan_labels(truth_dir, {p.stem for p in test}, problems)

    for folder in unlabeled_folders:
        if (root / folder).is_dir():
            items += [_Item("unlabeled", p, None) for p in _split_images(root / folder, problems)]

    n_threads = threads or min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(n_threads) as pool:
        for found, nbytes, n_labels in pool.map(_check_item, items):
            problems.extend(found)
            report.bytes += nbytes
            report.labels += n_labels
    report.images = len(items)
    if work_dir is not None:
        problems.extend(_disk_space(Path(work_dir), report.bytes, min_free_bytes))
    report.seconds = round(time.perf_counter() - t0, 2)
    return report


def require_valid(report: CheckReport) -> CheckReport:
    """Raise :class:`InputCheckError` when ``report`` holds an error; else return it."""
    if report.errors:
        raise InputCheckError(report)
    return report


def _split_images(folder: Path, problems: list[Problem], *, required: bool = False) -> list[Path]:
    """Image files of a split folder; missing/empty folders, skipped files and duplicate ids
    become problems."""
    from cellfuse.io import IMAGE_SUFFIXES

    if not folder.is_dir():
        if required:
            problems.append(
                Problem(
                    "error",
                    f"{folder}: folder does not exist (expected the Med-MLE-bench layout: "
                    "train/images, train/labels, test/images)",
                )
            )
        return []
    images, skipped = [], []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            images.append(p)
        elif p.is_file():
            skipped.append(p.name)
    if skipped:
        problems.append(
            Problem(
                "warning",
                f"{folder}: {len(skipped)} files without an image suffix are ignored "
                f"({_some(skipped)})",
            )
        )
    if not images:
        level = "error" if required else "warning"
        problems.append(
            Problem(level, f"{folder}: no image files (expected {', '.join(IMAGE_SUFFIXES)})")
        )
    by_id: dict[str, Path] = {}
    for p in images:
        if p.stem in by_id:
            problems.append(
                Problem(
                    "error",
                    f"{p}: id {p.stem!r} is also the id of {by_id[p.stem].name} (ids are file "
                    "stems and must be unique)",
                )
            )
        else:
            by_id[p.stem] = p
    return [by_id[k] for k in sorted(by_id)]


def _orphan_labels(labels_dir: Path, ids: set[str], problems: list[Problem]) -> None:
    from cellfuse.io import IMAGE_SUFFIXES

    orphans = []
    for p in sorted(labels_dir.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        stem = p.stem[: -len("_label")] if p.stem.endswith("_label") else p.stem
        if stem not in ids:
            orphans.append(p.name)
    if orphans:
        problems.append(
            Problem(
                "warning",
                f"{labels_dir}: {len(orphans)} label files have no image "
                f"({_some(orphans)}); they are not used",
            )
        )


def _some(names: list[str], n: int = 3) -> str:
    """``a, b, c and 4 more``."""
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _check_item(item: _Item) -> tuple[list[Problem], int, int]:
    """(problems, bytes read, labels read) of one image and its label: header, then pixels."""
    from cellfuse.io import image_shape, read_image, read_labels

    found: list[Problem] = []
    nbytes = 0
    try:
        nbytes += item.image.stat().st_size
        shape = image_shape(item.image)
        if item.label is not None:
            lab_shape = image_shape(item.label)
            if lab_shape != shape:
                found.append(
                    Problem(
                        "error",
                        f"{item.label}: label shape {lab_shape[0]}x{lab_shape[1]} does not "
                        f"match image shape {shape[0]}x{shape[1]} ({item.image.name})",
                    )
                )
                return found, nbytes, 0
        image = read_image(
            item.image,
            allow_constant=True,
            on_non_finite=lambda m: found.append(Problem("warning", m)),
        )
    except CellfuseError as exc:
        found.append(Problem("error", str(exc)))
        return found, nbytes, 0
    except MemoryError:
        found.append(Problem("error", f"{item.image}: does not fit in memory"))
        return found, nbytes, 0
    if image.min() == image.max():
        value = f"{image.flat[0].item():g}"
        if item.split == "train":
            found.append(
                Problem(
                    "error",
                    f"{item.image}: image is constant (all pixels = {value}); a training "
                    "image needs cells",
                )
            )
        else:
            found.append(
                Problem(
                    "warning",
                    f"{item.image}: image is constant (all pixels = {value}); "
                    + ("its prediction will be empty" if item.split == "test" else "it is skipped"),
                )
            )
    if item.label is None:
        return found, nbytes, 0
    try:
        nbytes += item.label.stat().st_size
        labels = read_labels(item.label, shape=image.shape[:2])
    except CellfuseError as exc:
        found.append(Problem("error", str(exc)))
        return found, nbytes, 1
    found.extend(_label_sanity(item.label, labels))
    return found, nbytes, 1


def _label_sanity(path: Path, labels: np.ndarray) -> Iterable[Problem]:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        yield Problem("warning", f"{path}: label has no cells (all background)")
        return
    if ids.size == 1:
        from scipy import ndimage

        _, parts = ndimage.label(labels > 0)
        if parts > 1:
            yield Problem(
                "warning",
                f"{path}: one id ({ids[0]}) covers {parts} separate regions; this looks like a "
                "semantic mask, not instance labels (give each cell its own id)",
            )


def _disk_space(work: Path, input_bytes: int, min_free: int) -> list[Problem]:
    probe = work.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    need = min_free + FREE_PER_INPUT_BYTE * input_bytes
    if free < need:
        return [
            Problem(
                "error",
                f"{work}: only {free / GIB:.2f} GiB free on its disk; the run needs about "
                f"{need / GIB:.2f} GiB ({FREE_PER_INPUT_BYTE}x the input + "
                f"{min_free / GIB:.1f} GiB)",
            )
        ]
    return []


def print_report(report: CheckReport, json_path: Path | None = None) -> int:
    """Print one line per problem (stderr) and the summary; the exit status (2 on errors)."""
    for p in report.problems:
        print(p.line, file=sys.stderr)
    if json_path:
        import json

        from cellfuse.files import atomic_write_text

        atomic_write_text(json_path, json.dumps(report.as_dict(), indent=2) + "\n")
    print(report.summary())
    return 2 if report.errors else 0


def check_stage(run) -> dict:
    """The first stage of :func:`cellfuse.app.pipeline.run`: :func:`check_input` on the run's
    input, before any training; warnings are logged, errors raise :class:`InputCheckError`.
    Recorded like any stage, so a re-run over unchanged folders skips it."""
    import logging

    from cellfuse.stages import find_test_labels, folder_signature

    log = logging.getLogger("cellfuse.app.pipeline")
    root = run.input_dir
    unlabeled = list(run.cfg.get("unlabeled", {}).get("folders", ["unlabeled/images"]))
    truth = find_test_labels(root)
    folders = ["train/images", "train/labels", "test/images", *unlabeled]
    key = [
        [folder_signature(root / f) for f in folders],
        folder_signature(truth) if truth is not None else None,
    ]

    def fn() -> dict:
        report = check_input(root, run.work_dir, unlabeled_folders=unlabeled)
        for p in report.warnings:
            log.warning("%s", p.line)
        require_valid(report)
        log.info("input: %s", report.summary())
        return {"check": report.as_dict()}

    return run.stage("check", key, fn)
