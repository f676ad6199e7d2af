"""Input folder layout of Med-MLE-bench / the NeurIPS 2022 CellSeg challenge.

A split folder holds ``images/<id>.<ext>`` and, when labeled, ``labels/<id>_label.tiff``
(also accepted: ``<id>_label.tif``, ``<id>.tiff``, ``<id>.tif``). The sample id is the
image's file stem. An unlabeled folder may also hold its images directly.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cellfuse.errors import LayoutError
from cellfuse.io import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

# Tried in this order; the first that exists wins.
LABEL_PATTERNS = ("{stem}_label.tiff", "{stem}_label.tif", "{stem}.tiff", "{stem}.tif")
_MAX_LISTED = 5


@dataclass(frozen=True)
class Sample:
    """One input image and, when known, its instance-label file.

    Attributes:
        id: the image's file stem (``cell_00528`` for ``cell_00528.tif``).
        image: path of the image file.
        label: path of the label file, or None for unlabeled images.
    """

    id: str
    image: Path
    label: Path | None


def image_id(path: str | os.PathLike[str]) -> str:
    """Sample id of an image file: its stem (``images/cell_00528.tif`` -> ``cell_00528``)."""
    return Path(path).stem


def find_label(labels_dir: str | os.PathLike[str], stem: str) -> Path | None:
    """Label file of sample ``stem`` in ``labels_dir``, or None when there is none.

    Tries ``<stem>_label.tiff``, ``<stem>_label.tif``, ``<stem>.tiff``, ``<stem>.tif``
    in that order.
    """
    labels_dir = Path(labels_dir)
    for pattern in LABEL_PATTERNS:
        candidate = labels_dir / pattern.format(stem=stem)
        if candidate.is_file():
            return candidate
    return None


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly in ``folder``, sorted by name.

    Files count when their suffix is one of :data:`cellfuse.io.IMAGE_SUFFIXES` (any case);
    hidden files (``.name``, e.g. temporary files and macOS ``._`` forks) are skipped.

    Raises:
        LayoutError: ``folder`` does not exist or is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LayoutError(f"{folder}: image folder does not exist")
    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def list_samples(split_dir: str | os.PathLike[str], *, require_labels: bool) -> list[Sample]:
    """Samples of a split folder (``train``, ``test``, ``unlabeled``...), sorted by id.

    Images come from ``split_dir/images``; when that sub-folder is absent and labels are
    not required, from ``split_dir`` itself. Labels come from ``split_dir/labels``
    (see :func:`find_label`).

    Args:
        split_dir: the split folder.
        require_labels: every image must have a label file.

    Returns:
        One :class:`Sample` per image; ``label`` is None where no label file exists.

    Raises:
        LayoutError: the folder is missing or holds no images; two images share an id;
            labels are required and ``labels/`` or some label files are missing.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise LayoutError(f"{split_dir}: folder does not exist")
    images_dir = split_dir / "images"
    if not images_dir.is_dir():
        if require_labels:
            raise LayoutError(
                f"{split_dir}: no images/ folder; a labeled split needs images/ and labels/"
            )
        images_dir = split_dir
    images = list_images(images_dir)
    if not images:
        raise LayoutError(f"{images_dir}: no image files (expected {', '.join(IMAGE_SUFFIXES)})")

    by_id: dict[str, Path] = {}
    for path in images:
        sid = image_id(path)
        if sid in by_id:
            raise LayoutError(
                f"{images_dir}: two images share the id {sid!r}: {by_id[sid].name}, {path.name}"
            )
        by_id[sid] = path

    labels_dir = split_dir / "labels"
    if not labels_dir.is_dir():
        if require_labels:
            raise LayoutError(f"{split_dir}: no labels/ folder, but labels are required")
        return [Sample(id=sid, image=path, label=None) for sid, path in sorted(by_id.items())]

    samples = [
        Sample(sid, path, find_label(labels_dir, sid)) for sid, path in sorted(by_id.items())
    ]
    missing = [s.id for s in samples if s.label is None]
    if missing and require_labels:
        listed = ", ".join(missing[:_MAX_LISTED])
        more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise LayoutError(
            f"{labels_dir}: {len(missing)} of {len(samples)} images have no label file "
            f"({listed}{more}); expected <id>_label.tiff"
        )
    if missing:
        logger.info("%s: %d of %d images have no label", labels_dir, len(missing), len(samples))
    return samples
