"""Scarce-label and modality-shift inputs drawn from a labeled DSB2018-style data set.

Two situations a lab is in, written as ordinary Med-MLE-bench input folders:

* ``scarce_<N>``: ``train/`` holds N labeled images (nested over N, stratified by
  :func:`cellfuse.modality.modality`, fixed seed; N = 166 is all of them); ``unlabeled/images`` holds the other
  training images without their labels plus the source's unlabeled pool;
  ``test/images`` holds the source's val images.
* ``shift``: ``train/`` holds the fluorescence training images only; their stained and
  brightfield companions go to ``unlabeled/images`` (labels dropped) with the unlabeled pool.

No val folder is written: the pipeline holds out its own share of the labeled images. The
val labels go to ``test_labels/``, read only by the final evaluation. Each folder gets a
``split.json`` with the chosen ids and their modalities.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from cellfuse.io import atomic_write_text, read_image
from cellfuse.layout import find_label, image_id, list_images
from cellfuse.modality import MODALITIES, modality

DEFAULT_NS = (8, 16, 33, 166)


def modalities(folder: Path) -> dict[str, str]:
    """``{image id: modality}`` of every image in ``folder`` (sorted by id)."""
    return {image_id(p): modality(read_image(p, allow_constant=True)) for p in list_images(folder)}


def allocate(counts: dict[str, int], n: int, floor: dict[str, int] | None = None) -> dict[str, int]:
    """How many of ``n`` picks each modality gets: proportional to ``counts`` (largest
    remainder), at least one of every modality present, and never fewer than ``floor``
    (the allocation of a smaller nested N)."""
    total = sum(counts.values())
    if not 0 < n <= total:
        raise ValueError(f"cannot pick {n} of {total} images")
    present = [m for m in counts if counts[m] > 0]
    base = {m: min(counts[m], max(1, int(n * counts[m] / total))) for m in present}
    for m in present:
        base[m] = max(base[m], (floor or {}).get(m, 0))
    # largest fractional share first when adding, largest allocation first when removing
    frac = sorted(present, key=lambda m: -(n * counts[m] / total - int(n * counts[m] / total)))
    while sum(base.values()) < n:
        m = next((m for m in frac if base[m] < counts[m]), None)
        if m is None:
            break
        base[m] += 1
        frac = frac[1:] + frac[:1]
    while sum(base.values()) > n:
        m = max((m for m in present if base[m] > max(1, (floor or {}).get(m, 0))), key=base.get)
        base[m] -= 1
    return base


def nested_subsets(
    mods: dict[str, str], ns: tuple[int, ...] = DEFAULT_NS, seed: int = 0
) -> dict[int, list[str]]:
    """Nested, modality-stratified subsets of the ids in ``mods``, one per N (ascending)."""
    rng = np.random.default_rng(seed)
    order = {}
    for m in MODALITIES:
        ids = sorted(i for i, mm in mods.items() if mm == m)
        order[m] = [ids[k] for k in rng.permutation(len(ids))]
    counts = {m: len(order[m]) for m in MODALITIES}
    out: dict[int, list[str]] = {}
    prev: dict[str, int] = {}
    for n in sorted(ns):
        alloc = allocate(counts, n, prev)
        out[n] = sorted(i for m in MODALITIES for i in order[m][: alloc.get(m, 0)])
        prev = alloc
    return out


def _copy_images(paths: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for p in paths:
        shutil.copy2(p, dest / p.name)


def write_input(src: Path, out: Path, labeled: list[str], mods: dict[str, str], meta: dict) -> Path:
    """One input folder: ``labeled`` train ids with labels, the rest of train and the
    unlabeled pool as images only, val as test (its labels under ``test_labels/``).

    A folder whose ``split.json`` already records the same split is left as it is (a run
    may be reading it); another one is replaced as a whole (written aside, then renamed).
    """
    train = {image_id(p): p for p in list_images(src / "train" / "images")}
    keep = set(labeled)
    missing = keep - set(train)
    if missing:
        raise ValueError(f"ids not in {src / 'train'}: {sorted(missing)[:5]}")
    pool = [train[i] for i in sorted(set(train) - keep)]
    unlabeled = list_images(src / "unlabeled" / "images")
    test = list_images(src / "val" / "images")
    record = meta | {
        "labeled": sorted(keep),
        "labeled_modalities": {m: sum(mods[i] == m for i in keep) for m in MODALITIES},
        "unlabeled_from_train": [image_id(p) for p in pool],
        "unlabeled_images": len(pool) + len(unlabeled),
        "test_images": len(test),
    }
    text = json.dumps(record, indent=2) + "\n"
    if (out / "split.json").is_file() and (out / "split.json").read_text() == text:
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _copy_images([train[i] for i in sorted(keep)], tmp / "train" / "images")
    (tmp / "train" / "labels").mkdir(parents=True)
    for i in sorted(keep):
        lab = find_label(src / "train" / "labels", i)
        shutil.copy2(lab, tmp / "train" / "labels" / lab.name)
    _copy_images(pool + unlabeled, tmp / "unlabeled" / "images")
    _copy_images(test, tmp / "test" / "images")
    (tmp / "test_labels").mkdir()
    for p in test:
        lab = find_label(src / "val" / "labels", image_id(p))
        shutil.copy2(lab, tmp / "test_labels" / lab.name)
    atomic_write_text(tmp / "split.json", text)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def make_inputs(
    src: Path, out: Path, ns: tuple[int, ...] = DEFAULT_NS, seed: int = 0, shift: bool = True
) -> list[Path]:
    """Write ``out/scarce_<N>`` for each N (and ``out/shift``); returns the folders."""
    mods = modalities(src / "train" / "images")
    written = []
    for n, ids in nested_subsets(mods, tuple(ns), seed).items():
        meta = {"kind": "scarce", "n": n, "seed": seed, "source": str(src)}
        written.append(write_input(src, out / f"scarce_{n}", ids, mods, meta))
    if shift:
        fluo = sorted(i for i, m in mods.items() if m == "fluorescence")
        meta = {"kind": "shift", "labeled_modality": "fluorescence", "source": str(src)}
        written.append(write_input(src, out / "shift", fluo, mods, meta))
    return written
